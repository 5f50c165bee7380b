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
import { CERT_SHORT_FLAG, CLIENT_CERT_FLAGS, clientCertOptions } from './credentials.js';
import type { Io } from './io.js';
import { readInputFile } from './psk.js';

/** Key flags of the client commands: --identity/-u and --psk/-k as in coap-client. */
export const CLIENT_PSK_FLAGS: FlagSpecs = {
  identity: { type: 'string', short: 'u' },
  psk: { type: 'string', short: 'k' },
  'psk-hex': { type: 'string' },
  'psk-file': { type: 'string' },
  // Certificate mode (issue 12): --cert/--key/--ca/--rpk/--rpk-trust, see credentials.ts.
  ...CLIENT_CERT_FLAGS,
};

/**
 * RFC 8323 over TLS (coaps+tcp://, coaps+ws://): --cert/--key/--ca are the
 * certificate flags above; --insecure skips checking the server's certificate.
 */
export const CLIENT_TLS_FLAGS: FlagSpecs = {
  insecure: { type: 'boolean' },
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
  ...CLIENT_TLS_FLAGS,
  ...CERT_SHORT_FLAG,
};

/** Runs that printed the certificate note already (clientOptions may be called more than once per run). */
const noted = new WeakSet<Io>();

/** --ca/--cert/--key/--insecure as CoapClient `tls` options (coaps+tcp:// and coaps+ws://). */
function tlsOptions(uri: CoapUri, p: Parsed): ClientOptions['tls'] | undefined {
  const ca = str(p, 'ca');
  const cert = str(p, 'cert');
  const key = str(p, 'key');
  const insecure = p.values.insecure === true;
  if (!uri.scheme.startsWith('coaps')) {
    const given = (['ca', 'cert', 'key', 'rpk', 'rpk-trust'] as const).filter((f) => str(p, f) !== undefined);
    if (given.length > 0 || insecure) {
      throw new UsageError(
        `${[...given.map((f) => `--${f}`), ...(insecure ? ['--insecure'] : [])].join(', ')}: only for secure URIs (coaps://, coaps+tcp://, coaps+ws://)`,
        { hint: `${uri.scheme}:// is not encrypted; use the coaps form of the URI` },
      );
    }
    return undefined;
  }
  if (uri.scheme !== 'coaps+tcp' && uri.scheme !== 'coaps+ws') {
    if (insecure) {
      throw new UsageError('--insecure applies to coaps+tcp:// and coaps+ws:// URIs', {
        hint: 'over coaps:// (DTLS) leave out --ca to skip checking the server certificate',
      });
    }
    return undefined;
  }
  if (ca === undefined && cert === undefined && key === undefined && !insecure) return undefined;
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--cert and --key go together');
  return {
    ...(ca !== undefined ? { ca: readInputFile(ca, 'CA file') } : {}),
    ...(cert !== undefined ? { cert: readInputFile(cert, 'certificate file') } : {}),
    ...(key !== undefined ? { key: readInputFile(key, 'key file') } : {}),
    ...(insecure ? { rejectUnauthorized: false } : {}),
  };
}

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
  const certs =
    uri.scheme === 'coaps'
      ? clientCertOptions(p, (line) => {
          if (noted.has(io)) return;
          noted.add(io);
          io.stderr.write(`coapkit: note: ${line}\n`);
        })
      : undefined;
  const psk = pskFor(uri, p, io, certs !== undefined);
  const port = localPort(p);
  const address = str(p, 'local-address');
  if (address !== undefined && address.trim() === '') throw new UsageError('--local-address is empty');
  const tls = tlsOptions(uri, p);
  return {
    ...(psk !== undefined ? { psk } : {}),
    ...(tls !== undefined ? { tls } : {}),
    ...(certs !== undefined ? { dtls: { ...certs } } : {}),
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
