/**
 * The share key of an IP address for per-peer limits: an IPv6 address counts
 * by its /64 prefix (one subscriber usually holds a whole /64, so per-address
 * shares would be free to multiply), an IPv4 address by itself. And the
 * address a peer is keyed by, whatever the socket family.
 */
import { isIP } from 'node:net';

/** Strips the IPv4-mapped prefix ("::ffff:192.0.2.1" -> "192.0.2.1") so a peer has one key whatever the socket family. */
export function unmapAddress(a: string): string {
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

/** The /64 prefix of an IPv6 address ("2001:db8:0:1"); an IPv4 (or IPv4-mapped) address is its own prefix. */
export function prefixOf(address: string): string {
  if (!address.includes(':') || address.includes('.')) return address;
  const bare = address.split('%')[0]!.toLowerCase();
  const [head, tail] = bare.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = new Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0');
  const groups = tail === undefined ? h : [...h, ...zeros, ...t];
  return groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':');
}
