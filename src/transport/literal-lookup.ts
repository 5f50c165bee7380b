/**
 * The address lookup given to every coapkit dgram socket (UDP and DTLS).
 * Peers are almost always IP literals (from rinfo, or resolved up front),
 * which dgram would otherwise pass through dns.lookup() and a
 * process.nextTick() on every send. Literals are answered synchronously, so a
 * send reaches the kernel inside socket.send(); host names still go to
 * dns.lookup().
 */
import dns from 'node:dns';
import { isIP } from 'node:net';

/** Address literal -> 4 or 6. isIP() runs a regular expression; a server sends to the same few strings. */
const literalFamily = new Map<string, number>();

export function literalLookup(
  hostname: string,
  options: dns.LookupOneOptions | number,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  let family = literalFamily.get(hostname);
  if (family === undefined) {
    family = isIP(hostname);
    if (family !== 0) {
      if (literalFamily.size >= 4096) literalFamily.clear();
      literalFamily.set(hostname, family);
    }
  }
  if (family !== 0) callback(null, hostname, family);
  else if (typeof options === 'number') dns.lookup(hostname, options, callback);
  else dns.lookup(hostname, options, callback);
}
