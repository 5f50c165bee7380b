/**
 * What the RFC 8323 transports (TCP, TLS, WebSockets) share: one
 * connection per peer, the CSM exchange (each side's first message),
 * Ping/Pong, Release and Abort (§5), and the conversion between the
 * message layer's RFC 7252 datagrams and RFC 8323 frames. The transports
 * only bring the byte pipes (`Wire`): a stream socket with the TCP framing,
 * or a WebSocket with one frame per WebSocket message.
 *
 * Bounds (README "Limits and defences"): at most `maxConnections`
 * connections, at most `maxConnectionsPerAddress` from one IP address
 * (accepted ones), an idle timeout, and a receive buffer of at most one
 * frame of `maxMessageSize` bytes (a larger one is answered with Abort
 * 7.05 and the connection is closed).
 */

import { Buffer } from 'node:buffer';
import type net from 'node:net';
import {
  applyCsm,
  DEFAULT_RELIABLE_MAX_MESSAGE_SIZE,
  datagramToFrame,
  decodeFrame,
  encodeAbort,
  encodeCsm,
  encodeFrame,
  FrameDecoder,
  FrameTooLargeError,
  frameToDatagram,
  type PeerCapabilities,
  readFrameHeader,
  SignalCode,
} from '../codec/reliable.js';
import { channels } from '../diagnostics.js';
import { ClosedError, MessageFormatError, NetworkError, ProtocolError } from '../errors.js';
import { type Clock, realClock, type TimerHandle } from '../util/clock.js';
import type { AddressFamily, Peer, Transport, TransportHandlers } from './transport.js';

/** A connection's byte pipe, as a transport provides it. */
export interface Wire {
  /** Sends one frame (already framed for this wire). */
  write(frame: Buffer): void;
  /** Closes gracefully once written data is flushed. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
}

/** Options common to the RFC 8323 transports. */
export interface ReliableTransportOptions {
  /**
   * Largest message (whole frame) this side accepts, announced in its CSM
   * as Max-Message-Size (default 1152, the RFC 8323 default, which is not
   * announced). A larger frame is answered with Abort (7.05) and the
   * connection is closed; bodies above it go block-wise (RFC 7959).
   */
  maxMessageSize?: number;
  /** Most connections at once, both directions (default 1024). */
  maxConnections?: number;
  /** Most accepted connections from one IP address (default 32). */
  maxConnectionsPerAddress?: number;
  /** A connection with no traffic for this long is closed (default 300000 ms; 0: never). */
  idleTimeoutMs?: number;
  /** A connection whose peer sent no CSM this long after opening is aborted (default 10000 ms). */
  csmTimeoutMs?: number;
  /**
   * Most bytes queued for a peer that does not read (default 1 MiB): beyond,
   * the connection is closed instead of buffering more.
   */
  maxWriteBuffer?: number;
  /**
   * Announce BERT support (RFC 8323 §6) in the CSM (default true): the
   * Block-Wise-Transfer option next to a Max-Message-Size above 1152 (§5.3.2: with
   * 1152 or less it would not indicate BERT, so it is left out). Block-wise transfers
   * with a peer that announces both too carry several 1024-byte blocks per message
   * (SZX 7), as many as its Max-Message-Size allows.
   */
  bert?: boolean;
  /** The source of time and timers (default the real clock). */
  clock?: Clock;
}

/** One connection to a peer. */
export interface ReliableConnection {
  /** The peer at the other end (its key is the connection's address and port). */
  readonly peer: Peer;
  /** What the peer announced in its CSM (defaults until it arrives). */
  readonly caps: PeerCapabilities;
  /** The peer's CSM arrived. */
  csmReceived: boolean;
  /** This side opened the connection (client). */
  readonly initiator: boolean;
}

interface Conn extends ReliableConnection {
  wire: Wire | undefined;
  /** Frames written before the wire was ready (client side, while connecting). */
  queued: Buffer[] | undefined;
  decoder: FrameDecoder | undefined;
  lastActive: number;
  timer: TimerHandle | undefined;
  closed: boolean;
  caps: PeerCapabilities;
  /** Message IDs of the pings sent as 7.02 and not yet answered, oldest first (at most MAX_PINGS). */
  pings: number[] | undefined;
  /** Callers of `awaitCsm` (true: the CSM arrived; false: the connection ended first). */
  csmWaiters: ((ok: boolean) => void)[] | undefined;
}

/** Unanswered pings remembered per connection. */
const MAX_PINGS = 16;

function settleCsmWaiters(conn: Conn, ok: boolean): void {
  const waiters = conn.csmWaiters;
  if (waiters === undefined) return;
  conn.csmWaiters = undefined;
  for (const w of waiters) w(ok);
}

/** Abort's diagnostic when the first message is not a CSM. */
const CSM_FIRST = 'CSM expected as the first message';

/**
 * The connection table and RFC 8323 signaling of a reliable transport.
 * Subclasses open (client) and accept (server) wires and feed their bytes
 * to `received`.
 */
export abstract class ReliableTransport implements Transport {
  readonly reliable = true;
  /**
   * Largest message sent to a peer before its CSM says otherwise (RFC 8323
   * §5.3.1: 1152); block-wise sizes its blocks from it.
   */
  readonly maxMessageSize = DEFAULT_RELIABLE_MAX_MESSAGE_SIZE;
  /** @internal */
  protected handlers: TransportHandlers | undefined;
  /** @internal */
  protected readonly conns = new Map<string, Conn>();
  private readonly perAddress = new Map<string, number>();
  /** @internal */
  protected readonly receiveLimit: number;
  /** @internal */
  protected readonly maxConnections: number;
  /** @internal */
  protected readonly maxPerAddress: number;
  /** @internal */
  protected readonly idleMs: number;
  /** @internal */
  protected readonly csmTimeoutMs: number;
  /** @internal */
  protected readonly bert: boolean;
  /** @internal */
  protected readonly maxWriteBuffer: number;
  /** @internal */
  protected readonly clock: Clock;
  /** @internal */
  protected closing = false;
  /**
   * Opens connections to peers it has none with (client). A listening
   * transport only answers on the connections it accepted: a message for a
   * peer whose connection closed (a late notification) fails with a peer
   * error instead of connecting back to the peer's ephemeral port.
   */
  protected connectsOut = true;
  /** Connections refused by a limit since start (global or per-address). */
  connectionsRefused = 0;
  /** Connections aborted (protocol error, oversized frame, missing CSM). */
  connectionsAborted = 0;

  constructor(
    /** URI scheme: coap+tcp, coaps+tcp, coap+ws or coaps+ws. */
    readonly scheme: string,
    /** WebSocket framing (one frame per WebSocket message, no length). */
    protected readonly websocket: boolean,
    options: ReliableTransportOptions,
  ) {
    this.receiveLimit = options.maxMessageSize ?? DEFAULT_RELIABLE_MAX_MESSAGE_SIZE;
    if (!(this.receiveLimit >= 64)) throw new RangeError('maxMessageSize must be at least 64');
    this.maxConnections = options.maxConnections ?? 1024;
    this.maxPerAddress = options.maxConnectionsPerAddress ?? 32;
    this.idleMs = options.idleTimeoutMs ?? 300_000;
    this.csmTimeoutMs = options.csmTimeoutMs ?? 10_000;
    // Block-Wise-Transfer indicates BERT only with a Max-Message-Size above 1152 (§5.3.2).
    this.bert = (options.bert ?? true) && this.receiveLimit > DEFAULT_RELIABLE_MAX_MESSAGE_SIZE;
    this.maxWriteBuffer = options.maxWriteBuffer ?? 1 << 20;
    this.clock = options.clock ?? realClock;
  }

  /**
   * Our CSM. Max-Message-Size only when it differs from the 1152 every peer
   * assumes (Wireshark 4.0 takes signaling option 2 for a malformed CoAP option).
   */
  private csm(): Buffer {
    const mms = this.receiveLimit === DEFAULT_RELIABLE_MAX_MESSAGE_SIZE ? undefined : this.receiveLimit;
    return encodeCsm(mms, this.bert, this.websocket);
  }

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  /** The local address the transport listens on ('::' and port 0 for a client transport). */
  abstract localAddress(): LocalAddress;

  /** @internal Opens a client connection to `peer` (calls `connected`/`closedWire` later), or undefined when this side cannot. */
  protected abstract open(peer: Peer, conn: ReliableConnection): Wire | undefined;

  /**
   * BERT (RFC 8323 §6) with `peer`: undefined when this side does not announce it
   * (SZX 7 is then a format error), 0 when the peer has not announced it (yet:
   * Block-Wise-Transfer and a Max-Message-Size above 1152), else the peer's
   * Max-Message-Size, which bounds a BERT message.
   */
  bertMessageSize(peer: Peer): number | undefined {
    if (!this.bert) return undefined;
    const caps = this.conns.get(peer.key)?.caps;
    return caps?.blockWiseTransfer === true && caps.maxMessageSize > DEFAULT_RELIABLE_MAX_MESSAGE_SIZE
      ? caps.maxMessageSize
      : 0;
  }

  /**
   * Resolves true once `peer`'s CSM has arrived, opening the connection when there is none
   * (a client), or false when the connection ends first (the CSM timeout bounds the wait).
   * Block-wise asks before sending a large body, so that its first block can already be
   * BERT: the blocks of a transfer never grow (RFC 7959 §2.5).
   */
  awaitCsm(peer: Peer): Promise<boolean> {
    const conn = this.conns.get(peer.key) ?? this.connect(peer);
    if (conn === undefined || conn.closed) return Promise.resolve(false);
    if (conn.csmReceived) return Promise.resolve(true);
    return new Promise((resolve) => {
      conn.csmWaiters ??= [];
      conn.csmWaiters.push(resolve);
    });
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.conns.size;
  }

  /** The connection to `peer`, if one is open. */
  connection(peer: Peer): ReliableConnection | undefined {
    return this.conns.get(peer.key);
  }

  send(data: Uint8Array, peer: Peer): void {
    if (this.closing) return;
    let frame: Buffer | undefined;
    const ping = data.length === 4 && data[1] === 0;
    if (ping) {
      // An empty CON is a CoAP ping: 7.02 Ping, its token the Message ID (the Pong comes back as an RST).
      if (((data[0]! >> 4) & 3) !== 0) return; // ACK, RST, empty NON: none on reliable transports
      frame = encodeFrame({ code: SignalCode.Ping, token: data.subarray(2, 4) }, this.websocket);
    } else {
      try {
        frame = datagramToFrame(data, this.websocket);
      } catch (err) {
        this.handlers?.peerError?.(peer, err as Error);
        return;
      }
      if (frame === undefined) return;
    }
    let conn = this.conns.get(peer.key);
    if (conn === undefined) {
      conn = this.connect(peer);
      if (conn === undefined) return;
    }
    if (ping) {
      conn.pings ??= [];
      if (conn.pings.length >= MAX_PINGS) conn.pings.shift();
      conn.pings.push((data[2]! << 8) | data[3]!);
    }
    if (frame.length > conn.caps.maxMessageSize) {
      this.handlers?.peerError?.(
        peer,
        new ProtocolError(
          `message of ${frame.length} bytes exceeds the peer's Max-Message-Size of ${conn.caps.maxMessageSize}`,
        ),
      );
      return;
    }
    this.write(conn, frame);
  }

  /** `frame`, published on `coapkit:frame:sent` (when traced) as it goes to the connection's wire or queue. */
  private traced(conn: Conn, frame: Buffer): Buffer {
    if (channels.frameSent.hasSubscribers)
      channels.frameSent.publish({ peer: conn.peer, scheme: this.scheme, initiator: conn.initiator, frame });
    return frame;
  }

  private write(conn: Conn, frame: Buffer): void {
    this.traced(conn, frame);
    conn.lastActive = this.clock.now();
    if (conn.wire !== undefined) conn.wire.write(frame);
    else conn.queued?.push(frame);
  }

  /** Client side: a new connection to `peer`, CSM queued first. */
  private connect(peer: Peer): Conn | undefined {
    if (!this.connectsOut) {
      this.handlers?.peerError?.(
        peer,
        new NetworkError(`no connection from ${peer.address} port ${peer.port} (closed)`),
      );
      return undefined;
    }
    if (this.conns.size >= this.maxConnections) {
      this.connectionsRefused++;
      this.handlers?.peerError?.(peer, new NetworkError(`too many connections (${this.maxConnections})`));
      return undefined;
    }
    const conn = this.newConn(peer, true);
    conn.queued = [this.traced(conn, this.csm())];
    this.conns.set(peer.key, conn);
    let wire: Wire | undefined;
    try {
      wire = this.open(peer, conn);
    } catch (err) {
      this.conns.delete(peer.key);
      this.handlers?.peerError?.(peer, err as Error);
      return undefined;
    }
    if (wire === undefined) {
      this.conns.delete(peer.key);
      this.handlers?.peerError?.(
        peer,
        new NetworkError(`no connection to ${peer.address} port ${peer.port}`, {
          hint: 'the peer closed the connection; it must connect again',
        }),
      );
      return undefined;
    }
    // The wire is usable once `connected` is called; until then frames queue.
    (conn as { pendingWire?: Wire }).pendingWire = wire;
    return conn;
  }

  /** @internal Client side: the wire opened by `open` for `conn` is connected: the queued frames (CSM first) go out. */
  protected connected(c: ReliableConnection): void {
    const conn = c as Conn & { pendingWire?: Wire };
    if (conn.closed || conn.pendingWire === undefined) return;
    conn.wire = conn.pendingWire;
    conn.pendingWire = undefined;
    const q = conn.queued ?? [];
    conn.queued = undefined;
    for (const f of q) conn.wire.write(f);
  }

  /** @internal
   * Server side: a new accepted wire from `peer`. Returns the connection,
   * or undefined when a limit refused it (the wire is then destroyed).
   */
  protected accepted(wire: Wire, peer: Peer): ReliableConnection | undefined {
    const count = this.perAddress.get(peer.address) ?? 0;
    if (this.closing || this.conns.size >= this.maxConnections || count >= this.maxPerAddress) {
      this.connectionsRefused++;
      wire.destroy();
      return undefined;
    }
    const old = this.conns.get(peer.key);
    if (old !== undefined) this.drop(old, new ClosedError('replaced by a new connection'), true);
    const conn = this.newConn(peer, false);
    conn.wire = wire;
    this.conns.set(peer.key, conn);
    this.perAddress.set(peer.address, count + 1);
    wire.write(this.traced(conn, this.csm()));
    return conn;
  }

  private newConn(peer: Peer, initiator: boolean): Conn {
    const conn: Conn = {
      peer,
      caps: { maxMessageSize: DEFAULT_RELIABLE_MAX_MESSAGE_SIZE, blockWiseTransfer: false },
      csmReceived: false,
      initiator,
      wire: undefined,
      queued: undefined,
      decoder: this.websocket ? undefined : new FrameDecoder(this.receiveLimit),
      lastActive: this.clock.now(),
      timer: undefined,
      closed: false,
      pings: undefined,
      csmWaiters: undefined,
    };
    this.arm(conn, this.csmTimeoutMs);
    return conn;
  }

  /** (Re)arms the connection's one timer: CSM wait, then idle timeout. */
  private arm(conn: Conn, ms: number): void {
    if (ms <= 0) return;
    conn.timer = this.clock.setTimer(() => this.onTimer(conn), ms, true);
  }

  private onTimer(conn: Conn): void {
    conn.timer = undefined;
    if (conn.closed) return;
    if (!conn.csmReceived) return this.abort(conn, 'no CSM received');
    const idleFor = this.clock.now() - conn.lastActive;
    if (idleFor >= this.idleMs) {
      // §5.5: Release, then close.
      if (conn.wire !== undefined)
        conn.wire.write(this.traced(conn, encodeFrame({ code: SignalCode.Release }, this.websocket)));
      conn.wire?.end();
      this.drop(conn, new ClosedError('connection closed after being idle'), false);
      return;
    }
    this.arm(conn, this.idleMs - idleFor);
  }

  /** @internal  Bytes from a stream wire (TCP framing). */
  protected received(c: ReliableConnection, chunk: Buffer): void {
    const conn = c as Conn;
    if (conn.closed) return;
    conn.lastActive = this.clock.now();
    try {
      conn.decoder!.push(chunk, (frame) => {
        if (!conn.closed) this.frame(conn, frame);
      });
    } catch (err) {
      if (err instanceof FrameTooLargeError) {
        this.abort(conn, `message of ${err.size} bytes exceeds Max-Message-Size ${err.limit}`);
      } else this.abort(conn, (err as Error).message);
    }
  }

  /** @internal  One message from a WebSocket wire. */
  protected receivedMessage(c: ReliableConnection, message: Buffer): void {
    const conn = c as Conn;
    if (conn.closed) return;
    conn.lastActive = this.clock.now();
    if (message.length > this.receiveLimit) {
      return this.abort(
        conn,
        `message of ${message.length} bytes exceeds Max-Message-Size ${this.receiveLimit}`,
      );
    }
    try {
      this.frame(conn, message);
    } catch (err) {
      this.abort(conn, (err as Error).message);
    }
  }

  private frame(conn: Conn, frame: Buffer): void {
    if (channels.frameReceived.hasSubscribers)
      channels.frameReceived.publish({
        peer: conn.peer,
        scheme: this.scheme,
        initiator: conn.initiator,
        frame,
      });
    const h = readFrameHeader(frame, 0, this.websocket);
    if (h === undefined) throw new MessageFormatError('incomplete frame');
    if (h.code >> 5 === 7) return this.signal(conn, frame, h.code);
    if (!conn.csmReceived) return this.abort(conn, CSM_FIRST);
    let datagram: Buffer;
    try {
      datagram = frameToDatagram(frame, this.websocket);
    } catch (err) {
      // §3.3 (RFC 8323): a message that cannot be parsed leaves the stream unusable.
      return this.abort(conn, (err as Error).message);
    }
    this.handlers?.message(datagram, conn.peer);
  }

  private signal(conn: Conn, frame: Buffer, code: number): void {
    if (!conn.csmReceived && code !== SignalCode.CSM) return this.abort(conn, CSM_FIRST);
    const msg = decodeFrame(frame, this.websocket);
    switch (code) {
      case SignalCode.CSM: {
        const bad = applyCsm(conn.caps, msg);
        if (bad !== undefined) return this.abort(conn, `unknown critical CSM option ${bad}`, bad);
        if (!conn.csmReceived) {
          conn.csmReceived = true;
          if (conn.timer !== undefined) this.clock.clearTimer(conn.timer);
          conn.timer = undefined;
          this.arm(conn, this.idleMs);
          settleCsmWaiters(conn, true);
        }
        return;
      }
      case SignalCode.Ping:
        // §5.4: a Pong with the Ping's token (Custody is not offered back).
        if (conn.wire !== undefined) {
          conn.wire.write(
            this.traced(conn, encodeFrame({ code: SignalCode.Pong, token: msg.token }, this.websocket)),
          );
        }
        return;
      case SignalCode.Pong: {
        // The answer to a ping sent for an empty CON: an RST with its Message ID for the message
        // layer. Matched by token; a Pong without it (libcoap 4.3.1 sends an empty token)
        // answers the oldest ping.
        const pings = conn.pings;
        if (pings === undefined || pings.length === 0) return;
        let i = 0;
        if (msg.token.length === 2) {
          const j = pings.indexOf((msg.token[0]! << 8) | msg.token[1]!);
          if (j !== -1) i = j;
        }
        const mid = pings.splice(i, 1)[0]!;
        this.handlers?.message(Buffer.from([0x70, 0, mid >> 8, mid & 0xff]), conn.peer);
        return;
      }
      case SignalCode.Release:
        conn.wire?.end();
        return this.drop(conn, new ClosedError('the peer released the connection (7.04)'), false);
      case SignalCode.Abort: {
        const why = msg.payload.length > 0 ? `: ${msg.payload.toString('utf8').slice(0, 200)}` : '';
        conn.wire?.destroy();
        return this.drop(conn, new NetworkError(`the peer aborted the connection (7.05)${why}`), false);
      }
      default:
        // Unknown signaling codes are ignored (§5: only those defined are used).
        return;
    }
  }

  /** @internal  Sends 7.05 Abort and closes the connection. */
  protected abort(conn: ReliableConnection, diagnostic: string, badCsmOption?: number): void {
    const c = conn as Conn;
    if (c.closed) return;
    this.connectionsAborted++;
    if (c.wire !== undefined) {
      c.wire.write(this.traced(c, encodeAbort(diagnostic, this.websocket, badCsmOption)));
      c.wire.end();
    } else (c as { pendingWire?: Wire }).pendingWire?.destroy();
    this.drop(c, new ProtocolError(`connection aborted: ${diagnostic}`), false);
  }

  /** @internal  The wire closed (or failed); pending exchanges with the peer fail. */
  protected closedWire(conn: ReliableConnection, error?: Error): void {
    const c = conn as Conn;
    if (c.closed) return;
    this.drop(
      c,
      error ?? new NetworkError(`connection to ${c.peer.address} port ${c.peer.port} closed`),
      false,
    );
  }

  private drop(conn: Conn, error: Error, destroy: boolean): void {
    if (conn.closed) return;
    conn.closed = true;
    settleCsmWaiters(conn, false);
    if (conn.timer !== undefined) this.clock.clearTimer(conn.timer);
    conn.timer = undefined;
    if (destroy) conn.wire?.destroy();
    if (this.conns.get(conn.peer.key) === conn) this.conns.delete(conn.peer.key);
    if (!conn.initiator) {
      const n = (this.perAddress.get(conn.peer.address) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(conn.peer.address);
      else this.perAddress.set(conn.peer.address, n);
    }
    if (!this.closing) this.handlers?.peerError?.(conn.peer, error);
  }

  /** @internal  Closes every connection (gracefully) and stops; subclasses close their listeners. */
  protected closeConnections(): void {
    this.closing = true;
    for (const conn of [...this.conns.values()]) {
      if (conn.wire !== undefined) conn.wire.end();
      else (conn as { pendingWire?: Wire }).pendingWire?.destroy();
      this.drop(conn, new ClosedError('transport closed'), false);
    }
  }

  /** Closes every connection (gracefully) and the listener. */
  abstract close(): Promise<void>;
}

/** Where a transport listens. */
export interface LocalAddress {
  /** The bound address. */
  address: string;
  /** The bound port. */
  port: number;
  /** IPv4 or IPv6. */
  family: AddressFamily;
}

/** The address family of an address string. */
export function familyOf(address: string): AddressFamily {
  return address.includes(':') ? 'IPv6' : 'IPv4';
}

/** Where a listening server is bound ('::' and port 0 when there is none: a client transport). */
export function listenerAddress(server: { address(): unknown } | undefined): LocalAddress {
  const a = server?.address() as { address: string; port: number } | string | null | undefined;
  if (a !== null && a !== undefined && typeof a === 'object') {
    return { address: a.address, port: a.port, family: familyOf(a.address) };
  }
  return { address: '::', port: 0, family: 'IPv6' };
}

/**
 * Listens on `host` and `port`; without a host on '::', falling back to '0.0.0.0' (a
 * machine without IPv6). A NetworkError says where when it cannot.
 */
export async function listenServer(
  server: net.Server,
  host: string | undefined,
  port: number,
): Promise<void> {
  const tryListen = (h: string) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen({ host: h, port }, () => {
        server.off('error', onError);
        resolve();
      });
    });
  try {
    if (host !== undefined) await tryListen(host);
    else {
      try {
        await tryListen('::');
      } catch {
        await tryListen('0.0.0.0');
      }
    }
  } catch (err) {
    throw new NetworkError(`cannot listen on ${host ?? '::'} port ${port}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
