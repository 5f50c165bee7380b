/**
 * Server side of Observe (RFC 7641), as a CoapServer middleware:
 *
 *   const observe = enableObserve(server);            // after enableBlockwise(server), if used
 *   server.get('/temp', () => String(temp), { obs: true });
 *   temp = 22; observe.notify('/temp');                // or observe.resource('/temp').changed()
 *
 * A GET with Observe=0 on an observable resource (route attribute `obs`, or
 * the `isObservable` option) registers the client, keyed by (peer endpoint,
 * token); a 2.xx answer carries the Observe option. `notify(path)` re-runs
 * each observer's own GET through the rest of the pipeline and sends the
 * result with a fresh 24-bit sequence number and the registration's token.
 * Notifications are NON unless configured (`confirmable`, every `conEvery`-th,
 * and at least once per `conIntervalMs`, 24 h by default). Observers go away
 * on RST, on a CON notification that times out, on GET with Observe=1, and
 * after an error notification (e.g. 4.04 when the resource is deleted).
 * While a CON notification is in flight, newer changes are coalesced: the
 * client gets the latest state when it acknowledges, never a queue (§4.5.2).
 */

import { Buffer } from 'node:buffer';
// The global `performance` is an accessor: every use would call a getter; the module binding does not.
import { performance } from 'node:perf_hooks';
import type { BlockwiseServer } from '../blockwise/server.js';
import type { CoapOption } from '../codec/message.js';
import { decodeUint, encodeUint, getOption, getUintOption } from '../codec/options.js';
import { Method, ResponseCode } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import { channels } from '../diagnostics.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import type { OutgoingResponse } from '../exchange/exchange-layer.js';
import type { CoapServer, Middleware, ServerRequest } from '../server/server.js';
import type { Peer } from '../transport/transport.js';

type Result = OutgoingResponse | null | Promise<OutgoingResponse | null>;

export interface ObserveServerOptions {
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
  /** Most observers at once (default 10 000); further registrations are answered without Observe. */
  maxObservers?: number;
  /** Block-wise layer: large notifications go out as their first block (RFC 7959 §3.4). */
  blockwise?: BlockwiseServer;
}

interface Observer {
  key: string;
  path: string;
  req: ServerRequest;
  next: () => Result;
  endpoint: Endpoint;
  token: Buffer;
  count: number;
  lastCon: number;
  inflight: boolean;
  dirty: boolean;
  removed: boolean;
  refresh: NodeJS.Timeout | undefined;
}

/** What the observe layer reports to `onEvent` listeners (tests, logs). */
export type ObserveEvent =
  | { type: 'registered' | 'deregistered'; path: string; peer: string }
  | {
      type: 'removed';
      path: string;
      peer: string;
      reason: 'reset' | 'timeout' | 'error' | 'deleted' | 'closed';
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

export class ObserveServer {
  private readonly observers = new Map<string, Observer>();
  private readonly byPath = new Map<string, Set<Observer>>();
  private seq = 1;
  private readonly opts: Required<Omit<ObserveServerOptions, 'blockwise'>> & { blockwise?: BlockwiseServer };
  /** Listener for registrations and removals. */
  onEvent: ((ev: ObserveEvent) => void) | undefined;
  readonly middleware: Middleware = (req, next) => this.handle(req, next);
  /** NON notifications by `peer|messageId`, to remove an observer that answers one with RST. */
  private readonly nonSent = new Map<string, Observer>();
  private rstListener: ((m: unknown) => void) | undefined;

  constructor(options: ObserveServerOptions = {}) {
    this.opts = {
      confirmable: options.confirmable ?? false,
      conEvery: options.conEvery ?? 20,
      conIntervalMs: options.conIntervalMs ?? DAY,
      refreshBeforeMaxAge: options.refreshBeforeMaxAge ?? true,
      isObservable: options.isObservable ?? ((req) => req.route?.attrs.obs === true),
      maxObservers: options.maxObservers ?? 10_000,
      ...(options.blockwise ? { blockwise: options.blockwise } : {}),
    };
  }

  /** Installs the middleware on a server (one ObserveServer may serve several servers). */
  install(server: CoapServer): this {
    server.use(this.middleware);
    return this;
  }

  /** Number of observers, of one path or in total. */
  observerCount(path?: string): number {
    return path === undefined ? this.observers.size : (this.byPath.get(path)?.size ?? 0);
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

  /** Forgets every observer (no messages sent). */
  close(): void {
    for (const o of [...this.observers.values()]) this.remove(o, 'closed');
    this.nonSent.clear();
    if (this.rstListener) channels.messageReceived.unsubscribe(this.rstListener);
    this.rstListener = undefined;
  }

  /**
   * §4.5: a client rejects an unwanted NON notification with RST. The message
   * layer drops a RST that matches no CON, so the observe layer watches the
   * received-message channel for RSTs matching the NON notifications it sent.
   */
  private trackNon(o: Observer, messageId: number): void {
    if (!this.rstListener) {
      this.rstListener = (m) => {
        const { peer, data } = m as { peer: Peer; data: Uint8Array };
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

  private handle(req: ServerRequest, next: (r?: ServerRequest) => Result): Result {
    const msg = req.message;
    if (msg.code !== Method.GET && msg.code !== Method.FETCH) return next();
    const raw = getOption(msg.options, OptionNumber.Observe);
    if (raw === undefined) return next();
    const value = raw.length > 3 ? -1 : decodeUint(raw);
    const key = `${req.peer.key}|${msg.token.toString('latin1')}`;
    if (value === 1) {
      const o = this.observers.get(key);
      if (o) {
        this.remove(o, undefined);
        this.onEvent?.({ type: 'deregistered', path: o.path, peer: req.peer.key });
      }
      return next();
    }
    if (value !== 0) return next();
    const rerun = () => next();
    const r = rerun();
    const finish = (res: OutgoingResponse | null): OutgoingResponse | null => {
      if (res === null) return null;
      const existing = this.observers.get(key);
      const ok = res.code >> 5 === 2;
      if (!ok || !this.opts.isObservable(req) || req.endpoint === undefined) {
        if (existing) this.remove(existing, 'error');
        return res;
      }
      if (!existing && this.observers.size >= this.opts.maxObservers) return res;
      // RFC 9175 §2.4: notifications would flood a spoofed address; plain-UDP peers prove theirs with Echo first.
      const guard = req.amplification;
      if (guard !== undefined && !guard.trusted(msg, req.peer)) return guard.challenge(req.peer);
      if (existing) this.remove(existing, undefined);
      const o: Observer = {
        key,
        path: req.path,
        req,
        next: rerun,
        endpoint: req.endpoint,
        token: Buffer.from(msg.token),
        count: 0,
        lastCon: performance.now(),
        inflight: false,
        dirty: false,
        removed: false,
        refresh: undefined,
      };
      this.observers.set(key, o);
      let set = this.byPath.get(o.path);
      if (!set) {
        set = new Set();
        this.byPath.set(o.path, set);
      }
      set.add(o);
      this.onEvent?.({ type: 'registered', path: o.path, peer: req.peer.key });
      this.scheduleRefresh(o, res);
      return withObserve(res, this.nextSeq());
    };
    return r instanceof Promise ? r.then(finish) : finish(r);
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) & 0xffffff;
    return this.seq;
  }

  private remove(
    o: Observer,
    reason: 'reset' | 'timeout' | 'error' | 'deleted' | 'closed' | undefined,
  ): void {
    if (o.removed) return;
    o.removed = true;
    if (o.refresh) clearTimeout(o.refresh);
    if (this.observers.get(o.key) === o) this.observers.delete(o.key);
    const set = this.byPath.get(o.path);
    if (set) {
      set.delete(o);
      if (set.size === 0) this.byPath.delete(o.path);
    }
    if (reason) this.onEvent?.({ type: 'removed', path: o.path, peer: o.req.peer.key, reason });
  }

  // ---- notifications -----------------------------------------------------

  private notifyOne(o: Observer): void {
    if (o.removed) return;
    if (o.inflight) {
      // §4.5.2: a CON notification is still unacknowledged; send the newest state when it is.
      o.dirty = true;
      return;
    }
    let r: Result;
    try {
      r = o.next();
    } catch {
      r = { code: ResponseCode.InternalServerError };
    }
    const go = (res: OutgoingResponse | null) => {
      if (res !== null && !o.removed) this.send(o, res, true);
    };
    if (r instanceof Promise) r.then(go, () => go({ code: ResponseCode.InternalServerError }));
    else go(r);
  }

  private send(o: Observer, res: OutgoingResponse, live: boolean): void {
    const ok = res.code >> 5 === 2;
    const now = performance.now();
    o.count++;
    const confirmable =
      this.opts.confirmable ||
      (this.opts.conEvery > 0 && o.count % this.opts.conEvery === 0) ||
      now - o.lastCon >= this.opts.conIntervalMs;
    let out: OutgoingResponse = ok ? withObserve(res, this.nextSeq()) : stripObserve(res);
    if (!ok && live) this.remove(o, 'error');
    if (ok && this.opts.blockwise) out = this.opts.blockwise.notificationBlock(o.req, out);
    if (ok) this.scheduleRefresh(o, res);
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
              onAck: () => {
                o.inflight = false;
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
      if (!confirmable && ok) this.trackNon(o, messageId);
    } catch {
      // The endpoint is closed: nobody to notify any more.
      this.remove(o, 'closed');
    }
  }

  private scheduleRefresh(o: Observer, res: OutgoingResponse): void {
    if (!this.opts.refreshBeforeMaxAge) return;
    if (o.refresh) clearTimeout(o.refresh);
    const maxAge = getUintOption(res.options ?? [], OptionNumber.MaxAge) ?? 60;
    if (maxAge === 0) return;
    // A little before the representation goes stale (§4.3.1), at least 1 s after now.
    const ms = Math.max(1000, maxAge * 1000 - Math.min(5000, maxAge * 100));
    o.refresh = setTimeout(() => {
      o.refresh = undefined;
      this.notifyOne(o);
    }, ms);
    o.refresh.unref();
  }
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
 * Adds Observe to a server. Install after `enableBlockwise(server)` and pass
 * its result as `blockwise` so large notifications are sent block-wise.
 */
export function enableObserve(server: CoapServer, options?: ObserveServerOptions): ObserveServer {
  return new ObserveServer(options).install(server);
}
