/** Loopback networking helpers for tests. */
import dgram from 'node:dgram';

/**
 * A UDP port that was free a moment ago on `host` (bound to port 0 and
 * released), for peers that cannot be told to bind port 0 themselves (libcoap's
 * tools). Prefer binding port 0 and reading the port back wherever possible.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((r) => s.bind(0, host, () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
