/**
 * NSS key log output (the SSLKEYLOGFILE format Wireshark/tshark read):
 *   CLIENT_RANDOM <client_random hex> <master_secret hex>
 */
import { Buffer } from 'node:buffer';
import { appendFileSync } from 'node:fs';

export type KeyLogSink = string | ((line: string) => void);
export type KeyLogger = (clientRandom: Uint8Array, masterSecret: Uint8Array) => void;

export function keyLogLine(clientRandom: Uint8Array, masterSecret: Uint8Array): string {
  return `CLIENT_RANDOM ${Buffer.from(clientRandom).toString('hex')} ${Buffer.from(masterSecret).toString('hex')}`;
}

/** Builds a key logger from an option, falling back to the SSLKEYLOGFILE environment variable. */
export function createKeyLogger(sink?: KeyLogSink): KeyLogger | undefined {
  const target = sink ?? process.env.SSLKEYLOGFILE;
  if (target === undefined || target === '') return undefined;
  if (typeof target === 'function') return (cr, ms) => target(keyLogLine(cr, ms));
  return (cr, ms) => {
    try {
      appendFileSync(target, `${keyLogLine(cr, ms)}\n`, { mode: 0o600 });
    } catch {
      // Key logging is a debugging aid; never break a handshake because of it.
    }
  };
}
