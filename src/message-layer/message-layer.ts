/**
 * The message layer (RFC 7252 §4): Message IDs, CON retransmission with
 * binary exponential backoff, ACK/RST handling, deduplication, CoAP ping,
 * and rejection of what cannot be processed. It deals only in message
 * types and Message IDs; tokens are the exchange layer's business.
 */

import { Buffer } from 'node:buffer';
import { randomInt } from 'node:crypto';
import { type CoapMessage, decodeMessage, encodeEmpty } from '../codec/message.js';
import { MessageType } from '../constants/codes.js';
import type { DerivedParameters, TransmissionParameters } from '../constants/transmission.js';
import { channels } from '../diagnostics.js';
import { MessageFormatError, TimeoutError } from '../errors.js';
import { formatAddress } from '../transport/address.js';
import type { Peer, Transport } from '../transport/transport.js';
import { type Clock, realClock, type TimerHandle } from '../util/clock.js';
import { type DedupOptions, DedupStore } from './dedup.js';

/** Per-peer state, interned by peer key. */
export interface PeerState {
  /**
   * A 37-bit number derived from the peer key with a keyed hash (random seed
   * per message layer): the same peer gets the same id when its state is
   * dropped and re-created, so the deduplication memory (keyed by id and
   * Message ID) outlives the state.
   */
  readonly id: number;
  peer: Peer;
  /** Last time anything was received from this peer (ms, the layer's clock). */
  lastHeard: number;
  /** Last time anything was sent to or received from this peer. */
  lastActive: number;
  /**
   * Outstanding interactions (NSTART accounting, §4.7). Owned by the message
   * layer: written only by beginInteraction/endInteraction.
   */
  outstanding: number;
  /** Interactions waiting for an NSTART slot (see `whenSlotFree`). */
  queue: Array<() => void>;
  /**
   * Bytes sent as NON since the peer was last heard from (PROBING_RATE,
   * §4.7). Owned by the message layer: written by `sendNon` and on receipt.
   */
  unansweredBytes: number;
  /** When the first of those unanswered bytes was sent. */
  unansweredSince: number;
  /** Outgoing CONs to this peer still awaiting ACK/RST. */
  pendingCons: number;
}

export interface OutgoingConCallbacks {
  /** ACK received; `ack` is the decoded ACK (code 0 for an empty ACK). */
  onAck(ack: CoapMessage): void;
  onReset(): void;
  onTimeout(error: TimeoutError): void;
}

export interface OutgoingCon {
  /** ps.id * 65536 + messageId (changes with `replaceCon`). */
  key: number;
  /** The Message ID the next transmission carries (changes with `replaceCon`). */
  messageId: number;
  readonly ps: PeerState;
  /** What each (re)transmission sends (changes with `replaceCon`). */
  bytes: Uint8Array;
  /** `bytes` went out at least once (replaceCon keeps a sent Message ID matchable). */
  sent: boolean;
  /**
   * Keys of earlier Message IDs this CON was sent under before `replaceCon`
   * (at most one per transmission): an ACK or RST to one of them still ends it.
   */
  aliases: number[] | undefined;
  transmissions: number;
  timeoutMs: number;
  timer: TimerHandle | undefined;
  callbacks: OutgoingConCallbacks;
  done: boolean;
}

export interface MessageLayerUpper {
  /** A new (not duplicate) request; reply with `reply()`/`sendEmptyAck()` using `key`. */
  request(msg: CoapMessage, ps: PeerState, key: number): void;
  /**
   * A response: separate (CON/NON) or piggybacked on the ACK of `ackOf`.
   * Returns true when it matched an exchange.
   */
  response(msg: CoapMessage, ps: PeerState, ackOf: OutgoingCon | undefined): boolean;
  /** A transport-level failure concerning one peer. */
  peerError?(ps: PeerState, error: Error): void;
  /**
   * False when a peerError would have no effect now (e.g. no client exchange
   * is pending), so sends need not ask the transport for error reports.
   */
  wantsPeerErrors?(): boolean;
}

/** Bounds of the per-peer state table (one PeerState per source address and port). */
export interface PeerTableOptions {
  /**
   * Most peers with state at once (default 32768, ~10 MB). A datagram from a
   * new peer when the table is full evicts an idle peer (nothing in flight:
   * no pending CON, NSTART slot or queued request), the least recently
   * active of the oldest few; when none of those is idle the new peer is
   * served with state that is not kept. An evicted peer gets fresh state
   * (with the same id, so deduplication still works) on its next datagram.
   */
  max?: number;
  /**
   * A peer with nothing in flight and no traffic for this long is dropped
   * (default MAX_TRANSMIT_SPAN, 45 s with the RFC parameters). Its
   * deduplication entries stay valid for EXCHANGE_LIFETIME in the bounded
   * dedup store: PeerState ids are derived from the peer key, so a re-created
   * state finds them again.
   */
  idleMs?: number;
}

export interface MessageLayerOptions {
  params: TransmissionParameters;
  derived: DerivedParameters;
  dedup?: DedupOptions;
  peers?: PeerTableOptions;
  /** The source of time and timers (default the real clock). */
  clock?: Clock;
}

/** Default bound of the peer table. */
export const DEFAULT_MAX_PEERS = 32768;
/** How many of the oldest peers a full table looks at to find one to evict. */
const EVICT_SCAN = 8;

const KEY_SPACE = 65536;

export class MessageLayer {
  private readonly peers = new Map<string, PeerState>();
  private readonly outgoing = new Map<number, OutgoingCon>();
  /** Outgoing NON messages whose sender wants to hear of an RST (§4.3): key -> callback. */
  private readonly nonWatch = new Map<number, () => void>();
  /** Requests whose handler is still running: key -> empty ACK already sent? */
  private readonly inflight = new Map<number, boolean>();
  readonly dedup: DedupStore;
  /** Seeds of the keyed hash that derives PeerState ids (random, so that ids cannot be aimed at). */
  private readonly idSeedA = randomInt(0x7fffffff);
  private readonly idSeedB = randomInt(0x7fffffff);
  private readonly maxPeers: number;
  private readonly peerIdleMs: number;
  /** Peers dropped to make room for new ones (table full). */
  peersEvicted = 0;
  private mid: number;
  private sweepTimer: TimerHandle | undefined;
  private readonly sweepEvery: number;
  private closed = false;
  /**
   * The transport is reliable (RFC 8323: TCP, TLS, WebSockets): no
   * retransmission, no deduplication, no ACK or RST; incoming messages
   * arrive as NON datagrams with Message ID 0 (see codec/reliable.ts).
   */
  private readonly reliable: boolean;
  /** The source of time and timers of this layer and of the exchange layer above it. */
  readonly time: Clock;
  upper: MessageLayerUpper | undefined;

  constructor(
    readonly transport: Transport,
    private readonly options: MessageLayerOptions,
  ) {
    this.time = options.clock ?? realClock;
    this.reliable = transport.reliable;
    this.dedup = new DedupStore(options.dedup);
    this.maxPeers = Math.max(1, options.peers?.max ?? DEFAULT_MAX_PEERS);
    this.peerIdleMs = options.peers?.idleMs ?? options.derived.maxTransmitSpan;
    // §4.4: the initial Message ID is randomized.
    this.mid = randomInt(KEY_SPACE);
    transport.attach({
      message: (data, peer) => this.incoming(data, peer),
      peerError: (peer, error) => {
        const ps = this.peers.get(peer.key);
        if (ps === undefined) return;
        if (this.reliable) this.failCons(ps, error);
        this.upper?.peerError?.(ps, error);
      },
    });
    this.sweepEvery = Math.max(50, Math.min(10_000, this.peerIdleMs / 2));
    this.sweepTimer = this.time.setTimer(this.sweepTick, this.sweepEvery, true);
  }

  private readonly sweepTick = (): void => {
    if (this.closed) return;
    this.sweep();
    this.sweepTimer = this.time.setTimer(this.sweepTick, this.sweepEvery, true);
  };

  get params(): TransmissionParameters {
    return this.options.params;
  }

  get derived(): DerivedParameters {
    return this.options.derived;
  }

  nextMessageId(): number {
    this.mid = (this.mid + 1) & 0xffff;
    return this.mid;
  }

  peerState(peer: Peer): PeerState {
    const ps = this.peers.get(peer.key);
    if (ps === undefined) return this.adopt(this.newState(peer));
    if (ps.peer !== peer) ps.peer = peer;
    return ps;
  }

  private newState(peer: Peer, id = peerId(peer.key, this.idSeedA, this.idSeedB)): PeerState {
    return {
      id,
      peer,
      lastHeard: 0,
      lastActive: this.time.now(),
      outstanding: 0,
      queue: [],
      unansweredBytes: 0,
      unansweredSince: 0,
      pendingCons: 0,
    };
  }

  /**
   * Puts a new state into the table (the one already there for its key wins).
   * A full table keeps it only when an idle peer can make room; otherwise the
   * state serves this datagram and is not kept.
   */
  private adopt(ps: PeerState): PeerState {
    const key = ps.peer.key;
    const existing = this.peers.get(key);
    if (existing !== undefined) return existing;
    if (this.peers.size < this.maxPeers || this.evictIdle()) {
      this.peers.set(key, ps);
      this.order.push(ps);
    }
    return ps;
  }

  /**
   * The table's states in insertion order, for eviction (a Map iterated from
   * its front is slow when many entries were deleted there). Entries no
   * longer in the table are skipped lazily; the sweep rebuilds the array.
   */
  private order: PeerState[] = [];
  private orderHead = 0;

  /**
   * Drops the oldest idle peer (insertion order); busy ones met on the way
   * (at most EVICT_SCAN) move to the back. False when none was found idle.
   */
  private evictIdle(): boolean {
    const order = this.order;
    let busy = 0;
    while (this.orderHead < order.length && busy < EVICT_SCAN) {
      const ps = order[this.orderHead]!;
      order[this.orderHead++] = undefined as unknown as PeerState;
      if (this.peers.get(ps.peer.key) !== ps) continue; // already gone
      if (!isIdle(ps)) {
        order.push(ps);
        busy++;
        continue;
      }
      this.peers.delete(ps.peer.key);
      this.peersEvicted++;
      this.compactOrder();
      return true;
    }
    this.compactOrder();
    return false;
  }

  private compactOrder(): void {
    if (this.orderHead > 1024 && this.orderHead * 2 > this.order.length) {
      this.order = this.order.slice(this.orderHead);
      this.orderHead = 0;
    }
  }

  get peerCount(): number {
    return this.peers.size;
  }

  /** Sends a datagram as-is. */
  send(ps: PeerState, bytes: Uint8Array, transmission = 0): void {
    if (this.closed) return;
    if (channels.messageSent.hasSubscribers) {
      channels.messageSent.publish({ peer: ps.peer, data: bytes, transmission });
    }
    const up = this.upper;
    this.transport.send(bytes, ps.peer, up?.peerError !== undefined && (up.wantsPeerErrors?.() ?? true));
  }

  // ---- interaction accounting (NSTART and PROBING_RATE, §4.7) -------------
  // The exchange layer says when an interaction begins and ends; the rules
  // (how many may be outstanding, how fast NON bytes may go to a silent peer)
  // live here, next to the state they are about, as aiocoap's message manager
  // owns its backlog.

  /**
   * Runs `start` now when fewer than NSTART interactions with the peer are
   * outstanding, otherwise when one ends. `start` should call
   * `beginInteraction` if it does begin one (it may decline: cancelled, or
   * held back by PROBING_RATE), so that the next waiting one is tried.
   */
  whenSlotFree(ps: PeerState, start: () => void): void {
    if (ps.outstanding < this.options.params.nstart) start();
    else ps.queue.push(start);
  }

  /** An interaction with the peer begins: it holds one of the NSTART slots until `endInteraction`. */
  beginInteraction(ps: PeerState): void {
    ps.outstanding++;
  }

  /** An interaction ends (response, ACK, give-up): frees its slot and starts waiting ones. */
  endInteraction(ps: PeerState): void {
    ps.outstanding--;
    const nstart = this.options.params.nstart;
    while (ps.outstanding < nstart && ps.queue.length > 0) ps.queue.shift()!();
  }

  /**
   * How long to wait before sending `size` more NON bytes toward a peer that
   * has not answered, so as not to exceed PROBING_RATE on average (§4.7).
   * The first 1152 bytes (one maximal message) go out at once.
   */
  probingDelay(ps: PeerState, size: number): number {
    if (ps.unansweredBytes === 0 || this.reliable) return 0;
    const total = ps.unansweredBytes + size;
    if (total <= 1152) return 0;
    const elapsedMs = this.time.now() - ps.unansweredSince;
    return Math.max(0, (total / this.options.params.probingRate) * 1000 - elapsedMs);
  }

  /** True when sending `size` more NON bytes to `peer` now would exceed PROBING_RATE. */
  probingLimited(peer: Peer, size: number): boolean {
    return this.probingDelay(this.peerState(peer), size) > 0;
  }

  /**
   * Sends a NON message counted against PROBING_RATE until the peer is heard
   * from (§4.7; the caller checked `probingDelay`).
   */
  sendNon(ps: PeerState, bytes: Uint8Array): void {
    if (ps.unansweredBytes === 0) ps.unansweredSince = this.time.now();
    ps.unansweredBytes += bytes.length;
    this.send(ps, bytes);
  }

  /** Sends a CON and retransmits it until ACK/RST or MAX_RETRANSMIT (§4.2). */
  sendCon(ps: PeerState, messageId: number, bytes: Uint8Array, callbacks: OutgoingConCallbacks): OutgoingCon {
    if (this.reliable) return this.sendReliable(ps, messageId, bytes, callbacks);
    const p = this.options.params;
    const initial = p.ackTimeout * (1 + Math.random() * (p.ackRandomFactor - 1));
    const con = this.startCon(ps, messageId, bytes, callbacks, initial);
    con.timer = this.time.setTimer(() => this.retransmit(con), initial);
    return con;
  }

  /** Registers an outgoing CON (replacing one with the same Message ID) and sends it once. */
  private startCon(
    ps: PeerState,
    messageId: number,
    bytes: Uint8Array,
    callbacks: OutgoingConCallbacks,
    timeoutMs: number,
  ): OutgoingCon {
    const con: OutgoingCon = {
      key: ps.id * KEY_SPACE + messageId,
      messageId,
      ps,
      bytes,
      sent: true,
      aliases: undefined,
      transmissions: 1,
      timeoutMs,
      timer: undefined,
      callbacks,
      done: false,
    };
    const previous = this.outgoing.get(con.key);
    if (previous) this.finishCon(previous);
    this.outgoing.set(con.key, con);
    ps.pendingCons++;
    ps.lastActive = this.time.now();
    this.send(ps, bytes);
    return con;
  }

  /**
   * A CON over a reliable transport (RFC 8323 §2): sent once, and taken as
   * acknowledged (an empty ACK) right after, since the connection delivers
   * it or fails (then `peerError` reports it). A CoAP ping (empty CON) is
   * the exception: the transport sends it as a 7.02 Ping and hands the
   * Pong back as an RST for this Message ID, so the ping still measures a
   * round trip; without a Pong it times out after MAX_TRANSMIT_WAIT.
   */
  private sendReliable(
    ps: PeerState,
    messageId: number,
    bytes: Uint8Array,
    callbacks: OutgoingConCallbacks,
  ): OutgoingCon {
    const con = this.startCon(ps, messageId, bytes, callbacks, this.options.derived.maxTransmitWait);
    if (bytes.length === 4 && bytes[1] === 0) {
      con.timer = this.time.setTimer(() => {
        if (con.done || this.closed) return;
        this.finishCon(con);
        callbacks.onTimeout(new TimeoutError(`no Pong from ${describePeer(ps.peer)}`));
      }, con.timeoutMs);
    } else {
      queueMicrotask(() => {
        if (con.done || this.closed) return;
        this.finishCon(con);
        callbacks.onAck({
          type: MessageType.ACK,
          code: 0,
          messageId,
          token: EMPTY,
          options: [],
          payload: EMPTY,
        });
      });
    }
    return con;
  }

  /**
   * Calls `onReset` if the peer answers the NON message `messageId` with an
   * RST (§4.3). Returns a function that stops watching.
   */
  watchNon(ps: PeerState, messageId: number, onReset: () => void): () => void {
    const key = ps.id * KEY_SPACE + messageId;
    this.nonWatch.set(key, onReset);
    return () => {
      if (this.nonWatch.get(key) === onReset) this.nonWatch.delete(key);
    };
  }

  /**
   * Replaces what the outstanding CON `messageId` to `peer` carries, keeping its
   * retransmission counter and timeout: its next retransmissions send `bytes`,
   * which carry the fresh Message ID `newMessageId` (a peer that saw the old
   * message would take the new one for a duplicate under the old ID, §4.5).
   * An ACK or RST to a Message ID already sent for it still ends it (the
   * callbacks stay; `onAck` gets that ACK, so the caller can tell which one).
   * RFC 7641 §4.5.2 asks this of a notification that is still being
   * retransmitted when the resource changes. Returns false (nothing changed)
   * when no such CON is pending: acknowledged, reset, timed out or cancelled.
   */
  replaceCon(peer: Peer, messageId: number, newMessageId: number, bytes: Uint8Array): boolean {
    if (this.closed) return false;
    const ps = this.peers.get(peer.key);
    if (ps === undefined) return false;
    const con = this.outgoing.get(ps.id * KEY_SPACE + messageId);
    if (con === undefined || con.done || con.messageId !== messageId) return false;
    const key = ps.id * KEY_SPACE + newMessageId;
    if (key !== con.key) {
      // A CON still pending under the new ID (65536 Message IDs ago) is abandoned, as sendCon does.
      const previous = this.outgoing.get(key);
      if (previous !== undefined && previous !== con) this.finishCon(previous);
      if (con.sent) {
        if (con.aliases === undefined) con.aliases = [con.key];
        else con.aliases.push(con.key);
      } else if (this.outgoing.get(con.key) === con) this.outgoing.delete(con.key);
      con.key = key;
      con.messageId = newMessageId;
      this.outgoing.set(key, con);
    }
    con.bytes = bytes;
    con.sent = false;
    return true;
  }

  /**
   * Reliable transports: the connection to the peer failed or closed, so its
   * CONs not yet taken as delivered (a ping awaiting its Pong, a CON sent
   * while the connection was failing) time out now.
   */
  private failCons(ps: PeerState, error: Error): void {
    if (ps.pendingCons === 0) return;
    for (const con of [...this.outgoing.values()]) {
      if (con.ps !== ps || con.done) continue;
      this.finishCon(con);
      con.callbacks.onTimeout(new TimeoutError(error.message, { cause: error }));
    }
  }

  /** Stops retransmitting a CON (the exchange was cancelled). */
  cancelCon(con: OutgoingCon): void {
    if (!con.done) this.finishCon(con);
  }

  private finishCon(con: OutgoingCon): void {
    con.done = true;
    if (con.timer !== undefined) this.time.clearTimer(con.timer);
    con.timer = undefined;
    if (this.outgoing.get(con.key) === con) this.outgoing.delete(con.key);
    if (con.aliases !== undefined) {
      for (const k of con.aliases) if (this.outgoing.get(k) === con) this.outgoing.delete(k);
      con.aliases = undefined;
    }
    con.ps.pendingCons--;
  }

  private retransmit(con: OutgoingCon): void {
    if (con.done || this.closed) return;
    if (con.transmissions > this.options.params.maxRetransmit) {
      this.finishCon(con);
      if (channels.timeout.hasSubscribers) {
        channels.timeout.publish({
          peer: con.ps.peer,
          messageId: con.messageId,
          transmissions: con.transmissions,
        });
      }
      con.callbacks.onTimeout(
        new TimeoutError(
          `no acknowledgement from ${describePeer(con.ps.peer)} after ${con.transmissions} transmissions`,
          { hint: 'is a CoAP server running at that address and port?' },
        ),
      );
      return;
    }
    con.transmissions++;
    con.timeoutMs *= 2;
    if (channels.messageRetransmitted.hasSubscribers) {
      channels.messageRetransmitted.publish({
        peer: con.ps.peer,
        data: con.bytes,
        messageId: con.messageId,
        transmission: con.transmissions - 1,
        nextTimeoutMs: con.timeoutMs,
      });
    }
    this.send(con.ps, con.bytes, con.transmissions - 1);
    con.sent = true;
    con.timer = this.time.setTimer(() => this.retransmit(con), con.timeoutMs);
  }

  /** Sends the reply to a request and remembers it for duplicates (§4.5). */
  reply(key: number, ps: PeerState, bytes: Uint8Array | null, confirmable: boolean): void {
    const now = this.clock();
    const lifetime = confirmable ? this.options.derived.exchangeLifetime : this.options.derived.nonLifetime;
    this.inflight.delete(key);
    if (!this.reliable) this.dedup.remember(key, confirmable ? bytes : null, now + lifetime, now);
    if (bytes !== null) this.send(ps, bytes);
  }

  /** Marks a request as being processed (handler still running). */
  markInflight(key: number): void {
    this.inflight.set(key, false);
  }

  /** Sends an empty ACK for a request being processed slowly (separate response, §5.2.2). */
  sendEmptyAck(key: number, ps: PeerState, messageId: number): void {
    const ack = encodeEmpty(MessageType.ACK, messageId);
    const now = this.clock();
    this.inflight.delete(key);
    this.dedup.remember(key, ack, now + this.options.derived.exchangeLifetime, now);
    this.send(ps, ack);
  }

  private reject(peer: Peer, messageId: number, data: Buffer, reason: string): void {
    if (channels.rejected.hasSubscribers) channels.rejected.publish({ peer, data, reason, reset: true });
    this.sendTo(peer, encodeEmpty(MessageType.RST, messageId));
  }

  /** Sends a datagram to a peer that may have no state (RST, ping answers). */
  private sendTo(peer: Peer, bytes: Uint8Array): void {
    if (this.closed) return;
    if (channels.messageSent.hasSubscribers)
      channels.messageSent.publish({ peer, data: bytes, transmission: 0 });
    this.transport.send(bytes, peer, false);
  }

  private ignore(peer: Peer, data: Buffer, reason: string): void {
    if (channels.rejected.hasSubscribers) channels.rejected.publish({ peer, data, reason, reset: false });
  }

  /**
   * The time the datagram being processed arrived, while incoming() runs
   * (-1 otherwise): replies sent synchronously from a handler reuse it
   * instead of reading the clock again (performance.now() is ~50-80 ns).
   */
  private turnNow = -1;

  private clock(): number {
    return this.turnNow >= 0 ? this.turnNow : this.time.now();
  }

  /** Entry point for every received datagram. */
  incoming(data: Buffer, peer: Peer): void {
    if (this.closed) return;
    const now = this.time.now();
    this.turnNow = now;
    try {
      this.process(data, peer, now);
    } finally {
      this.turnNow = -1;
    }
  }

  private process(data: Buffer, peer: Peer, now: number): void {
    if (channels.messageReceived.hasSubscribers) channels.messageReceived.publish({ peer, data });
    if (this.reliable) return this.processReliable(data, peer, now);
    // §3: unknown versions are silently ignored; so is anything shorter than a header.
    if (data.length < 4 || data[0]! >> 6 !== 1)
      return this.ignore(peer, data, 'not a CoAP version 1 message');
    const type = ((data[0]! >> 4) & 3) as MessageType;
    const code = data[1]!;
    const messageId = (data[2]! << 8) | data[3]!;
    // Existing state only: a peer's state is created once one of its messages is
    // accepted (decoded and meaningful), never for what is rejected or ignored.
    const ps = this.peers.get(peer.key);
    if (ps !== undefined) {
      if (ps.peer !== peer) ps.peer = peer;
      ps.lastHeard = now;
      ps.lastActive = now;
      ps.unansweredBytes = 0;
    }

    if (type === MessageType.ACK || type === MessageType.RST) {
      // Without state there is nothing an ACK or RST could match but a token (piggybacked response).
      const con = ps === undefined ? undefined : this.outgoing.get(ps.id * KEY_SPACE + messageId);
      let msg: CoapMessage | undefined;
      if (code !== 0 || data.length !== 4) {
        if (type === MessageType.RST) return this.ignore(peer, data, 'RST that is not empty');
        try {
          msg = decodeMessage(data);
        } catch (err) {
          return this.ignore(peer, data, (err as Error).message);
        }
        // §4.2: an ACK is Empty or carries a response (class 2-5); anything else is ignored.
        const cls = code >> 5;
        if (cls < 2 || cls > 5) return this.ignore(peer, data, `ACK with code class ${cls}`);
      }
      if (con === undefined || con.done) {
        if (type === MessageType.RST) {
          if (ps === undefined) return;
          // §4.3: an RST may reject a Non-confirmable message.
          const key = ps.id * KEY_SPACE + messageId;
          const watcher = this.nonWatch.get(key);
          if (watcher) {
            this.nonWatch.delete(key);
            watcher();
          }
          return;
        }
        // A late or unknown ACK; a piggybacked response may still match by token.
        if (msg && msg.code !== 0) this.offerResponse(msg, ps, peer, now);
        return;
      }
      const owner = con.ps;
      this.finishCon(con);
      if (type === MessageType.RST) return con.callbacks.onReset();
      const ack = msg ?? { type, code: 0, messageId, token: EMPTY, options: [], payload: EMPTY };
      if (ack.code !== 0) this.upper?.response(ack, owner, con);
      con.callbacks.onAck(ack);
      return;
    }

    // CON or NON.
    if (code === 0) {
      // §4.3: an empty CON is a ping, answered by RST; an empty NON is ignored.
      if (data.length !== 4) {
        if (type === MessageType.CON) return this.reject(peer, messageId, data, 'empty message with content');
        return this.ignore(peer, data, 'empty message with content');
      }
      if (type === MessageType.CON) {
        if (channels.rejected.hasSubscribers) {
          channels.rejected.publish({ peer, data, reason: 'CoAP ping', reset: true });
        }
        this.sendTo(peer, encodeEmpty(MessageType.RST, messageId));
      }
      return;
    }
    // (A peer without state may still have remembered exchanges: its id is derived from its key.)
    const id = ps !== undefined ? ps.id : peerId(peer.key, this.idSeedA, this.idSeedB);
    const key = id * KEY_SPACE + messageId;
    const seen = this.dedup.lookup(key, now);
    if (seen !== undefined && !reusedMessageId(seen, data)) {
      if (channels.duplicate.hasSubscribers) {
        channels.duplicate.publish({
          peer,
          data,
          messageId,
          replayed: seen !== null && type === MessageType.CON,
        });
      }
      if (seen !== null && type === MessageType.CON) this.sendTo(peer, Buffer.from(seen));
      return;
    }
    if (this.inflight.size !== 0 && this.inflight.has(key)) {
      if (channels.duplicate.hasSubscribers)
        channels.duplicate.publish({ peer, data, messageId, replayed: false });
      return;
    }
    let msg: CoapMessage;
    try {
      msg = decodeMessage(data);
    } catch (err) {
      const reason = err instanceof MessageFormatError ? err.message : String(err);
      // §4.2/§4.3: a CON that cannot be processed is rejected with RST; a NON is ignored.
      if (type === MessageType.CON) return this.reject(peer, messageId, data, reason);
      return this.ignore(peer, data, reason);
    }
    const cls = code >> 5;
    if (cls === 0) {
      this.upper?.request(msg, ps ?? this.heard(peer, now, id), key);
      return;
    }
    if (cls >= 2 && cls <= 5) {
      const matched = this.offerResponse(msg, ps, peer, now);
      if (!matched) {
        // §4.2/§4.3: an unexpected response is rejected with RST (nothing is kept for it).
        return this.reject(peer, messageId, data, 'response matches no pending request');
      }
      const state = ps ?? this.peerState(peer);
      if (type === MessageType.CON) {
        const ack = encodeEmpty(MessageType.ACK, messageId);
        this.dedup.remember(key, ack, now + this.options.derived.exchangeLifetime, now);
        this.send(state, ack);
      } else {
        this.dedup.remember(key, null, now + this.options.derived.nonLifetime, now);
      }
      return;
    }
    // Reserved classes 1, 6, 7.
    if (type === MessageType.CON) return this.reject(peer, messageId, data, `reserved code class ${cls}`);
    return this.ignore(peer, data, `reserved code class ${cls}`);
  }

  /**
   * A message from a reliable transport (a frame converted to a NON
   * datagram; a Pong converted to an RST): no deduplication, no ACK, and
   * nothing is rejected with RST (RFC 8323 has none); signaling (7.xx)
   * stays in the transport.
   */
  private processReliable(data: Buffer, peer: Peer, now: number): void {
    if (data.length < 4) return this.ignore(peer, data, 'not a CoAP message');
    const type = ((data[0]! >> 4) & 3) as MessageType;
    const code = data[1]!;
    const ps = this.peers.get(peer.key);
    if (ps !== undefined) {
      if (ps.peer !== peer) ps.peer = peer;
      ps.lastHeard = now;
      ps.lastActive = now;
    }
    if (code === 0) {
      // RFC 8323 §3.4: an Empty message is ignored; a Pong ends its ping.
      if (type === MessageType.RST && ps !== undefined) {
        const con = this.outgoing.get(ps.id * KEY_SPACE + ((data[2]! << 8) | data[3]!));
        if (con !== undefined && !con.done) {
          this.finishCon(con);
          con.callbacks.onReset();
        }
      }
      return;
    }
    let msg: CoapMessage;
    try {
      msg = decodeMessage(data);
    } catch (err) {
      return this.ignore(peer, data, err instanceof MessageFormatError ? err.message : String(err));
    }
    const cls = code >> 5;
    if (cls === 0) {
      const id = ps !== undefined ? ps.id : peerId(peer.key, this.idSeedA, this.idSeedB);
      this.upper?.request(msg, ps ?? this.heard(peer, now, id), id * KEY_SPACE);
      return;
    }
    if (cls >= 2 && cls <= 5) {
      if (!this.offerResponse(msg, ps, peer, now))
        this.ignore(peer, data, 'response matches no pending request');
      return;
    }
    this.ignore(peer, data, `reserved code class ${cls}`);
  }

  /**
   * Offers a response to the exchange layer; a peer without state gets state
   * only when the response matched a request (multicast answers, state dropped).
   */
  private offerResponse(msg: CoapMessage, ps: PeerState | undefined, peer: Peer, now: number): boolean {
    if (ps !== undefined) return this.upper?.response(msg, ps, undefined) ?? false;
    const fresh = this.newState(peer);
    fresh.lastHeard = now;
    fresh.lastActive = now;
    const matched = this.upper?.response(msg, fresh, undefined) ?? false;
    if (matched) this.adopt(fresh);
    return matched;
  }

  /** The state of a peer whose message was just accepted (created if needed), stamped as heard now. */
  private heard(peer: Peer, now: number, id: number): PeerState {
    const ps = this.adopt(this.newState(peer, id));
    ps.lastHeard = now;
    ps.lastActive = now;
    ps.unansweredBytes = 0;
    return ps;
  }

  private sweep(): void {
    const now = this.time.now();
    // Expires records and, after a burst, gives the ring and table memory back.
    this.dedup.shrink(now);
    const idle = this.peerIdleMs;
    for (const [k, ps] of this.peers) {
      if (isIdle(ps) && now - ps.lastActive > idle) this.peers.delete(k);
    }
    this.order = [...this.peers.values()];
    this.orderHead = 0;
  }

  /** Fails every pending CON and stops timers. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.time.clearTimer(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const con of [...this.outgoing.values()]) this.finishCon(con);
    this.outgoing.clear();
    this.nonWatch.clear();
    this.inflight.clear();
    this.dedup.clear();
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * 37 bits of two seeded 32-bit FNV-1a-style hashes of the peer key, so that
 * id * 65536 + Message ID stays an exact integer (< 2^53). Two peers sharing
 * an id is harmless unless they also use the same Message ID within
 * EXCHANGE_LIFETIME and the same token (a stale reply with another token is
 * never replayed, see reusedMessageId).
 */
function peerId(key: string, seedA: number, seedB: number): number {
  let a = 0x811c9dc5 ^ seedA;
  let b = 0x01000193 ^ seedB;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 13;
  }
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  b = Math.imul(b ^ (b >>> 15), 0xc2b2ae35);
  b ^= b >>> 16;
  return (a & 0x1f) * 0x100000000 + (b >>> 0);
}

/** Nothing in flight toward or from the peer: its state can be dropped and re-created. */
function isIdle(ps: PeerState): boolean {
  return ps.pendingCons === 0 && ps.outstanding === 0 && ps.queue.length === 0;
}

/**
 * True when `data` reuses the Message ID of a remembered exchange but is not a
 * copy of that message: the remembered reply is a piggybacked response whose
 * token differs from the token of `data`. A peer that sends more than 65536
 * messages per EXCHANGE_LIFETIME reuses Message IDs (§4.4 forbids it); this
 * keeps such a peer from getting a stale response replayed for a new request.
 * (A retransmission is the same message, so its token is the same, §4.2/§4.5.)
 */
function reusedMessageId(reply: Buffer | null, data: Buffer): boolean {
  if (reply === null || reply.length < 4 || reply[1] === 0) return false;
  const tkl = reply[0]! & 0x0f;
  if ((data[0]! & 0x0f) !== tkl || data.length < 4 + tkl || reply.length < 4 + tkl) return true;
  for (let i = 4; i < 4 + tkl; i++) if (reply[i] !== data[i]) return true;
  return false;
}

export function describePeer(peer: Peer): string {
  return formatAddress(peer.address, peer.port);
}
