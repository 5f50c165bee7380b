/**
 * CoAP over TCP (RFC 8323, `coap+tcp://`) with node:net, and the stream
 * plumbing the TLS transport (tls.ts) shares: one socket per peer, the TCP
 * framing, CSM first. A transport made with `listen` accepts connections
 * (server); every transport opens connections on demand to the peers it
 * sends to (client).
 */
import type { Buffer } from 'node:buffer';
import net from 'node:net';
import { NetworkError } from '../errors.js';
import { unmapAddress } from '../util/ip-prefix.js';
import {
  type LocalAddress,
  listenerAddress,
  listenServer,
  type ReliableConnection,
  ReliableTransport,
  type ReliableTransportOptions,
  type Wire,
} from './reliable.js';
import { makePeer, type Peer, type PeerAuth } from './transport.js';

export interface TcpTransportOptions extends ReliableTransportOptions {
  /**
   * Listen for connections on this port (0: ephemeral); omit for a client transport. A
   * listening transport answers on the connections it accepted and opens none itself.
   */
  port?: number;
  /** Address to listen on (default '::', falling back to '0.0.0.0'). */
  host?: string;
  /** Connect timeout for client connections (default 10000 ms). */
  connectTimeoutMs?: number;
}

/**
 * An OpenSSL error as a person reads it: "...:SSL routines:ssl3_read_bytes:tlsv13 alert
 * certificate required:../deps/openssl/...:1601:SSL alert number 116\n" becomes "TLS: tlsv13
 * alert certificate required (alert 116)"; other errors are their message.
 */
function socketErrorText(err: Error): string {
  const m = /:SSL routines:[^:]*:([^:]+):.*?(?:SSL alert number (\d+))?\s*$/s.exec(err.message);
  if (m === null) return err.message;
  return `TLS: ${m[1]}${m[2] !== undefined ? ` (alert ${m[2]})` : ''}`;
}

/** A hint for a socket error: refused connection, untrusted or mismatched certificate. */
function hintFor(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return "the server certificate does not name the URI's host";
  // An alert the server sent about our (missing) client certificate: not about its own.
  if (/ALERT_CERTIFICATE_REQUIRED/.test(code))
    return 'the server asks for a client certificate: give one from a CA it trusts (coapkit: --cert FILE --key FILE; library: tls.cert, tls.key)';
  if (
    /ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED)/.test(
      code,
    )
  )
    return 'the server refused our client certificate: is it from a CA the server trusts, and still valid?';
  if (/CERT|SIGNATURE|ISSUER/.test(code)) {
    return 'the server certificate is not trusted: give its CA (coapkit: --ca FILE; library: tls.ca), or skip the check (--insecure)';
  }
  if (code.startsWith('ERR_SSL') || /alert|handshake/i.test(err.message)) {
    return 'the TLS handshake failed: does the server speak TLS on that port, with a certificate or PSK you share?';
  }
  return 'is a CoAP server listening on that TCP port (RFC 8323)?';
}

/** Shared by TCP and TLS: stream sockets carrying the RFC 8323 TCP framing. */
export abstract class StreamTransport extends ReliableTransport {
  /** @internal */
  protected server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** @internal */
  protected readonly connectTimeoutMs: number;

  constructor(scheme: string, options: TcpTransportOptions) {
    super(scheme, false, options);
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  }

  /** @internal Wires a socket (connected or connecting) to a connection. */
  protected wireSocket(socket: net.Socket, conn: ReliableConnection, connectEvent?: string): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    let failure: Error | undefined;
    if (connectEvent !== undefined) {
      socket.setTimeout(this.connectTimeoutMs, () => {
        failure = new NetworkError(`connecting to ${conn.peer.address} port ${conn.peer.port} timed out`);
        socket.destroy();
      });
      socket.once(connectEvent, () => {
        socket.setTimeout(0);
        this.connected(conn);
      });
    }
    socket.on('data', (chunk: Buffer) => this.received(conn, chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      failure ??= new NetworkError(
        `${conn.initiator ? 'connection to' : 'connection from'} ${conn.peer.address} port ${conn.peer.port}: ${socketErrorText(err)}`,
        { cause: err, hint: hintFor(err) },
      );
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.closedWire(conn, failure);
    });
  }

  /** @internal */
  protected socketWire(socket: net.Socket): Wire {
    return {
      write: (frame: Buffer) => {
        if (socket.destroyed) return;
        // A peer that does not read: its unsent data is bounded, then the connection goes.
        if (socket.writableLength + frame.length > this.maxWriteBuffer) {
          socket.destroy(new NetworkError(`peer does not read: ${socket.writableLength} bytes unsent`));
          return;
        }
        socket.write(frame);
      },
      end: () => socket.end(),
      destroy: () => socket.destroy(),
    };
  }

  /** @internal Accepts a socket (server side). */
  protected accept(socket: net.Socket, auth?: PeerAuth): void {
    const address = unmapAddress(socket.remoteAddress ?? '');
    const port = socket.remotePort ?? 0;
    if (address === '') {
      socket.destroy();
      return;
    }
    const peer = makePeer(address, port, auth);
    const conn = this.accepted(this.socketWire(socket), peer);
    if (conn === undefined) {
      socket.destroy();
      return;
    }
    this.wireSocket(socket, conn);
  }

  /** @internal */
  protected async listenOn(server: net.Server, host: string | undefined, port: number): Promise<void> {
    this.server = server;
    await listenServer(server, host, port);
    server.on('error', (err) => this.handlers?.error?.(err));
  }

  /** The local address the transport listens on ('::' and port 0 for a client transport). */
  localAddress(): LocalAddress {
    return listenerAddress(this.server);
  }

  /** Closes every connection (gracefully; destroyed after 1 s) and the listener. */
  async close(): Promise<void> {
    this.closeConnections();
    const server = this.server;
    this.server = undefined;
    // Sockets that do not finish closing within a second are destroyed.
    const closing = [...this.sockets].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.destroyed) return resolve();
          const t = setTimeout(() => s.destroy(), 1000);
          t.unref();
          s.once('close', () => {
            clearTimeout(t);
            resolve();
          });
        }),
    );
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.all(closing);
  }
}

/** `coap+tcp://`: CoAP over TCP (RFC 8323 §3). */
export class TcpTransport extends StreamTransport {
  private constructor(options: TcpTransportOptions) {
    super('coap+tcp', options);
  }

  /** A transport that listens when `options.port` is given, and connects to peers it sends to. */
  static async create(options: TcpTransportOptions = {}): Promise<TcpTransport> {
    const t = new TcpTransport(options);
    if (options.port !== undefined) {
      t.connectsOut = false;
      const server = net.createServer({ noDelay: true }, (socket) => t.accept(socket));
      server.maxConnections = t.maxConnections;
      await t.listenOn(server, options.host, options.port);
    }
    return t;
  }

  /** @internal */
  protected open(peer: Peer, conn: ReliableConnection): Wire {
    const socket = net.connect({ host: peer.address, port: peer.port, noDelay: true });
    this.wireSocket(socket, conn, 'connect');
    return this.socketWire(socket);
  }
}
