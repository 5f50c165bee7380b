/**
 * The memory store: today's behaviour (nothing survives the process), the
 * library default. Useful as a reference implementation and in tests.
 */

import { Buffer } from 'node:buffer';
import { checkReserve, parseStoredSequence, sequenceStateName, storedSequence } from './sequence.js';
import type {
  ObserverRecord,
  ResourceRecord,
  StateStore,
  StoreChange,
  StoreKind,
  StoreSnapshot,
} from './types.js';

/** A StateStore in memory (nothing survives the process). */
export class MemoryStore implements StateStore {
  /** Always 'memory'. */
  readonly kind: StoreKind = 'memory';
  /** Always 'memory'. */
  readonly location = 'memory';
  private readonly resources = new Map<string, ResourceRecord>();
  private readonly counters = new Map<string, number>();
  private readonly observers = new Map<string, ObserverRecord>();
  private readonly state = new Map<string, Buffer>();
  /** Test hook: when set, `apply` rejects with it (a full disk, a lost database). */
  failWith: Error | undefined;

  async load(): Promise<StoreSnapshot> {
    return {
      resources: [...this.resources.values()].sort((a, b) => a.order - b.order),
      counters: [...this.counters],
      observers: [...this.observers.values()],
    };
  }

  async apply(changes: readonly StoreChange[]): Promise<void> {
    if (this.failWith !== undefined) throw this.failWith;
    for (const c of changes) {
      switch (c.op) {
        case 'putResource':
          this.resources.set(c.resource.path, c.resource);
          break;
        case 'deleteResource':
          this.resources.delete(c.path);
          break;
        case 'putCounter':
          this.counters.set(c.path, c.next);
          break;
        case 'deleteCounter':
          this.counters.delete(c.path);
          break;
        case 'putObserver':
          this.observers.set(c.observer.key, c.observer);
          break;
        case 'deleteObserver':
          this.observers.delete(c.key);
          break;
        case 'putState':
          this.state.set(c.name, Buffer.from(c.value));
          break;
        case 'deleteState':
          this.state.delete(c.name);
          break;
      }
    }
  }

  saveState(name: string, value: Uint8Array): Promise<void> {
    return this.apply([{ op: 'putState', name, value: Buffer.from(value) }]);
  }

  async loadState(name: string): Promise<Buffer | undefined> {
    return this.state.get(name);
  }

  deleteState(name: string): Promise<void> {
    return this.apply([{ op: 'deleteState', name }]);
  }

  async reserveSequence(name: string, count: number, atLeast = 0): Promise<number> {
    checkReserve(name, count, atLeast);
    if (this.failWith !== undefined) throw this.failWith;
    const key = sequenceStateName(name);
    const first = Math.max(parseStoredSequence(name, this.state.get(key)), atLeast);
    this.state.set(key, storedSequence(first + count));
    return first;
  }

  /** Nothing to release. */
  async close(): Promise<void> {}
}
