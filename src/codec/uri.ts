/**
 * CoAP URIs (RFC 7252 §6): parsing, decomposition into options (§6.4) and
 * composition from options (§6.5). Pure functions, no name resolution.
 */

import { Buffer } from 'node:buffer';
import { isIP } from 'node:net';
import { OptionNumber } from '../constants/options.js';
import { UriError } from '../errors.js';
import type { CoapOption } from './message.js';
import { encodeUint } from './options.js';

export type CoapScheme = 'coap' | 'coaps' | 'coap+tcp' | 'coaps+tcp' | 'coap+ws' | 'coaps+ws';

const DEFAULT_PORTS: Record<CoapScheme, number> = {
  coap: 5683,
  coaps: 5684,
  'coap+tcp': 5683,
  'coaps+tcp': 5684,
  'coap+ws': 80,
  'coaps+ws': 443,
};

/** Every CoAP URI scheme (RFC 7252, RFC 8323): coap, coaps, coap+tcp, coaps+tcp, coap+ws, coaps+ws. */
export const COAP_SCHEMES: readonly CoapScheme[] = Object.keys(DEFAULT_PORTS) as CoapScheme[];

export interface CoapUri {
  scheme: CoapScheme;
  /** Host as written, without brackets and percent-decoded; IPv6 zone kept after '%'. */
  host: string;
  /** 4 or 6 when the host is an IP literal, 0 for a registered name. */
  hostType: 0 | 4 | 6;
  port: number;
  /** True when the URI gave the port explicitly. */
  explicitPort: boolean;
  /** Path segments, percent-decoded; [] for "" and "/". */
  path: string[];
  /** Query arguments split on '&', percent-decoded. */
  query: string[];
}

export function defaultPort(scheme: string): number | undefined {
  // Own properties only: "constructor" or "toString" are not schemes.
  return Object.hasOwn(DEFAULT_PORTS, scheme) ? (DEFAULT_PORTS as Record<string, number>)[scheme] : undefined;
}

function pctDecode(s: string, what: string): string {
  if (!s.includes('%')) return s;
  if (/%(?![0-9a-fA-F]{2})/.test(s)) throw new UriError(`invalid percent-encoding in ${what}: "${s}"`);
  try {
    return decodeURIComponent(s);
  } catch {
    throw new UriError(`percent-encoding in ${what} is not valid UTF-8: "${s}"`);
  }
}

/** RFC 3986 §5.2.4 remove_dot_segments on an absolute path. */
export function removeDotSegments(path: string): string {
  const input = path.split('/');
  const out: string[] = [];
  // input[0] is '' for an absolute path.
  for (let i = 1; i < input.length; i++) {
    const seg = input[i]!;
    const last = i === input.length - 1;
    if (seg === '.') {
      if (last) out.push('');
    } else if (seg === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(seg);
  }
  return `/${out.join('/')}`;
}

// RFC 3986 character classes.
const UNRESERVED = 'A-Za-z0-9\\-._~';
const SUB_DELIMS = "!$&'()*+,;=";
const PCHAR_RE = new RegExp(
  `^(?:[${UNRESERVED}${SUB_DELIMS.replace(/[\]\\^-]/g, '\\$&')}:@]|%[0-9A-Fa-f]{2})*$`,
);
const QUERY_RE = new RegExp(
  `^(?:[${UNRESERVED}${SUB_DELIMS.replace(/[\]\\^-]/g, '\\$&')}:@/?]|%[0-9A-Fa-f]{2})*$`,
);
const REGNAME_RE = new RegExp(
  `^(?:[${UNRESERVED}${SUB_DELIMS.replace(/[\]\\^-]/g, '\\$&')}]|%[0-9A-Fa-f]{2})*$`,
);

/** Parses an absolute CoAP URI (RFC 7252 and RFC 8323 schemes). Throws UriError with a precise reason. */
export function parseUri(input: string): CoapUri {
  if (typeof input !== 'string') throw new UriError('URI must be a string');
  const s = input.trim();
  if (s.length === 0) throw new UriError('empty URI');
  if (s.length > 8192) throw new UriError('URI too long');
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/s.exec(s);
  if (!m)
    throw new UriError(`not an absolute URI (missing scheme): "${s}"`, {
      hint: 'write it as coap://host/path',
    });
  const scheme = m[1]!.toLowerCase();
  if (defaultPort(scheme) === undefined) {
    throw new UriError(
      `unsupported URI scheme "${scheme}" (expected coap, coaps, coap+tcp, coaps+tcp, coap+ws or coaps+ws)`,
    );
  }
  let rest = m[2]!;
  if (rest.includes('#')) throw new UriError('URI fragments are not allowed in CoAP URIs (RFC 7252 §6.4)');
  if (/[\s<>"{}|\\^`]/.test(rest))
    throw new UriError(`URI contains characters that must be percent-encoded: "${s}"`);
  if (!rest.startsWith('//')) throw new UriError(`URI has no host: "${s}"`);
  rest = rest.slice(2);
  const authEnd = rest.search(/[/?]/);
  const authority = authEnd === -1 ? rest : rest.slice(0, authEnd);
  rest = authEnd === -1 ? '' : rest.slice(authEnd);
  if (authority.includes('@')) throw new UriError('user information is not allowed in CoAP URIs');
  let hostPart: string;
  let portPart: string | undefined;
  let host: string;
  let hostType: 0 | 4 | 6;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) throw new UriError(`unterminated IPv6 literal in "${s}"`);
    hostPart = authority.slice(1, close);
    const after = authority.slice(close + 1);
    if (after !== '' && !after.startsWith(':'))
      throw new UriError(`unexpected characters after IPv6 literal: "${after}"`);
    portPart = after === '' ? undefined : after.slice(1);
    // RFC 6874 zone: fe80::1%25eth0
    const zi = hostPart.indexOf('%25');
    const addr = zi === -1 ? hostPart : hostPart.slice(0, zi);
    if (isIP(addr) !== 6) throw new UriError(`invalid IPv6 address "${addr}"`);
    if (zi !== -1) {
      const zone = pctDecode(hostPart.slice(zi + 3), 'IPv6 zone');
      if (zone === '' || !/^[A-Za-z0-9._~-]+$/.test(zone)) throw new UriError(`invalid IPv6 zone "${zone}"`);
      host = `${addr.toLowerCase()}%${zone}`;
    } else {
      if (hostPart.includes('%')) throw new UriError('an IPv6 zone must be written as %25zone');
      host = addr.toLowerCase();
    }
    hostType = 6;
  } else {
    const ci = authority.lastIndexOf(':');
    hostPart = ci === -1 ? authority : authority.slice(0, ci);
    portPart = ci === -1 ? undefined : authority.slice(ci + 1);
    if (hostPart === '') throw new UriError(`URI has an empty host: "${s}"`);
    if (!REGNAME_RE.test(hostPart)) throw new UriError(`invalid host "${hostPart}"`);
    host = pctDecode(hostPart, 'host').toLowerCase();
    hostType = isIP(host) === 4 ? 4 : 0;
    if (hostType === 0 && /^[\d.]+$/.test(host)) throw new UriError(`invalid IPv4 address "${host}"`);
    // Uri-Host is 1-255 bytes of UTF-8 (§5.10), not 255 UTF-16 units.
    if (Buffer.byteLength(host) > 255) throw new UriError('host name longer than 255 bytes');
  }
  const scheme_ = scheme as CoapScheme;
  let port = DEFAULT_PORTS[scheme_];
  let explicitPort = false;
  if (portPart !== undefined && portPart !== '') {
    if (!/^\d{1,5}$/.test(portPart)) throw new UriError(`invalid port "${portPart}"`);
    port = Number(portPart);
    if (port > 65535) throw new UriError(`port ${port} out of range (0-65535)`);
    explicitPort = true;
  }
  const qi = rest.indexOf('?');
  let pathStr = qi === -1 ? rest : rest.slice(0, qi);
  const queryStr = qi === -1 ? undefined : rest.slice(qi + 1);
  let path: string[] = [];
  if (pathStr !== '' && pathStr !== '/') {
    pathStr = removeDotSegments(pathStr);
    const raw = pathStr.slice(1).split('/');
    for (const seg of raw) {
      if (!PCHAR_RE.test(seg)) throw new UriError(`invalid character in path segment "${seg}"`);
    }
    path = raw.map((seg) => pctDecode(seg, 'path'));
    if (path.length === 1 && path[0] === '') path = [];
  }
  for (const seg of path) {
    if (Buffer.byteLength(seg) > 255) throw new UriError('path segment longer than 255 bytes');
  }
  let query: string[] = [];
  if (queryStr !== undefined && queryStr !== '') {
    if (!QUERY_RE.test(queryStr)) throw new UriError(`invalid character in query "${queryStr}"`);
    query = queryStr.split('&').map((q) => pctDecode(q, 'query'));
    for (const q of query) {
      if (Buffer.byteLength(q) > 255) throw new UriError('query argument longer than 255 bytes');
    }
  }
  return { scheme: scheme_, host, hostType, port, explicitPort, path, query };
}

/**
 * §6.4: the options a request to `uri` carries when sent to `destination`
 * (the resolved address and port). Uri-Host is omitted when the host is an
 * IP literal; Uri-Port when it equals the destination port.
 */
export function uriToOptions(uri: CoapUri, destinationPort: number = uri.port): CoapOption[] {
  const out: CoapOption[] = [];
  if (uri.hostType === 0) out.push({ number: OptionNumber.UriHost, value: Buffer.from(uri.host, 'utf8') });
  if (uri.port !== destinationPort) out.push({ number: OptionNumber.UriPort, value: encodeUint(uri.port) });
  for (const seg of uri.path) out.push({ number: OptionNumber.UriPath, value: Buffer.from(seg, 'utf8') });
  for (const q of uri.query) out.push({ number: OptionNumber.UriQuery, value: Buffer.from(q, 'utf8') });
  return out;
}

function pctEncode(s: string, allowed: RegExp): string {
  let out = '';
  for (const ch of s) {
    if (allowed.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const SEG_CHAR = /^[A-Za-z0-9\-._~!$'()*+,;=:@&]$/;
/** RFC 3986 reg-name characters: unreserved and sub-delims. */
const REGNAME_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=]$/;
const QUERY_CHAR = /^[A-Za-z0-9\-._~!$'()*+,;=:@/?]$/;

/**
 * Percent-encodes a path segment. A segment that is exactly "." or ".." is
 * written %2E / %2E%2E, otherwise RFC 3986 §5.2.4 remove_dot_segments would
 * drop it when the URI is parsed again (§6.4 step 2).
 */
export const encodePathSegment = (seg: string): string =>
  seg === '.' ? '%2E' : seg === '..' ? '%2E%2E' : pctEncode(seg, SEG_CHAR);
/** Percent-encodes one query argument ('&' is escaped since it separates arguments). */
export const encodeQueryArg = (q: string): string => pctEncode(q, QUERY_CHAR);

/** "[addr]" or "[addr%25zone]" when `a` is an IPv6 address (with an optional "%zone"), else undefined. */
function ipv6Literal(a: string): string | undefined {
  const zi = a.indexOf('%');
  const addr = zi === -1 ? a : a.slice(0, zi);
  if (isIP(addr) !== 6) return undefined;
  return zi === -1 ? `[${addr}]` : `[${addr}%25${a.slice(zi + 1)}]`;
}

/**
 * §6.5: composes a URI from a request's options and the address it was
 * sent to (or received on).
 */
export function optionsToUri(
  options: readonly CoapOption[],
  scheme: CoapScheme,
  destination: { address: string; port: number },
): string {
  let host: string | undefined;
  let port = destination.port;
  const path: string[] = [];
  const query: string[] = [];
  for (const o of options) {
    if (o.number === OptionNumber.UriHost) host = o.value.toString('utf8');
    else if (o.number === OptionNumber.UriPort) port = o.value.reduce((n, b) => n * 256 + b, 0);
    else if (o.number === OptionNumber.UriPath) path.push(o.value.toString('utf8'));
    else if (o.number === OptionNumber.UriQuery) query.push(o.value.toString('utf8'));
  }
  let h: string;
  if (host !== undefined) {
    // §6.5 step 2: the Uri-Host may be a reg-name, an IPv4address or an
    // IP-literal ("[2001:db8::1]", as §6.4 step 5 copies it); bare IPv6 is tolerated.
    const inner = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    h = ipv6Literal(inner) ?? pctEncode(host, REGNAME_CHAR);
  } else {
    const a = destination.address;
    h = ipv6Literal(a) ?? a;
  }
  let uri = `${scheme}://${h}`;
  if (port !== DEFAULT_PORTS[scheme]) uri += `:${port}`;
  uri += `/${path.map(encodePathSegment).join('/')}`;
  if (query.length > 0) uri += `?${query.map(encodeQueryArg).join('&')}`;
  return uri;
}

/** "/a/b" from Uri-Path options ("/" when there are none). */
export function pathFromOptions(options: readonly CoapOption[]): string {
  let p = '';
  for (const o of options) if (o.number === OptionNumber.UriPath) p += `/${o.value.toString('utf8')}`;
  return p === '' ? '/' : p;
}

/** Formats a URI string back from a parsed CoapUri. */
export function formatUri(u: CoapUri): string {
  // A registered name was percent-decoded by parseUri: encode it again (RFC 3986 §3.2.2).
  const h = u.hostType === 6 ? `[${u.host.replace('%', '%25')}]` : pctEncode(u.host, REGNAME_CHAR);
  let s = `${u.scheme}://${h}`;
  if (u.port !== DEFAULT_PORTS[u.scheme]) s += `:${u.port}`;
  s += `/${u.path.map(encodePathSegment).join('/')}`;
  if (u.query.length > 0) s += `?${u.query.map(encodeQueryArg).join('&')}`;
  return s;
}
