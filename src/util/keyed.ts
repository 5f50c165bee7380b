/**
 * Per-key bookkeeping for the per-peer shares of bounded state (block-wise
 * transfers and cache entries, DTLS half-open handshakes, verified
 * addresses): a key whose count or group falls to zero is deleted, so the
 * bookkeeping itself holds nothing for peers that hold nothing.
 * No I/O, no CoAP or DTLS types: every layer may use it.
 */

/** A count per key. */
export class Tally<K> {
  private readonly counts = new Map<K, number>();

  /** The count of `key` (0 when absent). */
  of(key: K): number {
    return this.counts.get(key) ?? 0;
  }

  /** Adds `n` (default 1) to `key`'s count; returns the new count. */
  add(key: K, n = 1): number {
    const c = (this.counts.get(key) ?? 0) + n;
    if (c <= 0) this.counts.delete(key);
    else this.counts.set(key, c);
    return Math.max(c, 0);
  }

  /** Subtracts `n` (default 1); the key is deleted at zero. Returns the new count. */
  subtract(key: K, n = 1): number {
    return this.add(key, -n);
  }

  /** Number of keys with a non-zero count. */
  get size(): number {
    return this.counts.size;
  }

  clear(): void {
    this.counts.clear();
  }
}

/** Values grouped by key, each group in insertion order (oldest first). */
export class Groups<K, V> {
  private readonly groups = new Map<K, Set<V>>();

  /** The group of `key` (undefined when empty). */
  get(key: K): ReadonlySet<V> | undefined {
    return this.groups.get(key);
  }

  /** Size of `key`'s group (0 when empty). */
  sizeOf(key: K): number {
    return this.groups.get(key)?.size ?? 0;
  }

  /** Adds `value` to `key`'s group; returns the group's new size. */
  add(key: K, value: V): number {
    let g = this.groups.get(key);
    if (g === undefined) {
      g = new Set();
      this.groups.set(key, g);
    }
    g.add(value);
    return g.size;
  }

  /** Removes `value` from `key`'s group (deleted when empty); false when it was not there. */
  delete(key: K, value: V): boolean {
    const g = this.groups.get(key);
    if (g === undefined || !g.delete(value)) return false;
    if (g.size === 0) this.groups.delete(key);
    return true;
  }

  /** Number of non-empty groups. */
  get size(): number {
    return this.groups.size;
  }

  clear(): void {
    this.groups.clear();
  }
}
