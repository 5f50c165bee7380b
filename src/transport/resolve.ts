/**
 * Host name resolution like the seed's device (getaddrinfo with AF_UNSPEC:
 * A and AAAA), observable through the `coapkit:dns:*` diagnostics channels.
 */
import dns from 'node:dns';
import { isIP } from 'node:net';
// The global `performance` is an accessor: every use would call a getter; the module binding does not.
import { performance } from 'node:perf_hooks';
import { channels } from '../diagnostics.js';
import { DnsError } from '../errors.js';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
  /** All addresses the lookup returned, in resolver order. */
  addresses: Array<{ address: string; family: 4 | 6 }>;
  durationMs: number;
}

export type Lookup = (host: string) => Promise<Array<{ address: string; family: number }>>;

const defaultLookup: Lookup = (host) => dns.promises.lookup(host, { all: true, family: 0, verbatim: true });

/**
 * Resolves `host`. IP literals return at once. `prefer` picks a family when
 * both are available (default: resolver order, as getaddrinfo does).
 */
export async function resolveHost(
  host: string,
  options: { prefer?: 4 | 6; lookup?: Lookup } = {},
): Promise<ResolvedAddress> {
  const bare = host.split('%')[0]!;
  const literal = isIP(bare);
  if (literal !== 0) {
    return {
      address: host,
      family: literal as 4 | 6,
      addresses: [{ address: host, family: literal as 4 | 6 }],
      durationMs: 0,
    };
  }
  const start = performance.now();
  let results: Array<{ address: string; family: number }>;
  try {
    results = await (options.lookup ?? defaultLookup)(host);
  } catch (err) {
    const durationMs = performance.now() - start;
    const code = (err as NodeJS.ErrnoException).code;
    const e = new DnsError(`cannot resolve host "${host}": ${code ?? (err as Error).message}`, {
      cause: err,
      hint: code === 'ENOTFOUND' ? 'check the host name' : 'check the resolver configuration',
    });
    if (channels.dnsFailed.hasSubscribers) channels.dnsFailed.publish({ host, error: e, durationMs });
    throw e;
  }
  const durationMs = performance.now() - start;
  const addresses = results.map((r) => ({ address: r.address, family: (r.family === 6 ? 6 : 4) as 4 | 6 }));
  if (addresses.length === 0) throw new DnsError(`host "${host}" has no A or AAAA records`);
  const chosen = (options.prefer && addresses.find((a) => a.family === options.prefer)) || addresses[0]!;
  if (channels.dnsResolved.hasSubscribers) {
    channels.dnsResolved.publish({
      host,
      address: chosen.address,
      family: chosen.family,
      addresses,
      durationMs,
    });
  }
  return { address: chosen.address, family: chosen.family, addresses, durationMs };
}
