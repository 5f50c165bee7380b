/**
 * Client side of Observe (RFC 7641):
 *
 *   const obs = client.observe('coap://host/temp');
 *   for await (const n of obs) {              // CoapResponse, n.observe = sequence number
 *     console.log(n.observe, n.text());
 *     if (done) break;                        // deregisters (GET with Observe=1)
 *   }
 *   // or: await obs.cancel(); or: await using obs = client.observe(...)
 *
 * Stale notifications are dropped (§3.4: 24-bit sequence numbers compared
 * with the 128-second rule); when Max-Age plus a margin passes without a
 * notification, the client re-registers with the same token (§3.3.1).
 * Notifications larger than one block are completed with GET Block2
 * requests without Observe (RFC 7959 §2.6), one download at a time: a newer
 * notification cancels the download of the previous one (only the latest state
 * matters, RFC 7641 §1.3), the blocks must carry the notification's ETag (§2.4),
 * and each body is bounded by `maxBodySize`. Notifications the consumer has not
 * read yet are bounded too (`maxQueue`, `maxQueueBytes`): the oldest are dropped.
 */

import { Buffer } from 'node:buffer';
import { blockSizeToSzx, download, type SendFn } from '../blockwise/client.js';
import { MAX_SZX } from '../blockwise/common.js';
import { CoapResponse } from '../client/response.js';
import type { CoapOption } from '../codec/message.js';
import { decodeUint, encodeBlock, encodeUint, getOption, getUintOption } from '../codec/options.js';
import { OptionNumber } from '../constants/options.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import { ClosedError, TimeoutError } from '../errors.js';
import type { ClientExchange, InboundResponse } from '../exchange/exchange-layer.js';
import { randomToken } from '../exchange/tokens.js';
import type { Peer } from '../transport/transport.js';
import type { TimerHandle } from '../util/clock.js';

export interface ObserveOptions {
  /** Extra options for the registration (Accept, Uri-Query via the URI, ...). */
  options?: CoapOption[];
  /** Register with a CON (default) or NON request. */
  confirmable?: boolean;
  /**
   * Time limit for the registration response in ms (default 93 s), and for completing the
   * blocks of one notification (one deadline for all of them; without it each block gets
   * 93 s and a newer notification cancels the download); deregistration waits at most 5 s.
   */
  timeout?: number;
  /** Re-register when Max-Age plus this margin (ms) passes without a notification (default 5000). */
  reregisterMarginMs?: number;
  /**
   * Notifications kept for a consumer that does not read; the oldest are dropped first
   * (RFC 7641 is about the latest state) (default 64).
   */
  maxQueue?: number;
  /**
   * Payload bytes kept for a consumer that does not read (default 16 MiB); the oldest
   * notifications are dropped first, the newest is always kept.
   */
  maxQueueBytes?: number;
  /**
   * Largest body of one notification completed block-wise, in bytes (default 16 MiB):
   * over it the observation fails with BodyTooLargeError.
   */
  maxBodySize?: number;
  /** How `cancel()` and `break` end the observation: 'proactive' (GET Observe=1, default) or 'reactive' (RST the next notification). */
  cancel?: 'proactive' | 'reactive';
  /** Block size for the follow-up requests of large notifications (default 1024). */
  blockSize?: number;
  /** Use this token instead of a random 8-byte one. */
  token?: Uint8Array;
  signal?: AbortSignal;
}

/** Where an observation is sent; CoapClient builds it from a URI. */
export interface ObserveTarget {
  endpoint: Endpoint;
  peer: Peer;
  /** Code (GET or FETCH) and options of the request, without Observe. */
  code: number;
  options: CoapOption[];
  payload?: Buffer;
}

const HALF = 1 << 23;

/** Default of `maxQueueBytes`: 16 MiB of unread notification payloads. */
const DEFAULT_MAX_QUEUE_BYTES = 16 << 20;

/** §3.4: is a notification with sequence `v2` received at `t2` newer than (`v1`, `t1`)? */
export function isFresher(v1: number, t1: number, v2: number, t2: number): boolean {
  return (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF) || t2 > t1 + 128_000;
}

type Waiter = { resolve(r: IteratorResult<CoapResponse>): void; reject(e: unknown): void };

/**
 * One observation: an async iterator of notifications (CoapResponse with
 * `.observe`), with `cancel()` and `Symbol.asyncDispose`.
 */
export class Observation implements AsyncIterableIterator<CoapResponse> {
  readonly token: Buffer;
  private readonly queue: CoapResponse[] = [];
  /** Payload bytes held in `queue`. */
  private queueBytes = 0;
  /** Cancels the block download of the latest notification (one at a time). */
  private downloading: AbortController | undefined;
  private readonly waiters: Waiter[] = [];
  private error: unknown;
  private ended = false;
  private cancelling: Promise<void> | undefined;
  private exchange: ClientExchange | undefined;
  private target: ObserveTarget | undefined;
  private lastSeq = -1;
  private lastTime = 0;
  /** Re-registration when Max-Age runs out, on the endpoint's clock. */
  private reregisterTimer: TimerHandle | undefined;
  private registeredResolve!: (r: CoapResponse) => void;
  private registeredReject!: (e: unknown) => void;
  private gotFirst = false;
  /** Resolves with the registration response (the first notification). */
  readonly registered: Promise<CoapResponse>;
  /** Number of notifications received (including stale ones that were dropped). */
  received = 0;
  /** Number of notifications dropped as stale (reordered). */
  stale = 0;
  /** Number of re-registrations sent because Max-Age ran out. */
  reregistrations = 0;
  /** Number of notifications dropped unread because the queue was full (`maxQueue`, `maxQueueBytes`). */
  dropped = 0;
  private readonly opts: ObserveOptions;

  constructor(target: Promise<ObserveTarget>, opts: ObserveOptions = {}) {
    this.opts = opts;
    this.token = opts.token ? Buffer.from(opts.token) : randomToken(8);
    this.registered = new Promise((res, rej) => {
      this.registeredResolve = res;
      this.registeredReject = rej;
    });
    this.registered.catch(() => undefined);
    if (opts.signal) {
      const signal = opts.signal;
      if (signal.aborted) queueMicrotask(() => void this.cancel());
      else signal.addEventListener('abort', () => void this.cancel(), { once: true });
    }
    target.then(
      (t) => {
        this.target = t;
        if (!this.ended) this.register();
      },
      (err) => this.fail(err),
    );
  }

  /** Ends the observation (deregisters unless `cancel: 'reactive'`). Never throws. */
  cancel(): Promise<void> {
    if (this.cancelling) return this.cancelling;
    this.cancelling = this.doCancel();
    return this.cancelling;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cancel();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<CoapResponse>> {
    const v = this.queue.shift();
    if (v !== undefined) {
      this.queueBytes -= v.payload.length;
      return Promise.resolve({ value: v, done: false });
    }
    if (this.error !== undefined) {
      const e = this.error;
      this.error = undefined;
      this.ended = true;
      return Promise.reject(e);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async return(): Promise<IteratorResult<CoapResponse>> {
    await this.cancel();
    return { value: undefined, done: true };
  }

  // ---- internals ---------------------------------------------------------

  private register(): void {
    const t = this.target!;
    const options = [
      ...t.options.filter((o) => o.number !== OptionNumber.Observe),
      { number: OptionNumber.Observe, value: encodeUint(0) },
    ];
    const szx = blockSizeToSzx(this.opts.blockSize);
    if (szx < MAX_SZX && !options.some((o) => o.number === OptionNumber.Block2)) {
      options.push({ number: OptionNumber.Block2, value: encodeBlock(0, false, szx) });
    }
    try {
      this.exchange = t.endpoint.request(
        t.peer,
        {
          code: t.code,
          options,
          token: this.token,
          confirmable: this.opts.confirmable ?? true,
          ...(t.payload ? { payload: t.payload } : {}),
        },
        {
          onResponse: (r) => this.onResponse(r),
          onError: (e) => this.fail(e),
          ...(this.opts.timeout !== undefined ? { timeoutMs: this.opts.timeout } : {}),
        },
      );
    } catch (err) {
      this.fail(err);
    }
  }

  private onResponse(r: InboundResponse): boolean {
    if (this.ended) return true;
    const msg = r.message;
    const raw = getOption(msg.options, OptionNumber.Observe);
    const res = new CoapResponse(msg, r.peer, r.piggybacked, r.rttMs);
    this.received++;
    if (msg.code >> 5 !== 2 || raw === undefined) {
      // An error ends the observation (§3.2); so does a response without Observe
      // (the server does not support observing this resource).
      if (!this.gotFirst) {
        this.gotFirst = true;
        this.registeredResolve(res);
      }
      this.push(res);
      this.end();
      return true;
    }
    const seq = raw.length > 3 ? 0 : decodeUint(raw);
    // RFC 7641 §3.4's 128-second rule, on the endpoint's clock.
    const now = this.target!.endpoint.clock.now();
    if (this.lastSeq >= 0 && !isFresher(this.lastSeq, this.lastTime, seq, now)) {
      this.stale++;
      return false;
    }
    this.lastSeq = seq;
    this.lastTime = now;
    this.armReregistration(getUintOption(msg.options, OptionNumber.MaxAge) ?? 60);
    // A fresher notification supersedes the one whose blocks are still being fetched.
    this.stopDownload();
    const b2raw = getOption(msg.options, OptionNumber.Block2);
    if (b2raw !== undefined && (b2raw[b2raw.length - 1]! & 0x08) !== 0) {
      void this.completeBlocks(r, res, seq);
      return false;
    }
    this.deliver(res);
    return false;
  }

  private stopDownload(): void {
    if (this.downloading === undefined) return;
    this.downloading.abort();
    this.downloading = undefined;
  }

  private async completeBlocks(first: InboundResponse, head: CoapResponse, seq: number): Promise<void> {
    const t = this.target!;
    const ac = new AbortController();
    this.downloading = ac;
    const signal = ac.signal;
    const total = this.opts.timeout;
    const clock = t.endpoint.clock;
    const deadline = total !== undefined ? clock.now() + total : undefined;
    const send: SendFn = (req) =>
      new Promise((resolve, reject) => {
        const left = deadline !== undefined ? deadline - clock.now() : undefined;
        if (left !== undefined && left <= 0) {
          reject(new TimeoutError(`the blocks of a notification did not arrive within ${total} ms`));
          return;
        }
        t.endpoint.request(
          t.peer,
          { code: t.code, options: req.options, ...(t.payload ? { payload: t.payload } : {}) },
          {
            onResponse: (x) => {
              resolve(x);
              return true;
            },
            onError: reject,
            signal,
            ...(left !== undefined ? { timeoutMs: left } : {}),
          },
        );
      });
    try {
      const result = await download(
        send,
        { code: t.code, options: t.options },
        first,
        blockSizeToSzx(this.opts.blockSize),
        {
          signal,
          ...(this.opts.maxBodySize !== undefined ? { maxBodySize: this.opts.maxBodySize } : {}),
        },
      );
      if (this.ended || signal.aborted || seq !== this.lastSeq) return;
      head.payload = result.payload;
      this.deliver(head);
    } catch (err) {
      // A newer notification cancelled this transfer (or superseded it): not an error.
      if (!signal.aborted && seq === this.lastSeq && !this.ended) this.fail(err);
    } finally {
      if (this.downloading === ac) this.downloading = undefined;
    }
  }

  private deliver(res: CoapResponse): void {
    if (!this.gotFirst) {
      this.gotFirst = true;
      this.registeredResolve(res);
    }
    this.push(res);
  }

  private push(res: CoapResponse): void {
    const w = this.waiters.shift();
    if (w) {
      w.resolve({ value: res, done: false });
      return;
    }
    this.queue.push(res);
    this.queueBytes += res.payload.length;
    const max = this.opts.maxQueue ?? 64;
    const maxBytes = this.opts.maxQueueBytes ?? DEFAULT_MAX_QUEUE_BYTES;
    // Drop the oldest: an observer wants the latest state (RFC 7641 §1.3); keep the newest.
    while (this.queue.length > max || (this.queueBytes > maxBytes && this.queue.length > 1)) {
      this.queueBytes -= this.queue.shift()!.payload.length;
      this.dropped++;
    }
  }

  private armReregistration(maxAge: number): void {
    this.clearReregister();
    const ms = maxAge * 1000 + (this.opts.reregisterMarginMs ?? 5000);
    this.reregisterTimer = this.target!.endpoint.clock.setTimer(() => {
      this.reregisterTimer = undefined;
      if (this.ended || this.cancelling) return;
      this.reregistrations++;
      this.register();
    }, ms);
    // Not unref'd: an active observation keeps the process alive (like a pending request).
  }

  private clearReregister(): void {
    if (this.reregisterTimer === undefined) return;
    this.target?.endpoint.clock.clearTimer(this.reregisterTimer);
    this.reregisterTimer = undefined;
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.stopDownload();
    this.clearReregister();
    if (!this.gotFirst) {
      this.gotFirst = true;
      this.registeredReject(new ClosedError('observation ended before the first notification'));
    }
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
  }

  private fail(err: unknown): void {
    if (this.ended) return;
    this.exchange?.cancel();
    this.stopDownload();
    if (!this.gotFirst) {
      this.gotFirst = true;
      this.registeredReject(err);
    }
    const w = this.waiters.shift();
    if (w) w.reject(err);
    else this.error = err;
    for (const x of this.waiters.splice(0)) x.reject(err);
    this.clearReregister();
    if (this.error === undefined) this.ended = true;
  }

  private async doCancel(): Promise<void> {
    this.clearReregister();
    const t = this.target;
    const wasEnded = this.ended;
    this.end();
    this.queue.length = 0;
    this.queueBytes = 0;
    if (wasEnded || t === undefined) {
      this.exchange?.cancel();
      return;
    }
    if ((this.opts.cancel ?? 'proactive') === 'reactive') {
      this.exchange?.cancel();
      return;
    }
    // Proactive (§3.6): GET with Observe=1 and the same token; the pending exchange is replaced.
    await new Promise<void>((resolve) => {
      try {
        const options = [
          ...t.options.filter((o) => o.number !== OptionNumber.Observe),
          { number: OptionNumber.Observe, value: encodeUint(1) },
        ];
        this.exchange = t.endpoint.request(
          t.peer,
          { code: t.code, options, token: this.token, ...(t.payload ? { payload: t.payload } : {}) },
          {
            onResponse: (r) => {
              // A notification racing the deregistration still carries Observe: keep waiting.
              if (
                getOption(r.message.options, OptionNumber.Observe) !== undefined &&
                r.message.code >> 5 === 2
              )
                return false;
              resolve();
              return true;
            },
            onError: () => resolve(),
            timeoutMs: Math.min(this.opts.timeout ?? 5000, 5000),
          },
        );
      } catch {
        resolve();
      }
    });
  }
}
