/**
 * Group requests from the CLI (RFC 7252 §8.2): `coapkit get|discover` with a
 * multicast URI send one NON request and print every member's response with
 * its source, after collecting for --window seconds.
 */
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import {
  DEFAULT_MULTICAST_WINDOW_MS,
  type MulticastRequestOptions,
  multicastRequest,
} from '../../client/client.js';
import type { CoapResponse } from '../../client/response.js';
import type { CoapUri } from '../../codec/uri.js';
import { TimeoutError, UsageError } from '../../errors.js';
import { type FlagSpecs, type Parsed, str } from '../args.js';

export const MULTICAST_CLIENT_FLAGS: FlagSpecs = {
  window: { type: 'string' },
  'multicast-interface': { type: 'string' },
  'multicast-ttl': { type: 'string' },
};

/** True for coap:// URIs whose host is an IPv4 or IPv6 multicast address literal. */
export function isMulticastUri(uri: CoapUri): boolean {
  const host = uri.host.split('%')[0]!;
  if (isIP(host) === 6) return /^ff/i.test(host);
  if (isIP(host) === 4) {
    const first = Number(host.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return false;
}

function seconds(p: Parsed, name: string): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new UsageError(`--${name} expects a positive number of seconds, got "${v}"`);
  return Math.round(n * 1000);
}

/** Multicast options from --window, --multicast-interface, --multicast-ttl. */
export function multicastClientOptions(p: Parsed): MulticastRequestOptions {
  const o: MulticastRequestOptions = { windowMs: seconds(p, 'window') ?? DEFAULT_MULTICAST_WINDOW_MS };
  const iface = str(p, 'multicast-interface');
  if (iface !== undefined) o.multicastInterface = iface;
  const ttl = str(p, 'multicast-ttl');
  if (ttl !== undefined) {
    const n = Number(ttl);
    if (!Number.isInteger(n) || n < 1 || n > 255)
      throw new UsageError(`--multicast-ttl expects an integer 1-255, got "${ttl}"`);
    o.multicastTtl = n;
  }
  return o;
}

/** Sends the group request; throws TimeoutError (exit 3) when nobody answered. */
export async function groupRequest(href: string, opts: MulticastRequestOptions): Promise<CoapResponse[]> {
  const res = await multicastRequest(href, opts);
  if (res.length === 0) {
    const s = ((opts.windowMs ?? DEFAULT_MULTICAST_WINDOW_MS) / 1000).toFixed(1);
    throw new TimeoutError(`no response from the group within ${s} s`, {
      hint: 'members stay silent for errors and empty results (RFC 7252 §8.2); a longer --window may help',
    });
  }
  return res;
}

export function sourceOf(r: CoapResponse): string {
  const a = r.peer.address;
  return a.includes(':') ? `coap://[${a.replace('%', '%25')}]:${r.peer.port}` : `coap://${a}:${r.peer.port}`;
}

/** The multicast options of `coapkit serve --multicast`. */
export interface ServeMulticast {
  groups: string[];
  port: number;
  /** IPv4 interface address for IPv4 groups. */
  interface?: string;
  /** Interface name for IPv6 groups. */
  interface6?: string;
  leisureMs: number;
}

/**
 * Interprets --multicast-interface: an IPv4 address (IPv4 groups only), or
 * an interface name (its IPv4 address for 224.0.1.187, the name for ff02::fd
 * and ff05::fd). Default groups: 224.0.1.187, plus the IPv6 ones when an
 * interface name is given.
 */
export function serveMulticast(
  iface: string | undefined,
  groups: string[],
  port: number,
  leisureMs: number,
): ServeMulticast {
  const m: ServeMulticast = { groups: [], port, leisureMs };
  if (iface !== undefined) {
    if (isIP(iface) === 4) m.interface = iface;
    else {
      const name = iface.replace(/^::%/, '');
      const nics = networkInterfaces()[name];
      if (nics === undefined) {
        throw new UsageError(`--multicast-interface: no interface "${name}" on this machine`, {
          hint: `interfaces: ${Object.keys(networkInterfaces()).join(', ')}`,
        });
      }
      const v4 = nics.find((a) => a.family === 'IPv4');
      if (v4) m.interface = v4.address;
      m.interface6 = name;
    }
  }
  for (const g of groups) {
    const kind = isIP(g);
    const ok =
      (kind === 4 && Number(g.split('.')[0]) >= 224 && Number(g.split('.')[0]) <= 239) ||
      (kind === 6 && /^ff/i.test(g));
    if (!ok) throw new UsageError(`--multicast-group expects a multicast address, got "${g}"`);
    if (kind === 6 && m.interface6 === undefined)
      throw new UsageError(`--multicast-group ${g} needs --multicast-interface NAME (an interface name)`);
  }
  m.groups =
    groups.length > 0
      ? groups
      : ['224.0.1.187', ...(m.interface6 !== undefined ? ['ff02::fd', 'ff05::fd'] : [])];
  return m;
}

/** Every local unicast address to bind when the wildcard would also get the group's datagrams. */
export function localAddresses(): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv6' && /^fe80:/i.test(a.address)) out.push(`${a.address}%${name}`);
      else out.push(a.address);
    }
  }
  return out;
}
