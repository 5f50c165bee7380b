/**
 * CoAP over TLS (RFC 8323, `coaps+tcp://`) with node:tls: certificates
 * (server certificate, optional client certificates), and PSK where
 * node:tls offers it (TLS 1.2 PSK cipher suites; OpenSSL's TLS 1.3 PSK is
 * not reachable through node:tls's pskCallback, so PSK pins TLS 1.2). ALPN
 * "coap" (RFC 8323 §8.2) is offered and accepted.
 */
import type { X509Certificate } from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { InvalidArgumentError, NetworkError } from '../errors.js';
import type { ReliableConnection, Wire } from './reliable.js';
import { StreamTransport, type TcpTransportOptions } from './tcp.js';
import type { Peer, PeerAuth } from './transport.js';

export interface TlsTransportOptions extends TcpTransportOptions {
  /** Certificate chain (PEM) of this side (required for a server without PSK). */
  cert?: string | Buffer;
  /** Private key (PEM) of this side. */
  key?: string | Buffer;
  /** Trusted CA certificates (PEM). Default: Node's bundled roots. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Server: ask clients for a certificate (and reject those without a trusted one when `rejectUnauthorized`). */
  requestCert?: boolean;
  /** Verify the peer's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** Client: the name to verify the server certificate against (and SNI). */
  servername?: string;
  /** Pre-shared key (TLS 1.2 PSK cipher suites): client identity and key; server: the keys by identity. */
  psk?:
    | {
        /** Client: the identity sent. */
        identity: string;
        /** Client: the key. */
        key: Buffer;
      }
    | {
        /** Server: the key of an identity (undefined: unknown identity, handshake fails). */
        keys: (identity: string) => Buffer | undefined;
      };
  /** Minimum TLS version (default 'TLSv1.2'). */
  minVersion?: tls.SecureVersion;
}

const PSK_CIPHERS = 'PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-AES128-CCM8:PSK-AES128-CBC-SHA256';

function authOf(socket: tls.TLSSocket, pskIdentity: string | undefined): PeerAuth | undefined {
  if (pskIdentity !== undefined) return { mode: 'psk', identity: pskIdentity };
  // A certificate the trust anchors do not vouch for names nobody (with rejectUnauthorized
  // false such a client is let in, as an anonymous one).
  if (!socket.authorized) return undefined;
  const raw = socket.getPeerX509Certificate?.();
  if (raw === undefined) return undefined;
  return x509Auth(raw);
}

function x509Auth(c: X509Certificate): PeerAuth {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(c.subject)?.[1] ?? '';
  return {
    mode: 'x509',
    identity: cn,
    subject: c.subject.replace(/\n/g, ', '),
    ...(c.subjectAltName ? { san: c.subjectAltName.split(', ') } : {}),
    fingerprint: c.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
}

/** `coaps+tcp://`: CoAP over TLS (RFC 8323 §3, §9). */
export class TlsTransport extends StreamTransport {
  private constructor(private readonly opts: TlsTransportOptions) {
    super('coaps+tcp', opts);
  }

  /** A transport that listens when `options.port` is given, and connects to peers it sends to otherwise. */
  static async create(options: TlsTransportOptions): Promise<TlsTransport> {
    const t = new TlsTransport(options);
    if (options.port !== undefined) {
      t.connectsOut = false;
      const psk = options.psk;
      if (options.cert === undefined && (psk === undefined || !('keys' in psk))) {
        throw new InvalidArgumentError('a coaps+tcp server needs a certificate and key, or PSK keys');
      }
      const identities = new WeakMap<tls.TLSSocket, string>();
      const server = tls.createServer(
        {
          ...(options.cert !== undefined ? { cert: options.cert } : {}),
          ...(options.key !== undefined ? { key: options.key } : {}),
          ...(options.ca !== undefined ? { ca: options.ca } : {}),
          requestCert: options.requestCert ?? false,
          rejectUnauthorized: options.rejectUnauthorized ?? true,
          minVersion: options.minVersion ?? 'TLSv1.2',
          ALPNProtocols: ['coap'],
          ...(psk !== undefined && 'keys' in psk
            ? {
                ciphers:
                  options.cert !== undefined
                    ? `${PSK_CIPHERS}:${tls.DEFAULT_CIPHERS.replace(/:!PSK\b/, '')}`
                    : PSK_CIPHERS,
                // node:tls offers PSK in TLS 1.2 only: a listener with keys speaks TLS 1.2 (certificates too).
                maxVersion: 'TLSv1.2' as const,
                pskCallback: (socket: tls.TLSSocket, identity: string) => {
                  const k = psk.keys(identity);
                  if (k !== undefined) identities.set(socket, identity);
                  return k ?? null;
                },
              }
            : {}),
        },
        (socket) => t.accept(socket, authOf(socket, identities.get(socket))),
      );
      server.on('tlsClientError', () => {
        // A failed handshake closes its socket; nothing is kept for it.
      });
      server.maxConnections = t.maxConnections;
      await t.listenOn(server as unknown as net.Server, options.host, options.port);
    }
    return t;
  }

  /** @internal */
  protected open(peer: Peer, conn: ReliableConnection): Wire {
    const o = this.opts;
    const psk = o.psk !== undefined && 'identity' in o.psk ? o.psk : undefined;
    const socket = tls.connect({
      host: peer.address,
      port: peer.port,
      ...(o.servername !== undefined ? { servername: o.servername } : {}),
      ...(o.cert !== undefined ? { cert: o.cert } : {}),
      ...(o.key !== undefined ? { key: o.key } : {}),
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
      rejectUnauthorized: o.rejectUnauthorized ?? true,
      minVersion: o.minVersion ?? 'TLSv1.2',
      ALPNProtocols: ['coap'],
      ...(psk !== undefined
        ? {
            ciphers: PSK_CIPHERS,
            maxVersion: 'TLSv1.2' as const,
            checkServerIdentity: () => undefined,
            pskCallback: () => ({ identity: psk.identity, psk: psk.key }),
          }
        : {}),
    });
    socket.on('secureConnect', () => {
      if (!socket.authorized && (o.rejectUnauthorized ?? true) && psk === undefined) {
        socket.destroy(new NetworkError(`TLS: ${String(socket.authorizationError)}`));
      }
    });
    this.wireSocket(socket, conn, 'secureConnect');
    return this.socketWire(socket);
  }
}
