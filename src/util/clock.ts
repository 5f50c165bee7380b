/**
 * The one source of time for every layer: a monotonic `now()` in
 * milliseconds and one-shot timers. Layers take a {@link Clock} (through
 * `EndpointOptions.clock` or a transport's options) instead of calling
 * `performance.now()`/`setTimeout` themselves, so that tests can drive
 * retransmission, lifetimes and handshake timers with a {@link VirtualClock}
 * and no real waiting. No I/O, no CoAP or DTLS types: every layer may use it.
 *
 * Cost: `realClock` is one object with fixed methods, so a call through it is
 * a monomorphic call that V8 inlines (measured: no difference on the
 * request path, see the notes of issue 17).
 */
// The global `performance` is an accessor: every use would call a getter; the module binding does not.
import { performance } from 'node:perf_hooks';

/** What `setTimer` returns: pass it to `clearTimer` (opaque). */
export type TimerHandle = object;

/** A monotonic clock with one-shot timers. */
export interface Clock {
  /** Milliseconds on a monotonic scale (only differences mean anything). */
  now(): number;
  /**
   * Calls `fn` once, `ms` milliseconds from now. With `unref` true the timer
   * does not keep a Node process alive (background sweeps and expiries); by
   * default it does (a retransmission or a request timeout must happen).
   */
  setTimer(fn: () => void, ms: number, unref?: boolean): TimerHandle;
  /** Cancels a timer (a handle already fired or cleared, or undefined, is ignored). */
  clearTimer(handle: TimerHandle | undefined): void;
}

/** The real clock: `performance.now()` and Node's timers. */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimer(fn: () => void, ms: number, unref = false): TimerHandle {
    const t = setTimeout(fn, ms);
    if (unref) t.unref();
    return t;
  },
  clearTimer(handle: TimerHandle | undefined): void {
    if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout);
  },
};

interface VirtualTimer {
  due: number;
  seq: number;
  fn: (() => void) | undefined;
}

/**
 * A clock for tests: time stands still until `advance(ms)` moves it, firing
 * due timers in order (by due time, then by creation), including timers that
 * the fired ones schedule within the advanced span. Between timers `advance`
 * lets promise callbacks and immediate I/O run (a few `setImmediate` turns),
 * so that async handlers and the in-memory transport keep up, but no real
 * time has to pass.
 */
export class VirtualClock implements Clock {
  private t: number;
  private seq = 0;
  private timers: VirtualTimer[] = [];

  /** @param start - the initial reading of `now()` (default 1000). */
  constructor(start = 1000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const timer: VirtualTimer = { due: this.t + Math.max(0, ms || 0), seq: this.seq++, fn };
    // Sorted by (due, seq): binary search for the insertion point.
    const list = this.timers;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.due <= timer.due) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, timer);
    return timer;
  }

  clearTimer(handle: TimerHandle | undefined): void {
    if (handle === undefined) return;
    const timer = handle as VirtualTimer;
    if (timer.fn === undefined) return;
    timer.fn = undefined;
    const i = this.timers.indexOf(timer);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.timers.length;
  }

  /** When the next timer is due (undefined when none is pending). */
  get nextDue(): number | undefined {
    return this.timers[0]?.due;
  }

  /**
   * Moves time forward by `ms`, synchronously firing every timer due by then
   * (in order; timers scheduled meanwhile fire too when due within the span).
   */
  advanceSync(ms: number): void {
    const target = this.t + ms;
    for (;;) {
      const next = this.timers[0];
      if (next === undefined || next.due > target) break;
      this.fire(next);
    }
    this.t = target;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order and letting
   * promise callbacks and immediate I/O settle after each one (and before
   * the first), so that work they start can schedule further timers.
   */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    await this.settle();
    for (;;) {
      const next = this.timers[0];
      if (next === undefined || next.due > target) break;
      this.fire(next);
      await this.settle();
    }
    this.t = target;
    await this.settle();
  }

  /**
   * Fires the next pending timer (moving time to it) and settles; returns
   * false when there is none.
   */
  async next(): Promise<boolean> {
    await this.settle();
    const next = this.timers[0];
    if (next === undefined) return false;
    this.fire(next);
    await this.settle();
    return true;
  }

  /**
   * Fires pending timers in order until none is left or `limit` were fired
   * (a periodic sweep re-arms forever: pass a limit or use `advance`).
   * Returns how many fired.
   */
  async runAll(limit = 10_000): Promise<number> {
    let n = 0;
    while (n < limit && (await this.next())) n++;
    return n;
  }

  /** Lets promise callbacks and immediate I/O run: `turns` setImmediate turns (no time passes). */
  async settle(turns = 4): Promise<void> {
    for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
  }

  private fire(timer: VirtualTimer): void {
    this.timers.shift();
    if (timer.due > this.t) this.t = timer.due;
    const fn = timer.fn;
    timer.fn = undefined;
    fn?.();
  }
}
