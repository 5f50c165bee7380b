/**
 * Folds a batch of changes into the final state per key (the last change to a
 * key wins): what a transaction must write, in any order. Lets a store write
 * a batch with a few multi-row statements.
 */

import type { Buffer } from 'node:buffer';
import type { ObserverRecord, ResourceRecord, StoreChange } from './types.js';

export interface CoalescedBatch {
  putResources: ResourceRecord[];
  /** Paths among putResources that must not exist yet (POST entries). */
  createOnly: Set<string>;
  deleteResources: string[];
  putCounters: Array<[string, number]>;
  deleteCounters: string[];
  putObservers: ObserverRecord[];
  deleteObservers: string[];
  putState: Array<[string, Buffer]>;
  deleteState: string[];
}

export function coalesce(changes: readonly StoreChange[]): CoalescedBatch {
  const res = new Map<string, ResourceRecord | null>();
  const cnt = new Map<string, number | null>();
  const obs = new Map<string, ObserverRecord | null>();
  const st = new Map<string, Buffer | null>();
  const createOnly = new Set<string>();
  for (const c of changes) {
    switch (c.op) {
      case 'putResource':
        // Created by this batch (first change to the key): the row must not exist before it.
        if (c.create === true && !res.has(c.resource.path)) createOnly.add(c.resource.path);
        res.set(c.resource.path, c.resource);
        break;
      case 'deleteResource':
        res.set(c.path, null);
        break;
      case 'putCounter':
        cnt.set(c.path, c.next);
        break;
      case 'deleteCounter':
        cnt.set(c.path, null);
        break;
      case 'putObserver':
        obs.set(c.observer.key, c.observer);
        break;
      case 'deleteObserver':
        obs.set(c.key, null);
        break;
      case 'putState':
        st.set(c.name, c.value);
        break;
      case 'deleteState':
        st.set(c.name, null);
        break;
    }
  }
  const out: CoalescedBatch = {
    putResources: [],
    createOnly,
    deleteResources: [],
    putCounters: [],
    deleteCounters: [],
    putObservers: [],
    deleteObservers: [],
    putState: [],
    deleteState: [],
  };
  for (const [k, v] of res) {
    if (v === null) {
      out.deleteResources.push(k);
      createOnly.delete(k);
    } else out.putResources.push(v);
  }
  for (const [k, v] of cnt) v === null ? out.deleteCounters.push(k) : out.putCounters.push([k, v]);
  for (const [k, v] of obs) v === null ? out.deleteObservers.push(k) : out.putObservers.push(v);
  for (const [k, v] of st) v === null ? out.deleteState.push(k) : out.putState.push([k, v]);
  return out;
}
