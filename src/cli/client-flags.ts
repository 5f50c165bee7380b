/**
 * Flags every client command shares, with the short forms of libcoap's
 * coap-client (-B timeout, -N NON, -k key, -u identity, -T token), and the
 * client options they make (key, local address/port).
 */
import { Buffer } from 'node:buffer';
import type { ClientOptions } from '../client/client.js';
import type { CoapUri } from '../codec/uri.js';
import { UsageError } from '../errors.js';
import { bool, type FlagSpecs, type Parsed, str } from './args.js';
import { pskFor } from './common.js';
import type { Io } from './io.js';

/** Key flags of the client commands: --identity/-u and --psk/-k as in coap-client. */
export const CLIENT_PSK_FLAGS: FlagSpecs = {
  identity: { type: 'string', short: 'u' },
  psk: { type: 'string', short: 'k' },
  'psk-hex': { type: 'string' },
  'psk-file': { type: 'string' },
};

/** Transport flags of the client commands. */
export const CLIENT_FLAGS: FlagSpecs = {
  non: { type: 'boolean', short: 'N' },
  timeout: { type: 'string', short: 'B' },
  'local-port': { type: 'string' },
  'local-address': { type: 'string' },
  // coaps://: offer a DTLS Connection ID (RFC 9146), to survive a NAT rebinding.
  cid: { type: 'boolean' },
  ...CLIENT_PSK_FLAGS,
};

/** --local-port N: 1..65535 (0 is what happens without it). */
function localPort(p: Parsed): number | undefined {
  const v = str(p, 'local-port');
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n > 65535) {
    throw new UsageError(`--local-port expects a port number 0-65535, got "${v}"`);
  }
  return n;
}

/** Options for `new CoapClient()`: the key for coaps:// and the local address/port. */
export function clientOptions(uri: CoapUri, p: Parsed, io: Io): ClientOptions {
  const psk = pskFor(uri, p, io);
  const port = localPort(p);
  const address = str(p, 'local-address');
  if (address !== undefined && address.trim() === '') throw new UsageError('--local-address is empty');
  return {
    ...(psk !== undefined ? { psk } : {}),
    ...(bool(p, 'cid') ? { cid: true } : {}),
    ...(port !== undefined || address !== undefined
      ? { bind: { ...(address !== undefined ? { address } : {}), ...(port !== undefined ? { port } : {}) } }
      : {}),
  };
}

/**
 * -T/--token: 0xHEX is bytes; anything else is taken as text, byte for byte,
 * as libcoap's -T does (`-T cafe` is the 4 bytes "cafe"). At most 8 bytes (RFC 7252 §5.3.1).
 */
export function tokenArg(p: Parsed): Buffer | undefined {
  const v = str(p, 'token');
  if (v === undefined) return undefined;
  let token: Buffer;
  if (/^0x/i.test(v)) {
    const h = v.slice(2);
    if (h.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(h)) {
      throw new UsageError(`-T/--token: "${v}" is not valid hex`, {
        hint: 'write 0x followed by pairs of hex digits (0xcafe), or plain text as libcoap takes it',
      });
    }
    token = Buffer.from(h, 'hex');
  } else {
    token = Buffer.from(v, 'utf8');
  }
  if (token.length > 8) {
    throw new UsageError(`-T/--token is ${token.length} bytes; a CoAP token has at most 8 (RFC 7252 §5.3.1)`);
  }
  return token;
}
