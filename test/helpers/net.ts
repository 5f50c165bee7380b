/** Loopback networking helpers for tests. */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';

/**
 * A UDP port that was free a moment ago on `host` (default 127.0.0.1), and with
 * `pair` port+1 too (DTLS peers that also open coap:// next to coaps://). For peers
 * that cannot be told to bind port 0 themselves (libcoap's and OpenSSL's tools);
 * prefer binding port 0 and reading the port back wherever possible.
 */
export async function freePort(opts: { host?: string; pair?: boolean } = {}): Promise<number> {
  const host = opts.host ?? '127.0.0.1';
  const family = host.includes(':') ? 'udp6' : 'udp4';
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below the kernel's ephemeral range (32768-60999 by default): a socket another test binds
    // to port 0, or a TCP connection's local port, is never given this port while our peer
    // starts, or while a server restarts on it.
    const port = await bindAndRelease(family, host, BELOW_EPHEMERAL + randomInt(BELOW_EPHEMERAL_SPAN));
    if (port === undefined) continue;
    if (!opts.pair) return port;
    if (port < 65535 && (await bindAndRelease(family, host, port + 1)) !== undefined) return port;
  }
  throw new Error(`no free UDP port${opts.pair ? ' pair' : ''} on ${host}`);
}

/** The ports freePort picks from: [20000, 32767). */
const BELOW_EPHEMERAL = 20_000;
const BELOW_EPHEMERAL_SPAN = 32_767 - BELOW_EPHEMERAL;

/** Binds `port` (0: any) and closes again; the bound port, or undefined if it was taken. */
async function bindAndRelease(
  family: 'udp4' | 'udp6',
  host: string,
  port: number,
): Promise<number | undefined>;
async function bindAndRelease(family: 'udp4' | 'udp6', host: string, port: 0): Promise<number>;
async function bindAndRelease(
  family: 'udp4' | 'udp6',
  host: string,
  port: number,
): Promise<number | undefined> {
  const s = dgram.createSocket(family);
  const bound = await new Promise<number | undefined>((resolve) => {
    s.once('error', () => resolve(undefined));
    s.bind(port, host, () => resolve(s.address().port));
  });
  await new Promise<void>((r) => s.close(() => r()));
  return bound;
}
