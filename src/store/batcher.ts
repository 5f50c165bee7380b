/**
 * Group commit: changes made during one turn of the event loop go to the
 * store as one transaction (one fsync), so the cost of durability is per
 * batch, not per request. While a batch commits, the next one collects.
 *
 * Each change may carry an `undo`: when a batch fails, it and every batch
 * queued after it (built on top of its state) are undone, newest first, and
 * their waiters get the error. The working copy in memory then equals what
 * the store has committed.
 */

import type { StateStore, StoreChange } from './types.js';

/** One transaction's worth of changes and the promise its writers wait on. */
interface Batch {
  changes: StoreChange[];
  /** Payload bytes of its changes (see GroupCommitter.pendingBytes). */
  bytes: number;
  undos: Array<() => void>;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch nobody waits for (observer updates) must not be an unhandled rejection.
  promise.catch(() => {});
  return { changes: [], bytes: 0, undos: [], promise, resolve, reject };
}

/** Most changes in one transaction; more go in the next one. */
const MAX_BATCH = 4096;

/** Bytes a change holds until it is committed. */
function changeBytes(c: StoreChange): number {
  switch (c.op) {
    case 'putResource':
      return c.resource.payload.length + c.resource.path.length + 64;
    case 'putState':
      return c.value.length + c.name.length + 32;
    case 'putObserver':
      return c.observer.options.length + c.observer.key.length + 64;
    default:
      return 64;
  }
}

/** Bounds of what waits to be committed (GroupCommitter). */
export interface GroupCommitterOptions {
  /** Most bytes of uncommitted changes (default 64 MiB): beyond, `busy` is true. */
  maxPendingBytes?: number;
}

/**
 * Collects changes into batches, one transaction each, at most one in flight
 * (see the module comment): `enqueue()` changes, `await flush()` before answering.
 */
export class GroupCommitter {
  private collecting: Batch | undefined;
  private inflight: Batch | undefined;
  private scheduled = false;
  private closed = false;
  /** Changes enqueued so far (a caller compares before and after to know whether it wrote). */
  enqueued = 0;
  /** Batches committed, and failed (for tests and stats). */
  committed = 0;
  /** Batches that failed (undone). */
  failed = 0;
  /** Called when a batch fails (after its undos ran). */
  onError: ((err: unknown) => void) | undefined;

  /** Bytes of changes not committed yet (collecting, queued, in flight). */
  pendingBytes = 0;
  private readonly maxPendingBytes: number;

  constructor(
    private readonly store: StateStore,
    options: GroupCommitterOptions = {},
  ) {
    this.maxPendingBytes = options.maxPendingBytes ?? 64 * 1024 * 1024;
  }

  /**
   * True while the uncommitted changes exceed `maxPendingBytes` (a store slower
   * than the writes): new writes should be refused (5.03) until it catches up.
   */
  get busy(): boolean {
    return this.pendingBytes > this.maxPendingBytes;
  }

  /** Adds a change to the batch being collected. */
  enqueue(change: StoreChange, undo?: () => void): void {
    if (this.closed) throw new Error('store closed');
    let b = this.collecting;
    if (b === undefined || b.changes.length >= MAX_BATCH) {
      if (b !== undefined) this.queue.push(b);
      b = newBatch();
      this.collecting = b;
    }
    b.changes.push(change);
    const bytes = changeBytes(change);
    b.bytes += bytes;
    this.pendingBytes += bytes;
    if (undo !== undefined) b.undos.push(undo);
    this.enqueued++;
    // As many as last time: no need to wait any longer.
    if (this.waiting !== undefined && b.changes.length >= this.lastSize) {
      clearTimeout(this.waiting);
      this.waiting = undefined;
      setImmediate(() => this.endWait());
    } else this.schedule();
  }

  /** Full batches waiting behind the one collecting. */
  private readonly queue: Batch[] = [];

  /** Resolves when everything enqueued so far is committed (rejects when it failed). */
  flush(): Promise<void> {
    const last = this.collecting ?? this.queue[this.queue.length - 1] ?? this.inflight;
    return last === undefined ? Promise.resolve() : last.promise;
  }

  /** Waits for what is pending, then refuses new changes. */
  async close(): Promise<void> {
    if (this.waiting !== undefined) this.endWait();
    try {
      await this.flush();
    } catch {}
    this.closed = true;
  }

  private schedule(): void {
    if (this.scheduled || this.inflight !== undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      // Clients that wait for their answers send the next writes together: a batch much
      // smaller than the last one waits 1 ms for the rest, instead of taking a commit of
      // its own and making the others wait for two (at most one wait per batch).
      const b = this.collecting;
      if (b !== undefined && b.changes.length * 2 < this.lastSize) {
        this.waiting = setTimeout(() => this.endWait(), 1);
        return;
      }
      this.scheduled = false;
      this.run();
    });
  }

  /** Size of the last batch committed (see schedule). */
  private lastSize = 0;
  /** The 1 ms wait for more changes, while it runs. */
  private waiting: NodeJS.Timeout | undefined;

  private endWait(): void {
    if (this.waiting !== undefined) clearTimeout(this.waiting);
    this.waiting = undefined;
    this.scheduled = false;
    this.run();
  }

  private run(): void {
    if (this.inflight !== undefined) return;
    const b = this.queue.shift() ?? this.collecting;
    if (b === undefined) return;
    if (b === this.collecting) this.collecting = undefined;
    this.inflight = b;
    this.lastSize = b.changes.length;
    this.store.apply(b.changes).then(
      () => {
        this.inflight = undefined;
        this.pendingBytes -= b.bytes;
        this.committed++;
        b.resolve();
        this.run();
      },
      (err: unknown) => {
        this.inflight = undefined;
        // Everything after it was built on its state: undo all, newest first.
        const failed = [b, ...this.queue.splice(0)];
        if (this.collecting !== undefined) failed.push(this.collecting);
        this.collecting = undefined;
        for (let i = failed.length - 1; i >= 0; i--) {
          const undos = failed[i]!.undos;
          for (let j = undos.length - 1; j >= 0; j--) {
            try {
              undos[j]!();
            } catch {}
          }
        }
        this.failed += failed.length;
        for (const f of failed) this.pendingBytes -= f.bytes;
        for (const f of failed) f.reject(err);
        this.onError?.(err);
      },
    );
  }
}
