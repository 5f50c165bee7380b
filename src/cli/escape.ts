/**
 * The CLI's escaping: everything of src/util/escape.ts, plus peer addresses.
 */
import { formatAddress } from '../transport/address.js';
import { escapeText } from '../util/escape.js';

export * from '../util/escape.js';

/** "address:port" of a peer for logs and messages, IPv6 in brackets (formatAddress), escaped. */
export function peerText(address: string, port: number | string): string {
  return escapeText(formatAddress(address, port));
}
