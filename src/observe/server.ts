/**
 * Server side of Observe (RFC 7641), as a CoapServer middleware. Every
 * CoapServer has one built in (option `observe`, on by default):
 *
 *   server.get('/temp', () => String(temp), { obs: true });
 *   temp = 22; server.observe!.notify('/temp');   // or server.observe!.resource('/temp').changed()
 *
 * (`enableObserve(server, options)` configures and returns that instance.)
 *
 * A GET with Observe=0 on an observable resource (route attribute `obs`, or
 * the `isObservable` option) registers the client, keyed by (endpoint, peer,
 * token); a 2.xx answer carries the Observe option. `notify(path)` re-runs
 * each observer's own GET through the rest of the pipeline and sends the
 * result with a fresh 24-bit sequence number and the registration's token.
 * Notifications are NON unless configured (`confirmable`, every `conEvery`-th,
 * and at least once per `conIntervalMs`, 24 h by default). Observers go away
 * on RST, on a CON notification that times out, on GET with Observe=1, and
 * after an error notification (e.g. 4.04 when the resource is deleted).
 * While a CON notification is in flight, a newer state replaces it (§4.5.2):
 * its next retransmissions carry the newest state (a new sequence number and
 * Message ID) and the retransmission counter and timeout go on, so a peer that
 * stopped answering is given up on after MAX_RETRANSMIT like any CON and never
 * gets a queue of old states.
 *
 * Limits: the table is bounded in count (`maxObservers`) and bytes
 * (`maxObserverBytes`), and each source address has a share of both
 * (`maxObserversPerAddress`, `maxObserverBytesPerAddress`). A registration is
 * stored compactly (its options and, for FETCH, payload, copied; a GET's
 * payload is dropped) and costs what it holds. A peer not heard from for
 * `staleAfterMs` gets its next notification as CON (and a probe when nothing
 * changes); if it does not acknowledge, the registration is removed. When the
 * table or a share is full, stale registrations are evicted first; otherwise
 * the registration is not accepted: the answer goes without Observe (§4.1).
 */

import { Buffer } from 'node:buffer';
import type { BlockwiseServer } from '../blockwise/server.js';
import { type CoapMessage, type CoapOption, encodeMessage } from '../codec/message.js';
import { decodeUint, encodeUint, getUintOption } from '../codec/options.js';
import { MessageType, Method, ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { channels, type MessageReceivedEvent } from '../diagnostics.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import { type Middleware, ServerRequest } from '../server/request.js';
import type { Peer } from '../transport/transport.js';
import { type Clock, realClock, type TimerHandle } from '../util/clock.js';
import { InvalidArgumentError } from '../util/errors.js';

type Result = OutgoingResponse | null | Promise<OutgoingResponse | null>;

export interface ObserveServerOptions {
  /**
   * The source of time for the refresh and stale timers (default the real
   * clock; a `CoapServer` passes its `clock` option). Fixed at construction.
   */
  clock?: Clock;
  /** Send every notification as CON (default false: NON, with the CON rules below). */
  confirmable?: boolean;
  /** Send every Nth notification to an observer as CON (default 20; 0 = only the time rule). */
  conEvery?: number;
  /** Longest time between CON notifications to an observer (default 24 h, §4.5). */
  conIntervalMs?: number;
  /**
   * Re-send the current state shortly before the last notification's Max-Age
   * runs out, so observers' caches stay fresh without a change (default true).
   */
  refreshBeforeMaxAge?: boolean;
  /** Decides whether a request's resource may be observed (default: the route's `obs` attribute). */
  isObservable?: (req: ServerRequest) => boolean;
  /** Most observers at once, all peers together (default 10 000); further registrations are answered without Observe. */
  maxObservers?: number;
  /** Most observers from one source address (default 64); further ones are answered without Observe. */
  maxObserversPerAddress?: number;
  /**
   * Bound on the bytes held by registrations, all peers together (default 8 MiB):
   * each counts its stored request (token, options, FETCH payload, path, key) plus
   * a fixed overhead. A registration that does not fit is answered without Observe.
   */
  maxObserverBytes?: number;
  /** Bytes of registrations one source address may hold (default 256 KiB). */
  maxObserverBytesPerAddress?: number;
  /**
   * An observer not heard from (registration, ACK of a CON notification) for this
   * long is stale (default 60 s): its next notification goes as CON (a probe with
   * the current state if nothing changes), it is removed when that is not
   * acknowledged, and it is evicted first when the table or its address's share is full.
   */
  staleAfterMs?: number;
  /**
   * Block-wise layer: large notifications go out as their first block (RFC 7959 §3.4).
   * Default: the block-wise layer of the server the registration came through.
   */
  blockwise?: BlockwiseServer;
}

interface Observer {
  key: string;
  path: string;
  /** A compact copy of the registering request (no datagram, no GET payload). */
  req: ServerRequest;
  /** Where the notification's GET is re-run: after `mw` on `server`... */
  server: ObserveHost | undefined;
  mw: Middleware | undefined;
  /** ...or, for a middleware installed by hand with `server.use(observe.middleware)`, this. */
  next: (() => Result) | undefined;
  blockwise: BlockwiseServer | undefined;
  endpoint: Endpoint;
  token: Buffer;
  address: string;
  /** Counted against the byte budgets. */
  bytes: number;
  count: number;
  lastCon: number;
  /** Last time the peer showed it is there (registration, ACK). */
  lastHeard: number;
  inflight: boolean;
  /** Message ID of the CON notification in flight (what `replaceCon` replaces). */
  conMid: number;
  /** A newer state waits for the CON in flight (it could not be replaced). */
  dirty: boolean;
  /** Counts notifyOne runs: an async result older than the newest one is dropped. */
  gen: number;
  removed: boolean;
  refresh: TimerHandle | undefined;
  /** Its id with the durable store (ObservePersistence), when it has one. */
  persistedId?: string;
}

interface AddressShare {
  count: number;
  bytes: number;
  observers: Set<Observer>;
}

type RemoveReason = 'reset' | 'timeout' | 'error' | 'deleted' | 'closed' | 'stale' | 'disconnected';

/** A registration as a durable store keeps it (see ObservePersistence). */
export interface PersistedObserver {
  /** The observed path. */
  path: string;
  /** Where notifications go. */
  peer: Peer;
  /** The registration's token. */
  token: Buffer;
  /** The registering request's options (Accept, Uri-Path, Observe, ...). */
  options: readonly CoapOption[];
  /** The sequence number of the last notification (the registration's answer at first). */
  seq: number;
}

/**
 * Hooks for a durable store: registrations survive a restart and, after it,
 * notifications continue above the last sequence number sent.
 */
export interface ObservePersistence {
  /**
   * A registration was accepted through `endpoint`: returns the id that
   * identifies it until `removed(id)` (undefined: not persisted).
   */
  added(o: PersistedObserver, endpoint: Endpoint): string | undefined;
  /** The registration `id` is gone (RST, timeout, deregistration, error, resource deleted). */
  removed(id: string): void;
  /**
   * Sequence numbers up to `upTo` (24-bit, wrapping) may be used: a restart
   * must continue above it (store it; the next call comes well before the
   * numbers run out).
   */
  reserve(upTo: number): void;
}

/** Sequence numbers reserved ahead with a durable store (see ObservePersistence.reserve). */
const SEQ_RESERVATION = 1 << 16;

/** What the observe layer reports to `onEvent` listeners (tests, logs). */
export type ObserveEvent =
  | { type: 'registered' | 'deregistered'; path: string; peer: string }
  | { type: 'removed'; path: string; peer: string; reason: RemoveReason }
  | {
      /** A registration not accepted (answered without Observe): its address's share or the table is full. */
      type: 'refused';
      path: string;
      peer: string;
      reason: 'address' | 'full';
    };

/** A handle on one observable path. */
export interface ObservableResource {
  /** Notify every observer of this path (re-runs each observer's GET). */
  changed(): void;
  /** The resource is gone: observers get a 4.04 and are removed. */
  deleted(): void;
  /** Number of observers of this path. */
  readonly observers: number;
}

const DAY = 24 * 60 * 60 * 1000;
/** NON notifications remembered for matching a RST (about NON_LIFETIME worth at modest rates). */
const MAX_NON_TRACKED = 4096;
/** What one registration costs beyond the bytes it stores (objects, Map/Set entries, timer). */
const OBSERVER_OVERHEAD = 640;
/** What the observe layer needs of the server it serves (a CoapServer is one). */
export interface ObserveHost {
  /** Runs the pipeline after middleware `mw` for `req` (a notification re-runs the observer's GET). */
  runAfter(mw: Middleware, req: ServerRequest): OutgoingResponse | null | Promise<OutgoingResponse | null>;
  /** Makes `layer` the server's observe layer (CoapServer.setObserve). */
  setObserve(layer: ObserveServer): unknown;
  /** The server's observe layer, configured with `options` (CoapServer.enableObserve). */
  enableObserve(options?: ObserveServerOptions): ObserveServer;
  /** The server's block-wise layer: large notifications go out as their first block. */
  readonly blockwise: BlockwiseServer | undefined;
}

/** Per stored option (object + Map of the array). */
const OPTION_OVERHEAD = 48;

type Settings = Required<Omit<ObserveServerOptions, 'blockwise' | 'clock'>> & { blockwise?: BlockwiseServer };

export class ObserveServer {
  /** Every observer, least recently heard from first. */
  private readonly observers = new Map<string, Observer>();
  private readonly byPath = new Map<string, Set<Observer>>();
  private readonly byAddress = new Map<string, AddressShare>();
  private bytes = 0;
  private seq = 1;
  private readonly opts: Settings;
  private readonly time: Clock;
  /** Listener for registrations and removals. */
  onEvent: ((ev: ObserveEvent) => void) | undefined;
  /**
   * A middleware for `server.use()` by hand. Prefer `install(server)`: its
   * registrations keep only a compact copy of the request, while this one keeps
   * the pipeline's continuation (and with it the whole registering request).
   */
  readonly middleware: Middleware = (req, next) => this.handle(req, next, undefined, undefined);
  private readonly perServer = new Map<ObserveHost, Middleware>();
  /** NON notifications by `peer|messageId`, to remove an observer that answers one with RST. */
  private readonly nonSent = new Map<string, Observer>();
  private rstListener: ((m: MessageReceivedEvent) => void) | undefined;
  private sweepTimer: TimerHandle | undefined;
  private readonly endpointIds = new WeakMap<Endpoint, number>();
  private nextEndpointId = 1;
  private persist: ObservePersistence | undefined;
  /** Sequence numbers sent since the last reservation (see ObservePersistence.reserve). */
  private seqLeft = 0;

  constructor(options: ObserveServerOptions = {}) {
    this.time = options.clock ?? realClock;
    this.opts = {
      confirmable: false,
      conEvery: 20,
      conIntervalMs: DAY,
      refreshBeforeMaxAge: true,
      isObservable: (req) => req.route?.attrs.obs === true,
      maxObservers: 10_000,
      maxObserversPerAddress: 64,
      maxObserverBytes: 8 << 20,
      maxObserverBytesPerAddress: 256 << 10,
      staleAfterMs: 60_000,
    };
    this.configure(options);
  }

  /** Changes settings (only those given); `enableObserve(server, options)` uses this. */
  configure(options: ObserveServerOptions): this {
    if (options.clock !== undefined && options.clock !== this.time)
      throw new InvalidArgumentError(
        'the observe layer keeps the clock it was created with: give the clock to the server instead (new CoapServer({ clock }))',
      );
    for (const [k, v] of Object.entries(options)) {
      if (v !== undefined) (this.opts as Record<string, unknown>)[k] = v;
    }
    return this;
  }

  /**
   * Makes this the observe layer of `server` (replacing its built-in one, at the
   * same place: right after block-wise). One ObserveServer may serve several servers.
   */
  install(server: ObserveHost): this {
    server.setObserve(this);
    return this;
  }

  /**
   * Whether a request concerns this layer at all (a GET or FETCH with an Observe option): the
   * server passes every other request straight on, without a call into the layer.
   */
  concerns(msg: CoapMessage): boolean {
    return observeValue(msg) !== undefined;
  }

  /** The middleware for one server (used by `CoapServer.setObserve`). */
  middlewareFor(server: ObserveHost): Middleware {
    let mw = this.perServer.get(server);
    if (mw === undefined) {
      const m: Middleware = (req, next) => this.handle(req, next, server, m);
      mw = m;
      this.perServer.set(server, mw);
    }
    return mw;
  }

  /** `server` no longer uses this layer: its observers are dropped (no messages sent). */
  forget(server: ObserveHost): void {
    this.perServer.delete(server);
    for (const o of [...this.observers.values()]) if (o.server === server) this.remove(o, 'closed');
  }

  /** Number of observers, of one path or in total. */
  observerCount(path?: string): number {
    return path === undefined ? this.observers.size : (this.byPath.get(path)?.size ?? 0);
  }

  /** Bytes held by registrations (counted against `maxObserverBytes`). */
  get bytesHeld(): number {
    return this.bytes;
  }

  /** Sends a notification with the current state to every observer of `path`. */
  notify(path: string): void {
    const set = this.byPath.get(path);
    if (!set) return;
    for (const o of [...set]) this.notifyOne(o);
  }

  /** The resource at `path` no longer exists: a 4.04 notification, then removal. */
  deleted(path: string): void {
    const set = this.byPath.get(path);
    if (!set) return;
    for (const o of [...set]) {
      this.remove(o, 'deleted');
      this.send(o, { code: ResponseCode.NotFound }, false);
    }
  }

  /** A handle for one path: `res.changed()`, `res.deleted()`. */
  resource(path: string): ObservableResource {
    const self = this;
    return {
      changed: () => this.notify(path),
      deleted: () => this.deleted(path),
      get observers() {
        return self.observerCount(path);
      },
    };
  }

  /**
   * Persists registrations through `hooks` from now on; `seq` is where the
   * sequence numbers continue (the last reservation of the previous run).
   */
  setPersistence(hooks: ObservePersistence | undefined, seq?: number): void {
    this.persist = hooks;
    if (seq !== undefined) this.seq = seq & 0xffffff;
    this.seqLeft = 0;
  }

  /**
   * Re-creates a registration from a durable store after a restart: it is
   * notified with the same token and the next sequence numbers. It counts as
   * not heard from, so its next notification goes as CON (the sweep probes it
   * with the current state within `staleAfterMs / 2`): a peer that answers RST
   * or does not answer is dropped (RFC 7641 §4.5). False when it does not fit
   * the limits.
   */
  restore(server: ObserveHost, endpoint: Endpoint, rec: PersistedObserver, id: string): boolean {
    const segments = rec.path === '/' ? [] : rec.path.slice(1).split('/');
    const message: CoapMessage = {
      type: MessageType.CON,
      code: Method.GET,
      messageId: 0,
      token: rec.token,
      options: [...rec.options],
      payload: Buffer.alloc(0),
    };
    const req = new ServerRequest(message, rec.peer, rec.path, segments);
    req.endpoint = endpoint;
    const compact = compactRequest(req);
    const key = this.observerKey(endpoint, rec.peer, rec.token);
    const existing = this.observers.get(key);
    if (existing) this.remove(existing, undefined);
    const bytes = OBSERVER_OVERHEAD + compact.bytes + key.length;
    if (this.admit(rec.peer.address, bytes) !== undefined) return false;
    const mw = this.middlewareFor(server);
    const now = this.time.now();
    const o = this.addObserver(
      key,
      compact.req,
      server,
      mw,
      undefined,
      endpoint,
      bytes,
      now,
      now - this.opts.staleAfterMs,
    );
    o.persistedId = id;
    this.armSweep();
    return true;
  }

  /** Forgets every observer (no messages sent). */
  close(): void {
    for (const o of [...this.observers.values()]) this.remove(o, 'closed');
    for (const f of this.unlisten.splice(0)) f();
    this.nonSent.clear();
    if (this.rstListener) channels.messageReceived.unsubscribe(this.rstListener);
    this.rstListener = undefined;
    this.time.clearTimer(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /**
   * §4.5: a client rejects an unwanted NON notification with RST. The message
   * layer drops a RST that matches no CON, so the observe layer watches the
   * received-message channel for RSTs matching the NON notifications it sent.
   */
  private trackNon(o: Observer, messageId: number): void {
    if (!this.rstListener) {
      this.rstListener = ({ peer, data }) => {
        // An empty RST: 4 bytes, version 1, type 3.
        if (data.length !== 4 || (data[0]! & 0xf0) !== 0x70) return;
        const key = `${peer.key}|${(data[2]! << 8) | data[3]!}`;
        const obs = this.nonSent.get(key);
        if (obs === undefined) return;
        this.nonSent.delete(key);
        this.remove(obs, 'reset');
      };
      channels.messageReceived.subscribe(this.rstListener);
    }
    this.nonSent.set(`${o.req.peer.key}|${messageId}`, o);
    if (this.nonSent.size > MAX_NON_TRACKED) {
      const oldest = this.nonSent.keys().next().value;
      if (oldest !== undefined) this.nonSent.delete(oldest);
    }
  }

  // ---- registration ------------------------------------------------------

  private endpointId(ep: Endpoint): number {
    let id = this.endpointIds.get(ep);
    if (id === undefined) {
      id = this.nextEndpointId++;
      this.endpointIds.set(ep, id);
      // RFC 8323 §7: an observation lives as long as its connection. A reliable transport
      // reports a closed connection as the peer gone: its observers go at once, not at the
      // next notification.
      if (ep.transport.reliable) {
        const listeners = ep.exchangeLayer.peerGoneListeners;
        const gone = (peer: Peer) => this.peerGone(ep, peer);
        listeners.add(gone);
        this.unlisten.push(() => listeners.delete(gone));
      }
    }
    return id;
  }

  /** An observer's key. The endpoint is part of it: a coap:// and a coaps:// peer may share address and port. */
  private observerKey(endpoint: Endpoint | undefined, peer: Peer, token: Buffer): string {
    return `${endpoint === undefined ? 0 : this.endpointId(endpoint)}|${peer.key}|${token.toString('latin1')}`;
  }

  /** Listeners to remove at close (see endpointId). */
  private readonly unlisten: Array<() => void> = [];

  private peerGone(ep: Endpoint, peer: Peer): void {
    const share = this.byAddress.get(peer.address);
    if (share === undefined) return;
    for (const o of [...share.observers])
      if (o.endpoint === ep && o.req.peer.key === peer.key) this.remove(o, 'disconnected');
  }

  private handle(
    req: ServerRequest,
    next: (r?: ServerRequest) => Result,
    server: ObserveHost | undefined,
    mw: Middleware | undefined,
  ): Result | undefined {
    const msg = req.message;
    // Not a GET/FETCH or no Observe: pass on (undefined = the server runs the next middleware).
    const raw = observeValue(msg);
    if (raw === undefined) return undefined;
    const value = raw.length > 3 ? -1 : decodeUint(raw);
    const endpoint = req.endpoint;
    const key = this.observerKey(endpoint, req.peer, msg.token);
    if (value === 1) {
      const o = this.observers.get(key);
      if (o) {
        this.remove(o, undefined);
        this.onEvent?.({ type: 'deregistered', path: o.path, peer: req.peer.key });
      }
      return next();
    }
    if (value !== 0) return next();
    const r = next();
    const finish = (res: OutgoingResponse | null): OutgoingResponse | null => {
      if (res === null) return null;
      const existing = this.observers.get(key);
      const ok = res.code >> 5 === 2;
      if (!ok || !this.opts.isObservable(req) || endpoint === undefined) {
        if (existing) this.remove(existing, 'error');
        return res;
      }
      // RFC 9175 §2.4: notifications would flood a spoofed address; plain-UDP peers prove theirs with Echo first.
      const guard = req.amplification;
      if (guard !== undefined && !guard.trusted(msg, req.peer)) return guard.challenge(req.peer);
      if (existing) this.remove(existing, undefined);
      const compact = compactRequest(req);
      const bytes = OBSERVER_OVERHEAD + compact.bytes + key.length;
      const address = req.peer.address;
      const refused = this.admit(address, bytes);
      if (refused !== undefined) {
        this.onEvent?.({ type: 'refused', path: req.path, peer: req.peer.key, reason: refused });
        return stripObserve(res);
      }
      const now = this.time.now();
      const o = this.addObserver(
        key,
        compact.req,
        server,
        mw,
        server === undefined ? () => next() : undefined,
        endpoint,
        bytes,
        now,
      );
      if (this.persist !== undefined) {
        const id = this.persist.added(
          {
            path: o.path,
            peer: o.req.peer,
            token: o.token,
            options: o.req.message.options,
            seq: (this.seq + 1) & 0xffffff,
          },
          endpoint,
        );
        if (id !== undefined) o.persistedId = id;
      }
      this.onEvent?.({ type: 'registered', path: o.path, peer: req.peer.key });
      this.scheduleRefresh(o, res);
      this.armSweep();
      return withObserve(res, this.nextSeq());
    };
    return r instanceof Promise ? r.then(finish) : finish(r);
  }

  private addObserver(
    key: string,
    req: ServerRequest,
    server: ObserveHost | undefined,
    mw: Middleware | undefined,
    next: (() => Result) | undefined,
    endpoint: Endpoint,
    bytes: number,
    now: number,
    heard = now,
  ): Observer {
    const address = req.peer.address;
    const o: Observer = {
      key,
      path: req.path,
      req,
      server,
      mw,
      next,
      blockwise: this.opts.blockwise ?? server?.blockwise,
      endpoint,
      token: req.message.token,
      address,
      bytes,
      count: 0,
      lastCon: now,
      lastHeard: heard,
      inflight: false,
      conMid: -1,
      dirty: false,
      gen: 0,
      removed: false,
      refresh: undefined,
    };
    this.observers.set(key, o);
    this.bytes += bytes;
    let share = this.byAddress.get(address);
    if (share === undefined) {
      share = { count: 0, bytes: 0, observers: new Set() };
      this.byAddress.set(address, share);
    }
    share.count++;
    share.bytes += bytes;
    share.observers.add(o);
    let set = this.byPath.get(o.path);
    if (!set) {
      set = new Set();
      this.byPath.set(o.path, set);
    }
    set.add(o);
    return o;
  }

  /**
   * Room for a registration of `bytes` from `address`: stale observers (of that
   * address for its share, the least recently heard of all for the table) make
   * room; otherwise the reason it is refused.
   */
  private admit(address: string, bytes: number): 'address' | 'full' | undefined {
    const o = this.opts;
    if (bytes > o.maxObserverBytesPerAddress || bytes > o.maxObserverBytes) return 'address';
    const now = this.time.now();
    const share = this.byAddress.get(address);
    while (
      share !== undefined &&
      share.count > 0 &&
      (share.count >= o.maxObserversPerAddress || share.bytes + bytes > o.maxObserverBytesPerAddress)
    ) {
      let oldest: Observer | undefined;
      for (const c of share.observers) if (oldest === undefined || c.lastHeard < oldest.lastHeard) oldest = c;
      if (oldest === undefined || now - oldest.lastHeard < o.staleAfterMs) return 'address';
      this.remove(oldest, 'stale');
    }
    if (o.maxObserversPerAddress <= 0) return 'address';
    while (this.observers.size >= o.maxObservers || this.bytes + bytes > o.maxObserverBytes) {
      const oldest = this.observers.values().next().value;
      if (oldest === undefined || now - oldest.lastHeard < o.staleAfterMs) return 'full';
      this.remove(oldest, 'stale');
    }
    return undefined;
  }

  /** The peer showed it is there: not stale, last in the eviction order. */
  private heard(o: Observer): void {
    if (o.removed) return;
    o.lastHeard = this.time.now();
    this.observers.delete(o.key);
    this.observers.set(o.key, o);
  }

  /**
   * Observers not heard from for `staleAfterMs` get a CON notification with the
   * current state (a liveness probe); no ACK removes them (timeout). Runs while
   * there are observers.
   */
  private armSweep(): void {
    if (this.sweepTimer !== undefined) return;
    const period = Math.max(250, Math.floor(this.opts.staleAfterMs / 2));
    this.sweepTimer = this.time.setTimer(
      () => {
        this.sweepTimer = undefined;
        const now = this.time.now();
        const probe: Observer[] = [];
        for (const o of this.observers.values()) {
          if (now - o.lastHeard < this.opts.staleAfterMs) break;
          if (!o.inflight) probe.push(o);
        }
        for (const o of probe) this.notifyOne(o);
        if (this.observers.size > 0) this.armSweep();
      },
      period,
      true,
    );
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) & 0xffffff;
    if (this.persist !== undefined && --this.seqLeft <= SEQ_RESERVATION / 2) {
      // Reserve well ahead: a restart continues above what was reserved.
      this.persist.reserve((this.seq + SEQ_RESERVATION) & 0xffffff);
      this.seqLeft += SEQ_RESERVATION;
    }
    return this.seq;
  }

  private remove(o: Observer, reason: RemoveReason | undefined): void {
    if (o.removed) return;
    o.removed = true;
    this.time.clearTimer(o.refresh);
    if (this.observers.get(o.key) === o) this.observers.delete(o.key);
    this.bytes -= o.bytes;
    const share = this.byAddress.get(o.address);
    if (share?.observers.delete(o)) {
      share.count--;
      share.bytes -= o.bytes;
      if (share.count === 0) this.byAddress.delete(o.address);
    }
    const set = this.byPath.get(o.path);
    if (set) {
      set.delete(o);
      if (set.size === 0) this.byPath.delete(o.path);
    }
    if (o.persistedId !== undefined && reason !== 'closed') this.persist?.removed(o.persistedId);
    if (reason) this.onEvent?.({ type: 'removed', path: o.path, peer: o.req.peer.key, reason });
  }

  // ---- notifications -----------------------------------------------------

  private notifyOne(o: Observer): void {
    if (o.removed) return;
    // While a CON is in flight, send() replaces it with this newer state (§4.5.2).
    if (o.inflight) o.dirty = true;
    const gen = ++o.gen;
    let r: Result;
    try {
      r =
        o.server !== undefined && o.mw !== undefined ? o.server.runAfter(o.mw, o.req) : (o.next?.() ?? null);
    } catch {
      r = { code: ResponseCode.InternalServerError };
    }
    const go = (res: OutgoingResponse | null) => {
      // A newer notifyOne started meanwhile (async handler): its state is the one to send.
      if (res !== null && !o.removed && gen === o.gen) this.send(o, res, true);
    };
    if (r instanceof Promise) r.then(go, () => go({ code: ResponseCode.InternalServerError }));
    else go(r);
  }

  private send(o: Observer, res: OutgoingResponse, live: boolean): void {
    const ok = res.code >> 5 === 2;
    const now = this.time.now();
    o.count++;
    const confirmable =
      this.opts.confirmable ||
      (this.opts.conEvery > 0 && o.count % this.opts.conEvery === 0) ||
      now - o.lastCon >= this.opts.conIntervalMs ||
      // Not heard from for a while: make sure the peer is still there.
      (live && now - o.lastHeard >= this.opts.staleAfterMs);
    let out: OutgoingResponse = ok ? withObserve(res, this.nextSeq()) : stripObserve(res);
    if (!ok && live) this.remove(o, 'error');
    if (ok && o.blockwise) out = o.blockwise.notificationBlock(o.req, out);
    if (ok) this.scheduleRefresh(o, res);
    // OSCORE (server/oscore.ts): the notifications of a protected registration are protected too.
    const protect = o.req.peer.oscoreProtect;
    if (protect !== undefined) out = protect(out);
    if (o.inflight) {
      // §4.5.2: the newest state replaces the notification still being retransmitted.
      if (this.replaceInflight(o, out)) return;
      // Not replaceable: it goes when the one in flight is acknowledged (an error
      // notification, whose observer is already removed, goes at once).
      if (!o.removed) {
        o.dirty = true;
        return;
      }
    }
    if (confirmable) {
      o.inflight = true;
      o.lastCon = now;
    }
    try {
      const messageId = o.endpoint.exchangeLayer.sendUnsolicited(
        o.req.peer,
        {
          confirmable,
          code: out.code,
          token: o.token,
          ...(out.options ? { options: out.options } : {}),
          ...(out.payload ? { payload: out.payload } : {}),
        },
        confirmable
          ? {
              onAck: (ack) => {
                o.inflight = false;
                // An ACK to a Message ID sent before a replacement (§4.5.2): the
                // peer has an older state; the newest goes in a new notification.
                if (ack.messageId !== o.conMid) o.dirty = true;
                this.heard(o);
                if (o.dirty && !o.removed) {
                  o.dirty = false;
                  this.notifyOne(o);
                }
              },
              onReset: () => this.remove(o, 'reset'),
              onTimeout: () => this.remove(o, 'timeout'),
            }
          : undefined,
      );
      if (confirmable) o.conMid = messageId;
      else if (ok) this.trackNon(o, messageId);
    } catch {
      // The endpoint is closed: nobody to notify any more.
      this.remove(o, 'closed');
    }
  }

  /**
   * Puts `out` into the CON notification in flight to `o` (RFC 7641 §4.5.2):
   * its next retransmission carries it with a new Message ID, and the message
   * layer's retransmission counter and timeout continue. False when that CON is
   * no longer pending or `out` cannot be encoded.
   */
  private replaceInflight(o: Observer, out: OutgoingResponse): boolean {
    const ml = o.endpoint.messageLayer;
    const messageId = ml.nextMessageId();
    let bytes: Buffer;
    try {
      bytes = encodeMessage({
        type: MessageType.CON,
        code: out.code,
        messageId,
        token: o.token,
        ...(out.options ? { options: out.options } : {}),
        ...(out.payload ? { payload: out.payload } : {}),
      });
    } catch {
      return false;
    }
    if (!ml.replaceCon(o.req.peer, o.conMid, messageId, bytes)) return false;
    o.conMid = messageId;
    o.dirty = false;
    return true;
  }

  private scheduleRefresh(o: Observer, res: OutgoingResponse): void {
    if (!this.opts.refreshBeforeMaxAge) return;
    this.time.clearTimer(o.refresh);
    const maxAge = getUintOption(res.options ?? [], OptionNumber.MaxAge) ?? 60;
    if (maxAge === 0) return;
    // A little before the representation goes stale (§4.3.1), at least 1 s after now.
    const ms = Math.max(1000, maxAge * 1000 - Math.min(5000, maxAge * 100));
    o.refresh = this.time.setTimer(
      () => {
        o.refresh = undefined;
        this.notifyOne(o);
      },
      ms,
      true,
    );
  }
}

/**
 * The Observe option of a GET or FETCH (undefined for any other request or without one).
 * Options are sorted: it looks only until the first number >= Observe (6); most GETs stop at once.
 */
function observeValue(msg: CoapMessage): Buffer | undefined {
  if (msg.code !== Method.GET && msg.code !== Method.FETCH) return undefined;
  for (const o of msg.options) {
    if (o.number < OptionNumber.Observe) continue;
    return o.number === OptionNumber.Observe ? o.value : undefined;
  }
  return undefined;
}

/**
 * What a notification needs of the registering request, in one fresh buffer
 * (never a slice of the received datagram): token, options, and for FETCH the
 * payload (its query). A GET's payload means nothing (§5.8.1) and is dropped.
 */
function compactRequest(req: ServerRequest): { req: ServerRequest; bytes: number } {
  const msg = req.message;
  const payload = msg.code === Method.FETCH ? msg.payload : undefined;
  let size = msg.token.length + (payload?.length ?? 0);
  for (const o of msg.options) size += o.value.length;
  const buf = Buffer.alloc(size);
  let at = 0;
  const take = (src: Uint8Array): Buffer => {
    buf.set(src, at);
    const out = buf.subarray(at, at + src.length);
    at += src.length;
    return out;
  };
  const token = take(msg.token);
  const options: CoapOption[] = msg.options.map((o) => ({ number: o.number, value: take(o.value) }));
  const message: CoapMessage = {
    type: msg.type,
    code: msg.code,
    messageId: msg.messageId,
    token,
    options,
    payload: payload === undefined ? Buffer.alloc(0) : take(payload),
  };
  const out = new ServerRequest(message, req.peer, req.path, req.pathSegments);
  out.endpoint = req.endpoint;
  const pathBytes = req.path.length * 2 + req.pathSegments.length * 32;
  return { req: out, bytes: size + options.length * OPTION_OVERHEAD + pathBytes };
}

function withObserve(res: OutgoingResponse, seq: number): OutgoingResponse {
  const options: CoapOption[] = (res.options ?? []).filter((o) => o.number !== OptionNumber.Observe);
  options.push({ number: OptionNumber.Observe, value: encodeUint(seq) });
  return { ...res, options };
}

function stripObserve(res: OutgoingResponse): OutgoingResponse {
  if (!res.options?.some((o) => o.number === OptionNumber.Observe)) return res;
  return { ...res, options: res.options.filter((o) => o.number !== OptionNumber.Observe) };
}

/**
 * The server's observe layer, configured with `options` (a CoapServer has one
 * built in unless created with `observe: false`; this turns it on then).
 * Idempotent: calling it again returns the same instance and adds no middleware.
 * It sends large notifications block-wise through the server's block-wise layer.
 */
export function enableObserve(server: ObserveHost, options?: ObserveServerOptions): ObserveServer {
  return server.enableObserve(options);
}
