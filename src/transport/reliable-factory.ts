/**
 * Client-side construction of the RFC 8323 transports by scheme, each
 * module loaded only when its scheme is used (coap+ws:// also loads the
 * optional `ws` package when the running Node has no built-in WebSocket).
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';
import type { ReliableTransportOptions } from './reliable.js';
import type { Transport } from './transport.js';

export type ReliableScheme = 'coap+tcp' | 'coaps+tcp' | 'coap+ws' | 'coaps+ws';

/** Scheme-independent client settings (a subset of ClientOptions). */
export interface ReliableClientSettings {
  psk?: { identity: string | Uint8Array; key: string | Uint8Array };
  tls?: {
    ca?: string | Uint8Array | Array<string | Uint8Array>;
    cert?: string | Uint8Array;
    key?: string | Uint8Array;
    rejectUnauthorized?: boolean;
  };
  reliable?: ReliableTransportOptions;
  clock?: ReliableTransportOptions['clock'];
}

const pem = (v: string | Uint8Array) => (typeof v === 'string' ? v : Buffer.from(v));

/** A client transport for `scheme`; `servername` is the URI's host name (undefined for an IP literal). */
export async function createReliableTransport(
  scheme: ReliableScheme,
  servername: string | undefined,
  o: ReliableClientSettings,
): Promise<Transport> {
  const base: ReliableTransportOptions = { ...(o.clock ? { clock: o.clock } : {}), ...(o.reliable ?? {}) };
  const tlsOpts = {
    ...(o.tls?.ca !== undefined ? { ca: Array.isArray(o.tls.ca) ? o.tls.ca.map(pem) : pem(o.tls.ca) } : {}),
    ...(o.tls?.rejectUnauthorized !== undefined ? { rejectUnauthorized: o.tls.rejectUnauthorized } : {}),
    ...(servername !== undefined ? { servername } : {}),
  };
  switch (scheme) {
    case 'coap+tcp': {
      const { TcpTransport } = await import('./tcp.js');
      return TcpTransport.create(base);
    }
    case 'coaps+tcp': {
      const { TlsTransport } = await import('./tls.js');
      return TlsTransport.create({
        ...base,
        ...tlsOpts,
        ...(o.tls?.cert !== undefined ? { cert: pem(o.tls.cert) } : {}),
        ...(o.tls?.key !== undefined ? { key: pem(o.tls.key) } : {}),
        ...(o.psk !== undefined
          ? { psk: { identity: Buffer.from(o.psk.identity).toString('utf8'), key: Buffer.from(o.psk.key) } }
          : {}),
      });
    }
    case 'coap+ws':
    case 'coaps+ws': {
      const { WsTransport } = await import('./ws.js');
      return WsTransport.create({ ...base, ...tlsOpts, secure: scheme === 'coaps+ws' });
    }
    default:
      throw new InvalidArgumentError(`not an RFC 8323 scheme: ${String(scheme)}`);
  }
}
