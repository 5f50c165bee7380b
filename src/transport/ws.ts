/**
 * CoAP over WebSockets (RFC 8323 §4, `coap+ws://` and `coaps+ws://`): the
 * subprotocol "coap" at `/.well-known/coap`, one frame per WebSocket binary
 * message (Len 0, no Extended Length). The server side uses the `ws`
 * package, loaded with a dynamic import only when a WebSocket transport is
 * created (the core has no runtime dependency); the client side uses the
 * running Node's built-in WebSocket (Node 22+) and falls back to `ws`.
 */
import { Buffer } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { InvalidArgumentError, NetworkError } from '../errors.js';
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
import { makePeer, type Peer } from './transport.js';

/** The WebSocket resource of CoAP (RFC 8323 §8.4). */
export const COAP_WS_PATH = '/.well-known/coap';
/** The WebSocket subprotocol of CoAP (RFC 8323 §4.1). */
export const COAP_WS_PROTOCOL = 'coap';

export interface WsTransportOptions extends ReliableTransportOptions {
  /** Listen on this HTTP port (0: ephemeral); omit for a client-only transport (or give `server`). */
  port?: number;
  /** Address to listen on (default '::', falling back to '0.0.0.0'). */
  host?: string;
  /**
   * An HTTP(S) server of your own to take WebSocket upgrades on `path`
   * from (other requests and upgrades are left to it). It is not closed
   * by `close()`.
   */
  server?: http.Server | https.Server;
  /** Serve TLS (`coaps+ws://`) with this certificate and key when listening on `port`. */
  tls?: {
    /** Certificate chain (PEM). */
    cert: string | Buffer;
    /** Private key (PEM). */
    key: string | Buffer;
  };
  /** Upgrade path (default `/.well-known/coap`). */
  path?: string;
  /** Client: use wss:// (`coaps+ws://`). Set by the scheme. */
  secure?: boolean;
  /** Client: host name for the URL (Host header, TLS name check); default the peer's address. */
  servername?: string;
  /** Client over wss: trusted CAs (PEM); forces the `ws` package (the built-in WebSocket has no such option). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client over wss: verify the server certificate (default true; false forces the `ws` package). */
  rejectUnauthorized?: boolean;
  /**
   * Client: which WebSocket implementation to use. 'auto' (the default): the
   * `ws` package when it is installed, which refuses a message above
   * `maxMessageSize` before buffering it; else the running Node's built-in
   * WebSocket (Node 22+), which has no size limit of its own (the message is
   * refused only once whole). 'builtin' and 'ws' choose.
   */
  client?: 'auto' | 'builtin' | 'ws';
  /**
   * Server: decides whether an upgrade request may proceed (e.g. a token
   * check); false answers 403.
   */
  verifyRequest?: (req: IncomingMessage) => boolean;
}

type WsModule = typeof import('ws');

let wsModule: Promise<WsModule> | undefined;

/** Loads the optional `ws` package, with an error naming it when it is missing. */
export function loadWs(): Promise<WsModule> {
  wsModule ??= import('ws').then(
    (m) => (m.WebSocketServer !== undefined ? m : (m as unknown as { default: WsModule }).default),
    (err: unknown) => {
      wsModule = undefined;
      throw new InvalidArgumentError('CoAP over WebSockets needs the optional package "ws": npm install ws', {
        cause: err,
      });
    },
  );
  return wsModule;
}

interface MinimalWs {
  binaryType: string;
  protocol: string;
  /** Bytes queued and not yet sent (both the `ws` client and the built-in WebSocket have it). */
  readonly bufferedAmount?: number;
  send(data: Uint8Array): void;
  close(code?: number): void;
  /** The `ws` client only: closes without the closing handshake. */
  terminate?(): void;
}

/** `coap+ws://` / `coaps+ws://`: CoAP over WebSockets (RFC 8323 §4). */
export class WsTransport extends ReliableTransport {
  private httpServer: http.Server | https.Server | undefined;
  private ownServer = false;
  private wss: import('ws').WebSocketServer | undefined;
  private ws: WsModule | undefined;
  private readonly sockets = new Set<{ terminate?(): void; close(): void }>();
  private upgradeListener: ((req: IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;

  private constructor(private readonly opts: WsTransportOptions) {
    super(opts.secure || opts.tls !== undefined ? 'coaps+ws' : 'coap+ws', true, opts);
  }

  /**
   * A transport that listens when `port` or `server` is given, and connects to peers it
   * sends to otherwise. Loads the `ws` package when listening, or for the client unless
   * `client: 'builtin'` (see `client`).
   */
  static async create(options: WsTransportOptions = {}): Promise<WsTransport> {
    const t = new WsTransport(options);
    const needWs =
      options.client === 'ws' ||
      options.ca !== undefined ||
      options.rejectUnauthorized === false ||
      (options.client !== 'builtin' && typeof globalThis.WebSocket !== 'function');
    if (options.port !== undefined || options.server !== undefined || needWs) t.ws = await loadWs();
    // 'auto': `ws` bounds what it buffers of a message; the built-in client only without it.
    else if (options.client !== 'builtin') t.ws = await loadWs().catch(() => undefined);
    if (options.port !== undefined || options.server !== undefined) {
      t.connectsOut = false;
      await t.listen();
    }
    return t;
  }

  private async listen(): Promise<void> {
    const o = this.opts;
    const ws = this.ws!;
    const path = o.path ?? COAP_WS_PATH;
    this.wss = new ws.WebSocketServer({
      noServer: true,
      maxPayload: this.receiveLimit,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(COAP_WS_PROTOCOL) ? COAP_WS_PROTOCOL : false),
    });
    let server = o.server;
    if (server === undefined) {
      server =
        o.tls !== undefined ? https.createServer({ cert: o.tls.cert, key: o.tls.key }) : http.createServer();
      server.on('request', (_req, res) => {
        res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' });
        res.end(`CoAP over WebSockets: connect to ${path} with the subprotocol "coap"\n`);
      });
      this.ownServer = true;
    }
    this.httpServer = server;
    this.upgradeListener = (req, socket, head) => {
      const url = req.url ?? '';
      const p = url.split('?')[0];
      if (p !== path) {
        if (this.ownServer) socket.destroy();
        return; // someone else's upgrade
      }
      const offered = String(req.headers['sec-websocket-protocol'] ?? '')
        .split(',')
        .map((s) => s.trim());
      if (!offered.includes(COAP_WS_PROTOCOL) || (o.verifyRequest && !o.verifyRequest(req))) {
        socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
        return;
      }
      this.wss!.handleUpgrade(req, socket, head, (client) => this.acceptWs(client, req));
    };
    server.on('upgrade', this.upgradeListener);
    if (this.ownServer) {
      await listenServer(server, o.host, o.port ?? 0);
    }
  }

  private acceptWs(client: import('ws').WebSocket, req: IncomingMessage): void {
    const address = unmapAddress(req.socket.remoteAddress ?? '');
    const peer = makePeer(address, req.socket.remotePort ?? 0);
    const conn = this.accepted(
      {
        write: (frame) => {
          // A peer that does not read: its unsent data is bounded, then the connection goes.
          if (client.bufferedAmount + frame.length > this.maxWriteBuffer) client.terminate();
          else client.send(frame);
        },
        end: () => client.close(1000),
        destroy: () => client.terminate(),
      },
      peer,
    );
    if (conn === undefined) return;
    this.sockets.add(client);
    client.binaryType = 'nodebuffer';
    client.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return this.abort(conn, 'text WebSocket message (CoAP uses binary messages)');
      this.receivedMessage(conn, data);
    });
    client.on('error', () => {});
    client.on('close', () => {
      this.sockets.delete(client);
      this.closedWire(conn);
    });
  }

  /** @internal */
  protected open(peer: Peer, conn: ReliableConnection): Wire {
    const o = this.opts;
    const host = o.servername ?? (peer.address.includes(':') ? `[${peer.address}]` : peer.address);
    const url = `${o.secure ? 'wss' : 'ws'}://${host}:${peer.port}${o.path ?? COAP_WS_PATH}`;
    let sock: MinimalWs;
    if (this.ws !== undefined) {
      const c = new this.ws.WebSocket(url, COAP_WS_PROTOCOL, {
        maxPayload: this.receiveLimit,
        perMessageDeflate: false,
        ...(o.servername !== undefined ? { lookup: fixedLookup(peer.address) } : {}),
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
        ...(o.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      } as import('ws').ClientOptions);
      c.on('error', () => {});
      sock = c as unknown as MinimalWs;
    } else {
      sock = new globalThis.WebSocket(url, COAP_WS_PROTOCOL) as unknown as MinimalWs;
    }
    sock.binaryType = this.ws !== undefined ? 'nodebuffer' : 'arraybuffer';
    const s = sock as unknown as {
      onopen: (() => void) | null;
      onmessage: ((ev: { data: unknown }) => void) | null;
      onclose: ((ev: { code: number; reason: string }) => void) | null;
      onerror: ((ev: { message?: string; error?: unknown }) => void) | null;
    };
    let failure: Error | undefined;
    s.onopen = () => {
      if (sock.protocol !== COAP_WS_PROTOCOL) {
        failure = new NetworkError(`${url} did not accept the WebSocket subprotocol "coap"`);
        sock.close(1002);
        return;
      }
      this.connected(conn);
    };
    s.onmessage = (ev) => {
      const d = ev.data;
      if (typeof d === 'string')
        return this.abort(conn, 'text WebSocket message (CoAP uses binary messages)');
      const buf = Buffer.isBuffer(d) ? d : Buffer.from(d as ArrayBuffer);
      this.receivedMessage(conn, buf);
    };
    s.onerror = (ev) => {
      failure ??= new NetworkError(
        `WebSocket ${url}: ${ev.message ?? (ev.error as Error | undefined)?.message ?? 'connection failed'}`,
      );
      // `ws` (a message above maxPayload...) would wait up to 30 s for the peer's close frame.
      sock.terminate?.();
    };
    s.onclose = () => {
      this.sockets.delete(sock);
      this.closedWire(conn, failure);
    };
    this.sockets.add(sock);
    return {
      write: (frame: Buffer) => {
        if ((sock.bufferedAmount ?? 0) + frame.length > this.maxWriteBuffer) sock.close(1008);
        else sock.send(frame);
      },
      end: () => sock.close(1000),
      destroy: () => {
        if (typeof sock.terminate === 'function') sock.terminate();
        else sock.close(1000);
      },
    };
  }

  /** The local address the HTTP server listens on ('::' and port 0 for a client transport). */
  localAddress(): LocalAddress {
    return listenerAddress(this.httpServer);
  }

  /** Closes every connection, and the HTTP server when it is the transport's own. */
  async close(): Promise<void> {
    this.closeConnections();
    const server = this.httpServer;
    this.httpServer = undefined;
    if (server !== undefined && this.upgradeListener !== undefined)
      server.off('upgrade', this.upgradeListener);
    for (const s of this.sockets) {
      if (typeof s.terminate === 'function') s.terminate();
    }
    this.wss?.close();
    if (server !== undefined && this.ownServer) {
      (server as http.Server).closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
}

function fixedLookup(address: string) {
  return (
    _host: string,
    opts: { all?: boolean },
    cb: (err: Error | null, address: string | { address: string; family: number }[], family?: number) => void,
  ) => {
    const family = address.includes(':') ? 6 : 4;
    if (opts.all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  };
}
