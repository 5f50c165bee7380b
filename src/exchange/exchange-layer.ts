/**
 * The exchange layer (RFC 7252 §5): tokens, request/response matching on
 * (peer endpoint, token) per §5.3.2, piggybacked and separate responses,
 * NSTART (§4.7) per peer with queuing, PROBING_RATE for NON traffic, and
 * the server side of an exchange (piggyback when the handler is quick,
 * empty ACK then a separate CON response when it is slow).
 */

import { Buffer } from 'node:buffer';
import { type CoapMessage, type CoapOption, encodeEmpty, encodeMessage } from '../codec/message.js';
import { firstBadCritical, getOption } from '../codec/options.js';
import { MessageType } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { channels } from '../diagnostics.js';
import { AbortError, ClosedError, MessageFormatError, ResetError, TimeoutError } from '../errors.js';
import type { MessageLayer, OutgoingCon, PeerState } from '../message-layer/message-layer.js';
import { describePeer } from '../message-layer/message-layer.js';
import type { Peer } from '../transport/transport.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import { randomToken } from './tokens.js';

/** Options a client passes up to the application: every registered option (§5.4.1). */
const RESPONSE_RECOGNIZED: ReadonlySet<number> = new Set(Object.values(OptionNumber));

/** What a request handler answers: a response, or null for no response. */
export interface OutgoingResponse {
  code: number;
  options?: CoapOption[];
  payload?: Uint8Array;
}

export type ServerHandler = (
  msg: CoapMessage,
  peer: Peer,
) => OutgoingResponse | null | Promise<OutgoingResponse | null>;

export interface InboundResponse {
  message: CoapMessage;
  peer: Peer;
  /** True when the response came piggybacked in the ACK of the request. */
  piggybacked: boolean;
  rttMs: number;
}

export interface OutgoingRequest {
  code: number;
  options?: CoapOption[];
  payload?: Uint8Array;
  /** Use this token instead of a fresh random one (e.g. for observe re-registration). */
  token?: Uint8Array;
  confirmable?: boolean;
}

export interface RequestCallbacks {
  /** Return true when the exchange is complete; false to keep listening (observe). */
  onResponse(res: InboundResponse): boolean;
  onError(error: Error): void;
  /** Overall time limit in ms; undefined = the §4.8.2 defaults. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Multicast: accept responses from any peer for this token (§8.2). */
  multicast?: boolean;
}

export interface ClientExchange {
  readonly token: Buffer;
  /** Cancels the exchange locally (no message sent). */
  cancel(): void;
  /** Message ID of the (last) request message sent. */
  readonly messageId: number;
}

interface Pending {
  key: string;
  token: Buffer;
  ps: PeerState;
  callbacks: RequestCallbacks;
  con: OutgoingCon | undefined;
  startedAt: number;
  holdsSlot: boolean;
  timer: TimerHandle | undefined;
  slotTimer: TimerHandle | undefined;
  done: boolean;
  messageId: number;
  abortListener: (() => void) | undefined;
  /** Stops watching for an RST to a NON request. */
  unwatch: (() => void) | undefined;
  /** (Re)sends the request; with a value, repeated with that Echo option (RFC 9175 §2.3). */
  start: ((echo?: Buffer) => void) | undefined;
  /** The request was already repeated once for a 4.01 + Echo challenge. */
  echoed: boolean;
}

export interface ExchangeLayerOptions {
  tokenLength: number;
  /** Delay before an empty ACK is sent for a slow handler (default 1000 ms). */
  separateResponseDelayMs: number;
  /**
   * Repeat a request once, transparently, when the server answers 4.01
   * Unauthorized with an Echo option (RFC 9175 §2.3: it verifies the client's
   * address). Default true.
   */
  answerEcho?: boolean;
}

export class ExchangeLayer {
  private readonly pending = new Map<string, Pending>();
  /**
   * Told when the transport reports a peer gone (an RFC 8323 connection closed, a DTLS
   * session ended, ICMP unreachable): the observe layer drops that peer's observations.
   */
  readonly peerGoneListeners = new Set<(peer: Peer, error: Error) => void>();
  handler: ServerHandler | undefined;
  private closed = false;
  /** The message layer's clock (one source of time per endpoint). */
  private readonly time: Clock;

  constructor(
    readonly ml: MessageLayer,
    private readonly options: ExchangeLayerOptions,
  ) {
    this.time = ml.time;
    ml.upper = {
      request: (msg, ps, key) => this.onRequest(msg, ps, key),
      response: (msg, ps, ackOf) => this.onResponse(msg, ps, ackOf),
      peerError: (ps, error) => this.onPeerError(ps, error),
      // onPeerError only fails pending client exchanges and pings.
      wantsPeerErrors: () => this.pending.size > 0 || this.pings.size > 0,
    };
  }

  // ---- client side -------------------------------------------------------

  request(peer: Peer, req: OutgoingRequest, callbacks: RequestCallbacks): ClientExchange {
    if (this.closed) throw new ClosedError('endpoint is closed');
    const ps = this.ml.peerState(peer);
    const prefix = callbacks.multicast ? '*|' : `${peer.key}|`;
    let token = req.token ? Buffer.from(req.token) : randomToken(this.options.tokenLength);
    let key = prefix + token.toString('latin1');
    if (req.token === undefined && this.pending.has(key)) {
      if (token.length > 0) {
        // §5.3.1: a fresh token must not collide with one still in use toward this peer.
        do {
          token = randomToken(this.options.tokenLength);
          key = prefix + token.toString('latin1');
        } while (this.pending.has(key));
      } else {
        // §5.3.1: the empty token can name only one exchange per peer: wait for the current one.
        return this.deferEmptyToken(key, peer, req, callbacks);
      }
    }
    const existing = this.pending.get(key);
    if (existing) this.finish(existing);
    const p: Pending = {
      key,
      token,
      ps,
      callbacks,
      con: undefined,
      startedAt: 0,
      holdsSlot: false,
      timer: undefined,
      slotTimer: undefined,
      done: false,
      messageId: -1,
      abortListener: undefined,
      unwatch: undefined,
      start: undefined,
      echoed: false,
    };
    this.pending.set(key, p);
    const confirmable = req.confirmable ?? true;
    const params = this.ml.params;
    const timeoutMs =
      callbacks.timeoutMs ??
      (confirmable ? this.ml.derived.maxTransmitWait : this.ml.derived.maxTransmitWait);
    p.timer = this.time.setTimer(() => {
      this.fail(
        p,
        new TimeoutError(`no response from ${describePeer(peer)} within ${Math.round(timeoutMs)} ms`, {
          hint: 'is a CoAP server running at that address and port?',
        }),
      );
    }, timeoutMs);
    if (callbacks.signal) {
      const signal = callbacks.signal;
      if (signal.aborted) {
        queueMicrotask(() => this.fail(p, new AbortError('request aborted', { cause: signal.reason })));
      } else {
        p.abortListener = () => this.fail(p, new AbortError('request aborted', { cause: signal.reason }));
        signal.addEventListener('abort', p.abortListener, { once: true });
      }
    }
    let options = req.options;
    const start = (echo?: Buffer) => {
      if (p.done) return;
      if (echo !== undefined) {
        // RFC 9175 §2.3: the same request again, with the server's Echo value.
        options = (options ?? []).filter((o) => o.number !== OptionNumber.Echo);
        options.push({ number: OptionNumber.Echo, value: Buffer.from(echo) });
      }
      // Encoded once; the Message ID is written in when the request goes out.
      const bytes = encodeMessage({
        type: confirmable ? MessageType.CON : MessageType.NON,
        code: req.code,
        messageId: 0,
        token,
        ...(options ? { options } : {}),
        ...(req.payload ? { payload: req.payload } : {}),
      });
      // (A multicast group never answers as itself: its members do, so it is exempt.)
      if (!confirmable && !callbacks.multicast) {
        // §4.7 PROBING_RATE: hold NON requests toward a peer that does not answer.
        const wait = this.ml.probingDelay(ps, bytes.length);
        if (wait > 0) {
          this.time.clearTimer(p.slotTimer);
          p.slotTimer = this.time.setTimer(start, wait);
          return;
        }
      }
      p.holdsSlot = true;
      this.ml.beginInteraction(ps);
      const messageId = this.ml.nextMessageId();
      p.messageId = messageId;
      bytes.writeUInt16BE(messageId, 2);
      p.startedAt = this.time.now();
      if (confirmable) {
        p.con = this.ml.sendCon(ps, messageId, bytes, {
          onAck: () => this.releaseSlot(p),
          onReset: () => this.fail(p, new ResetError(`${describePeer(peer)} rejected the request with RST`)),
          onTimeout: (err) => this.fail(p, err),
        });
      } else {
        // §4.3: the peer may reject a NON request with an RST.
        p.unwatch = this.ml.watchNon(ps, messageId, () =>
          this.fail(p, new ResetError(`${describePeer(peer)} rejected the request with RST`)),
        );
        this.ml.sendNon(ps, bytes);
        // A NON request stops counting against NSTART after ACK_TIMEOUT (no ACK will come).
        p.slotTimer = this.time.setTimer(() => this.releaseSlot(p), params.ackTimeout);
      }
    };
    if (!callbacks.multicast && this.options.answerEcho !== false) p.start = start;
    this.ml.whenSlotFree(ps, start);
    return {
      token,
      cancel: () => this.finish(p),
      get messageId() {
        return p.messageId;
      },
    };
  }

  private readonly emptyTokenWaiters = new Map<string, Array<() => void>>();

  private deferEmptyToken(
    key: string,
    peer: Peer,
    req: OutgoingRequest,
    callbacks: RequestCallbacks,
  ): ClientExchange {
    let inner: ClientExchange | undefined;
    let cancelled = false;
    let list = this.emptyTokenWaiters.get(key);
    if (list === undefined) {
      list = [];
      this.emptyTokenWaiters.set(key, list);
    }
    list.push(() => {
      if (cancelled) return;
      if (this.closed) callbacks.onError(new ClosedError('endpoint closed'));
      else inner = this.request(peer, req, callbacks);
    });
    return {
      token: Buffer.alloc(0),
      cancel: () => {
        cancelled = true;
        inner?.cancel();
      },
      get messageId() {
        return inner?.messageId ?? -1;
      },
    };
  }

  /** Starts the next request waiting for the empty token toward a peer, if any. */
  private nextEmptyToken(key: string): void {
    const list = this.emptyTokenWaiters.get(key);
    if (list === undefined) return;
    while (list.length > 0 && !this.pending.has(key)) list.shift()!();
    if (list.length === 0 && this.emptyTokenWaiters.get(key) === list) this.emptyTokenWaiters.delete(key);
  }

  private releaseSlot(p: Pending): void {
    if (!p.holdsSlot) return;
    p.holdsSlot = false;
    this.time.clearTimer(p.slotTimer);
    p.slotTimer = undefined;
    this.ml.endInteraction(p.ps);
  }

  private finish(p: Pending): void {
    if (p.done) return;
    p.done = true;
    this.time.clearTimer(p.timer);
    if (p.con) this.ml.cancelCon(p.con);
    p.unwatch?.();
    if (p.abortListener) p.callbacks.signal?.removeEventListener('abort', p.abortListener);
    if (this.pending.get(p.key) === p) this.pending.delete(p.key);
    if (p.holdsSlot) this.releaseSlot(p);
    else {
      // Still queued: drop it from the queue lazily (start() checks p.done).
      this.time.clearTimer(p.slotTimer);
      p.slotTimer = undefined;
    }
    if (p.token.length === 0) this.nextEmptyToken(p.key);
  }

  private fail(p: Pending, error: Error): void {
    if (p.done) return;
    this.finish(p);
    p.callbacks.onError(error);
  }

  private onResponse(msg: CoapMessage, ps: PeerState, ackOf: OutgoingCon | undefined): boolean {
    const t = msg.token.toString('latin1');
    let p = this.pending.get(`${ps.peer.key}|${t}`);
    if (p === undefined) {
      p = this.pending.get(`*|${t}`);
      if (p === undefined) return false;
    }
    // A piggybacked response must come in the ACK of this exchange's own CON (§5.3.2).
    if (ackOf !== undefined && p.con !== undefined && p.con !== ackOf) return false;
    const badCritical = firstBadCritical(msg.options, RESPONSE_RECOGNIZED);
    if (badCritical !== undefined) {
      // §5.4.1: a response with an unrecognized critical option is rejected (the
      // message layer answers a CON/NON with RST, drops an ACK); the exchange fails.
      this.fail(
        p,
        new MessageFormatError(
          `${describePeer(ps.peer)} sent a response with unrecognized critical option ${badCritical}`,
        ),
      );
      return false;
    }
    const piggybacked = ackOf !== undefined;
    const rttMs = this.time.now() - p.startedAt;
    if (channels.matched.hasSubscribers) {
      channels.matched.publish({
        peer: ps.peer,
        token: msg.token,
        messageId: msg.messageId,
        requestMessageId: p.messageId,
        code: msg.code,
        piggybacked,
        separate: !piggybacked,
        rttMs,
      });
    }
    this.releaseSlot(p);
    if (p.con && !piggybacked && !p.con.done) {
      // A separate response implies the request arrived (§5.2.2).
      this.ml.cancelCon(p.con);
    }
    if (msg.code === 0x81 && p.start !== undefined && !p.echoed && this.echoChallenge(p, msg)) return true;
    let complete: boolean;
    try {
      complete = p.callbacks.onResponse({ message: msg, peer: ps.peer, piggybacked, rttMs });
    } catch (err) {
      // A throwing callback fails its own exchange; it must not escape into the
      // socket's receive path (that would crash the process).
      this.finish(p);
      try {
        p.callbacks.onError(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // Nothing sensible left to do.
      }
      return true;
    }
    if (complete) this.finish(p);
    else if (p.timer) {
      // Long-lived exchange (observe): the overall timeout no longer applies.
      this.time.clearTimer(p.timer);
      p.timer = undefined;
    }
    return true;
  }

  /**
   * A 4.01 Unauthorized with an Echo option (RFC 9175 §2.3): repeats the
   * request once with that value, within the same overall timeout, keeping
   * the token (an observe registration stays one registration).
   */
  private echoChallenge(p: Pending, msg: CoapMessage): boolean {
    const echo = getOption(msg.options, OptionNumber.Echo);
    if (echo === undefined || echo.length === 0 || echo.length > 40) return false;
    p.echoed = true;
    p.con = undefined;
    p.unwatch?.();
    p.unwatch = undefined;
    const start = p.start!;
    const value = Buffer.from(echo);
    this.ml.whenSlotFree(p.ps, () => start(value));
    return true;
  }

  private onPeerError(ps: PeerState, error: Error): void {
    for (const l of this.peerGoneListeners) l(ps.peer, error);
    for (const p of [...this.pending.values()]) if (p.ps === ps) this.fail(p, error);
    // A ping to a closed port fails at once too (ICMP port unreachable on a connected socket).
    for (const [onClose, ping] of [...this.pings]) if (ping.ps === ps) ping.fail(error, onClose);
  }

  /** Sends a CoAP ping (empty CON) and resolves with the RTT when the RST arrives. */
  ping(peer: Peer): Promise<number> {
    if (this.closed) return Promise.reject(new ClosedError('endpoint is closed'));
    const ps = this.ml.peerState(peer);
    const time = this.time;
    const start = time.now();
    return new Promise((resolve, reject) => {
      const mid = this.ml.nextMessageId();
      const bytes = encodeEmpty(MessageType.CON, mid);
      const onClose = () => {
        this.ml.cancelCon(con);
        reject(new ClosedError('endpoint closed'));
      };
      const done = () => this.pings.delete(onClose);
      this.pings.set(onClose, {
        ps,
        fail: (err, key) => {
          this.pings.delete(key);
          this.ml.cancelCon(con);
          reject(err);
        },
      });
      const con = this.ml.sendCon(ps, mid, bytes, {
        onAck: () => {
          done();
          resolve(time.now() - start);
        },
        onReset: () => {
          done();
          resolve(time.now() - start);
        },
        onTimeout: (err) => {
          done();
          reject(err);
        },
      });
    });
  }

  /** Pending pings (failed with ClosedError on close, or with the peer's network error). */
  private readonly pings = new Map<
    () => void,
    { ps: PeerState; fail: (err: Error, key: () => void) => void }
  >();

  // ---- server side -------------------------------------------------------

  private onRequest(msg: CoapMessage, ps: PeerState, key: number): void {
    const handler = this.handler;
    const confirmable = msg.type === MessageType.CON;
    if (handler === undefined) {
      // No server on this endpoint: §4.2 reject CON requests; ignore NON.
      if (confirmable) this.ml.reply(key, ps, encodeEmpty(MessageType.RST, msg.messageId), true);
      else this.ml.reply(key, ps, null, false);
      return;
    }
    let result: OutgoingResponse | null | Promise<OutgoingResponse | null>;
    try {
      result = handler(msg, ps.peer);
    } catch (err) {
      result = internalError(err);
    }
    if (!(result instanceof Promise)) {
      this.respond(msg, ps, key, result, false);
      return;
    }
    this.ml.markInflight(key);
    let acked = false;
    let timer: TimerHandle | undefined;
    if (confirmable) {
      timer = this.time.setTimer(() => {
        timer = undefined;
        acked = true;
        this.ml.sendEmptyAck(key, ps, msg.messageId);
      }, this.options.separateResponseDelayMs);
    }
    result.then(
      (r) => {
        this.time.clearTimer(timer);
        this.respond(msg, ps, key, r, acked);
      },
      (err) => {
        this.time.clearTimer(timer);
        this.respond(msg, ps, key, internalError(err), acked);
      },
    );
  }

  private respond(
    req: CoapMessage,
    ps: PeerState,
    key: number,
    res: OutgoingResponse | null,
    alreadyAcked: boolean,
  ): void {
    if (this.closed) return;
    const confirmable = req.type === MessageType.CON;
    if (res === null) {
      // No response wanted: acknowledge a CON (empty ACK), stay silent for NON.
      if (confirmable && !alreadyAcked) {
        this.ml.reply(key, ps, encodeEmpty(MessageType.ACK, req.messageId), true);
      } else if (!confirmable) this.ml.reply(key, ps, null, false);
      return;
    }
    if (confirmable && !alreadyAcked) {
      const bytes = encodeResponse(MessageType.ACK, req.messageId, req.token, res);
      this.ml.reply(key, ps, bytes, true);
      return;
    }
    const messageId = this.ml.nextMessageId();
    const bytes = encodeResponse(confirmable ? MessageType.CON : MessageType.NON, messageId, req.token, res);
    if (confirmable) {
      // Separate response (§5.2.2), retransmitted until acknowledged.
      this.ml.sendCon(ps, messageId, bytes, { onAck() {}, onReset() {}, onTimeout() {} });
    } else {
      this.ml.reply(key, ps, null, false);
      this.ml.send(ps, bytes);
    }
  }

  /**
   * Sends a response-like message outside a request exchange (observe
   * notifications). CON messages are retransmitted; callbacks report the outcome.
   */
  sendUnsolicited(
    peer: Peer,
    msg: {
      confirmable: boolean;
      code: number;
      token: Uint8Array;
      options?: CoapOption[];
      payload?: Uint8Array;
    },
    callbacks?: { onAck?(ack: CoapMessage): void; onReset?(): void; onTimeout?(err: TimeoutError): void },
  ): number {
    const ps = this.ml.peerState(peer);
    const messageId = this.ml.nextMessageId();
    const bytes = encodeMessage({
      type: msg.confirmable ? MessageType.CON : MessageType.NON,
      code: msg.code,
      messageId,
      token: msg.token,
      ...(msg.options ? { options: msg.options } : {}),
      ...(msg.payload ? { payload: msg.payload } : {}),
    });
    if (msg.confirmable) {
      this.ml.sendCon(ps, messageId, bytes, {
        onAck: (ack) => callbacks?.onAck?.(ack),
        onReset: () => callbacks?.onReset?.(),
        onTimeout: (e) => callbacks?.onTimeout?.(e),
      });
    } else this.ml.send(ps, bytes);
    return messageId;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.pending.values()]) this.fail(p, new ClosedError('endpoint closed'));
    for (const onClose of [...this.pings.keys()]) onClose();
    this.pings.clear();
  }
}

/**
 * Encodes a response; one that cannot be encoded (bad code, option number or
 * length from a handler) becomes a 5.00 instead of an exception thrown from
 * the socket's receive path, which would take the whole process down.
 */
function encodeResponse(type: MessageType, messageId: number, token: Buffer, res: OutgoingResponse): Buffer {
  try {
    // One object shape for every response (no spreads: they take V8's slow copy path).
    return encodeMessage({
      type,
      code: res.code,
      messageId,
      token,
      options: res.options,
      payload: res.payload,
    });
  } catch {
    return encodeMessage({ type, code: 0xa0, messageId, token });
  }
}

function internalError(err: unknown): OutgoingResponse {
  // Handlers that throw never crash the server (5.00); the server layer maps
  // ResponseCodeError before it gets here.
  void err;
  return { code: 0xa0 };
}
