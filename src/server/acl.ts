/**
 * Access control: who may do what on which path (issue 12). One rule per line,
 *
 *     [allow|deny] IDENTITY METHODS PATH
 *
 * IDENTITY is an authenticated identity (the PSK identity, the certificate
 * subject's CN, the raw public key's SHA-256 fingerprint: `PeerAuth.identity`;
 * `oscore:KID` for an OSCORE-protected request, KID the client's Sender ID in
 * hex, which wins over the DTLS identity of a proxy in between),
 * `*` (any authenticated peer) or `anonymous` (neither DTLS nor OSCORE);
 * a `"quoted"` identity is taken literally (`"anonymous"`, names with spaces).
 * METHODS is a comma list of GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH
 * (an Observe registration is a GET) or `*`. PATH is `/seg/seg...`, where a
 * segment may contain `{identity}` (the requesting peer's identity), a whole
 * segment `*` matches any one segment, and a trailing `/**` matches the path
 * itself and everything below it; `%XX` escapes a byte. `#` starts a comment.
 *
 * The first rule whose identity, method and path all match decides (allow, or
 * deny when the line starts with `deny`); no matching rule refuses. A refused
 * request gets 4.03 Forbidden, or 4.01 Unauthorized when the peer is
 * anonymous and a rule for authenticated peers would allow it.
 *
 * `AccessControl.install(server)` puts the check first in the server's
 * pipeline (before block-wise reassembly and Observe registration, so a
 * refused peer neither uploads a body nor registers) and filters
 * `/.well-known/core` per peer: a peer does not discover what it may not GET.
 */

import { Buffer } from 'node:buffer';
import type { Link } from '../codec/link-format.js';
import { ResponseCode } from '../constants/codes.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import { InvalidArgumentError } from '../util/errors.js';
import type { Middleware, ServerPeer, ServerRequest } from './request.js';

/**
 * A rule file (or text) that cannot be used: the message names the source and
 * line (`acl.txt:3: unknown method "GOT"`), also in `file` and `line`.
 */
export class AclRuleError extends InvalidArgumentError {
  static override readonly code: string = 'COAP_ERR_ACL_RULE';
  /** The rule source (file name, or `<acl>` for text). */
  readonly file: string;
  /** 1-based line number. */
  readonly line: number;
  constructor(file: string, line: number, reason: string) {
    super(`${file}:${line}: ${reason}`);
    this.file = file;
    this.line = line;
  }
}

/** What the ACL answers for one request. */
export type AclDecision = 'allow' | 'forbidden' | 'unauthorized';

/** The request methods rules name, and their codes (RFC 7252, RFC 8132). */
const METHODS: Record<string, number> = {
  GET: 1,
  POST: 2,
  PUT: 3,
  DELETE: 4,
  FETCH: 5,
  PATCH: 6,
  IPATCH: 7,
};
const METHOD_LIST = 'GET, POST, PUT, DELETE, FETCH, PATCH, iPATCH';
/** Every request code (class 0, details 0..31). */
const ALL_METHODS = 0xffffffff;

/** Most rules in one ACL; a longer one is refused (each request scans the list). */
export const MAX_ACL_RULES = 10_000;
/** Longest rule line, in characters. */
const MAX_LINE = 4096;

/** One segment of a rule path. */
type Segment =
  | { kind: 'literal'; text: string }
  | { kind: 'any' }
  /** Text with `{identity}` in it: `parts` joined by the identity. */
  | { kind: 'identity'; parts: string[] };

/** One parsed rule. */
export interface AclRule {
  /** `allow` (the default) or `deny`. */
  readonly effect: 'allow' | 'deny';
  /** `*` (any authenticated peer), `anonymous`, or the identity (`literal` true when it was quoted). */
  readonly identity: string;
  /** True when `identity` is a name, not `*` or `anonymous` (a quoted `"*"` is a name). */
  readonly named: boolean;
  /** Bit `1 << code` set for each allowed method code; every bit for `*`. */
  readonly methods: number;
  /** The PATH as written. */
  readonly path: string;
  /** Where it was written (`file:line`). */
  readonly source: string;
  /** @internal compiled path */
  readonly segments: readonly Segment[];
  /** @internal the path ends in `/**` */
  readonly subtree: boolean;
  /** @internal some segment uses `{identity}` */
  readonly usesIdentity: boolean;
}

/** Splits a line into tokens: bare words, or `"quoted"` with `\"` and `\\`; `#` starts a comment. */
function tokenize(line: string, fail: (why: string) => never): Array<{ text: string; quoted: boolean }> {
  const out: Array<{ text: string; quoted: boolean }> = [];
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line[i]!;
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    if (c === '#') break;
    if (c === '"') {
      let text = '';
      i++;
      for (;;) {
        if (i >= n) fail('unterminated quoted identity');
        const d = line[i]!;
        if (d === '"') {
          i++;
          break;
        }
        if (d === '\\') {
          const e = line[i + 1];
          if (e !== '"' && e !== '\\') fail('in a quoted identity, \\ escapes only " and \\');
          text += e;
          i += 2;
          continue;
        }
        text += d;
        i++;
      }
      if (i < n && line[i] !== ' ' && line[i] !== '\t') fail('a quoted identity must be followed by a space');
      out.push({ text, quoted: true });
      continue;
    }
    let j = i;
    while (j < n && line[j] !== ' ' && line[j] !== '\t') j++;
    out.push({ text: line.slice(i, j), quoted: false });
    i = j;
  }
  return out;
}

function parseMethods(text: string, fail: (why: string) => never): number {
  if (text === '*') return ALL_METHODS;
  let mask = 0;
  for (const m of text.split(',')) {
    if (m === '') fail(`empty method in "${text}" (write GET,PUT without spaces or empty entries)`);
    const code = METHODS[m.toUpperCase()];
    if (code === undefined) fail(`unknown method "${m}" (expected ${METHOD_LIST}, or *)`);
    mask |= 1 << code;
  }
  return mask;
}

function parsePath(
  text: string,
  fail: (why: string) => never,
): { segments: Segment[]; subtree: boolean; usesIdentity: boolean } {
  if (!text.startsWith('/')) fail(`path "${text}" must start with /`);
  const raw = text === '/' ? [] : text.slice(1).split('/');
  let subtree = false;
  if (raw.length > 0 && raw[raw.length - 1] === '**') {
    subtree = true;
    raw.pop();
  }
  let usesIdentity = false;
  const segments: Segment[] = raw.map((s) => {
    if (s === '**') fail(`"**" may only end the path (${text})`);
    if (s === '*') return { kind: 'any' };
    if (s === '') fail(`empty segment in path "${text}"`);
    if (s.includes('*')) fail(`"*" stands for a whole segment in "${text}" (write %2A for a literal *)`);
    const parts = s.split('{identity}');
    for (const p of parts) {
      if (p.includes('{') || p.includes('}'))
        fail(`unknown placeholder in "${text}" (only {identity}; %7B and %7D for literal braces)`);
    }
    const decoded = parts.map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return fail(`bad %-escape in path "${text}"`);
      }
    });
    if (decoded.length === 1) return { kind: 'literal', text: decoded[0]! };
    usesIdentity = true;
    return { kind: 'identity', parts: decoded };
  });
  return { segments, subtree, usesIdentity };
}

/**
 * Parses ACL text into rules; `file` names the source in errors
 * (`AclRuleError`: `file:line: reason`). Empty lines and `#` comments are skipped.
 */
export function parseAcl(text: string, file = '<acl>'): AclRule[] {
  const rules: AclRule[] = [];
  const lines = text.split(/\r?\n/);
  for (let idx = 0; idx < lines.length; idx++) {
    const lineNo = idx + 1;
    const line = lines[idx]!;
    const fail = (why: string): never => {
      throw new AclRuleError(file, lineNo, why);
    };
    if (line.length > MAX_LINE) fail(`line longer than ${MAX_LINE} characters`);
    if (line.includes('\0')) fail('NUL character');
    const tokens = tokenize(line, fail);
    if (tokens.length === 0) continue;
    let effect: 'allow' | 'deny' = 'allow';
    if (tokens.length === 4 && !tokens[0]!.quoted && /^(allow|deny)$/i.test(tokens[0]!.text)) {
      effect = tokens.shift()!.text.toLowerCase() as 'allow' | 'deny';
    }
    if (tokens.length !== 3) {
      fail(
        `expected "IDENTITY METHODS PATH" (optionally preceded by allow or deny), got ${tokens.length} field${tokens.length === 1 ? '' : 's'}`,
      );
    }
    const [id, methods, path] = tokens as [
      { text: string; quoted: boolean },
      { text: string; quoted: boolean },
      { text: string; quoted: boolean },
    ];
    if (id.text === '') fail('empty identity');
    if (methods.quoted || path.quoted) fail('only the identity may be quoted');
    const named = id.quoted || (id.text !== '*' && id.text !== 'anonymous');
    const compiled = parsePath(path.text, fail);
    if (compiled.usesIdentity && !named && id.text === 'anonymous')
      fail('{identity} in a rule for anonymous peers (they have no identity)');
    if (rules.length >= MAX_ACL_RULES) fail(`more than ${MAX_ACL_RULES} rules`);
    rules.push({
      effect,
      identity: id.text,
      named,
      methods: parseMethods(methods.text, fail),
      path: path.text,
      source: `${file}:${lineNo}`,
      ...compiled,
    });
  }
  return rules;
}

/** Stands for "some authenticated identity" when asking whether a secure peer would be allowed. */
const SOME_IDENTITY = Symbol('some identity');
type Who = string | undefined | typeof SOME_IDENTITY;

function segmentMatches(seg: Segment, value: string, who: Who): boolean {
  if (seg.kind === 'literal') return seg.text === value;
  if (seg.kind === 'any') return true;
  if (who === undefined) return false;
  const parts = seg.parts;
  if (who === SOME_IDENTITY) {
    // Some identity fits when the value has the literal parts in order around it.
    const first = parts[0]!;
    const last = parts[parts.length - 1]!;
    return value.startsWith(first) && value.endsWith(last) && value.length >= first.length + last.length;
  }
  if (parts.length === 2 && parts[0] === '' && parts[1] === '') return value === who;
  return value === parts.join(who);
}

function ruleMatches(rule: AclRule, who: Who, code: number, segments: readonly string[]): boolean {
  if (code > 31 || (rule.methods & (1 << code)) === 0) return false;
  if (rule.named) {
    if (who === SOME_IDENTITY) {
      // A named identity exists; {identity} then means that name.
      who = rule.identity;
    } else if (who !== rule.identity) return false;
  } else if (rule.identity === '*') {
    if (who === undefined) return false;
  } else if (who !== undefined) return false;
  const segs = rule.segments;
  const n = segs.length;
  if (rule.subtree ? segments.length < n : segments.length !== n) return false;
  for (let i = 0; i < n; i++) if (!segmentMatches(segs[i]!, segments[i]!, who)) return false;
  return true;
}

/**
 * The identity rules match for a peer: `oscore:KID` (hex) for an OSCORE-protected request,
 * else `PeerAuth.identity`; undefined for plain coap://.
 */
export function aclIdentity(peer: ServerPeer): string | undefined {
  const kid = peer.oscore?.kid;
  if (kid !== undefined) return `${OSCORE_IDENTITY_PREFIX}${kid.toString('hex')}`;
  return peer.auth?.identity ?? peer.identity;
}

/** What an OSCORE client's identity starts with in the rules (`oscore:01`). */
const OSCORE_IDENTITY_PREFIX = 'oscore:';

/** Options of {@link AccessControl}. */
export interface AccessControlOptions {
  /**
   * Leave `/.well-known/core` readable by every peer (default true; the document
   * is filtered per peer anyway). With false it needs a rule like any path.
   */
  discoveryAlwaysAllowed?: boolean;
}

/** What `AccessControl.install` needs of a server (a CoapServer is one). */
export interface AclHost {
  /** Runs `mw` before every other middleware (block-wise and observe included). */
  useFirst(mw: Middleware): void;
  /** Decides which links a request to /.well-known/core sees. */
  discoveryFilter: ((req: ServerRequest, link: Link) => boolean) | undefined;
  /** Whether error responses carry a diagnostic payload (default true). */
  readonly diagnosticPayloads?: boolean;
}

const WELL_KNOWN = ['.well-known', 'core'];

/**
 * An access-control list as a server middleware:
 *
 *     const acl = AccessControl.parse('* GET,PUT /devices/{identity}/**\nanonymous GET /**');
 *     acl.install(server);
 */
export class AccessControl {
  /** The rules, in order (the first match decides). */
  readonly rules: readonly AclRule[];
  private readonly discoveryOpen: boolean;

  constructor(rules: readonly AclRule[], options: AccessControlOptions = {}) {
    this.rules = rules;
    this.discoveryOpen = options.discoveryAlwaysAllowed ?? true;
  }

  /** Parses `text` (see {@link parseAcl}); `file` names it in errors. */
  static parse(text: string, file?: string, options?: AccessControlOptions): AccessControl {
    return new AccessControl(parseAcl(text, file), options);
  }

  /** The decision for `identity` (undefined: anonymous) doing method `code` on the path `segments`. */
  decide(identity: string | undefined, code: number, segments: readonly string[]): AclDecision {
    for (const rule of this.rules) {
      if (!ruleMatches(rule, identity, code, segments)) continue;
      if (rule.effect === 'allow') return 'allow';
      break;
    }
    if (identity !== undefined) return 'forbidden';
    // 4.01 when an authenticated peer would get in (a deny before it is not looked at: either way refused).
    for (const rule of this.rules) {
      if (rule.effect !== 'allow' || (!rule.named && rule.identity !== '*')) continue;
      if (ruleMatches(rule, SOME_IDENTITY, code, segments)) return 'unauthorized';
    }
    return 'forbidden';
  }

  /** The decision for a request. */
  check(req: ServerRequest): AclDecision {
    const segments = req.pathSegments;
    if (
      this.discoveryOpen &&
      segments.length === 2 &&
      segments[0] === WELL_KNOWN[0] &&
      segments[1] === WELL_KNOWN[1] &&
      req.code === 1
    )
      return 'allow';
    return this.decide(aclIdentity(req.peer), req.code, segments);
  }

  /** True when the peer of `req` may GET the link's target (relative paths only; others are hidden). */
  mayDiscover(req: ServerRequest, link: Link): boolean {
    const t = link.target;
    if (!t.startsWith('/')) return false;
    const segments = t === '/' ? [] : t.slice(1).split('/');
    return this.decide(aclIdentity(req.peer), 1, segments) === 'allow';
  }

  /** The middleware: refused requests get 4.03 or 4.01 with a short diagnostic, others go on. */
  readonly middleware: Middleware = (req) => {
    const d = this.check(req);
    if (d === 'allow') return undefined;
    const r = d === 'forbidden' ? FORBIDDEN : UNAUTHORIZED;
    return this.diagnosticPayloads ? { code: r.code, payload: r.payload } : { code: r.code };
  };

  /** Whether refusals carry their short diagnostic (the server's `diagnosticPayloads`, set by install). */
  private diagnosticPayloads = true;

  /** Puts the check first in `server`'s pipeline and filters its /.well-known/core per peer. */
  install(server: AclHost): this {
    this.diagnosticPayloads = server.diagnosticPayloads ?? true;
    server.useFirst(this.middleware);
    server.discoveryFilter = (req, link) => this.mayDiscover(req, link);
    return this;
  }
}

const FORBIDDEN: OutgoingResponse = {
  code: ResponseCode.Forbidden,
  payload: Buffer.from('not allowed by the access rules', 'utf8'),
};
const UNAUTHORIZED: OutgoingResponse = {
  code: ResponseCode.Unauthorized,
  payload: Buffer.from('authenticate (coaps:// or OSCORE) for this request', 'utf8'),
};
