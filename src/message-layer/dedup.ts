/**
 * Deduplication memory (RFC 7252 §4.5) kept compact: every remembered
 * exchange is one Map entry (number -> number) plus a record in a ring
 * buffer holding the reply bytes — no per-exchange objects.
 *
 * Record layout at position p (little endian):
 *   f64 key | f64 expiresAt (ms) | u16 replyLength (0xffff = none) | reply bytes
 * Records are 8-byte aligned and never wrap: when one does not fit before
 * the physical end, a padding record (key = -padLength) fills the rest and
 * writing restarts at 0.
 *
 * Records expire in insertion order, so expiry pops from the tail. When the
 * ring reaches `maxBytes`, the oldest records are dropped early (counted in
 * `evictedEarly`), which bounds memory under any load.
 */

const HEADER = 18;
const NO_REPLY = 0xffff;

export interface DedupOptions {
  /** Upper bound of the ring buffer in bytes (default 64 MiB). */
  maxBytes?: number;
  /** Upper bound of remembered exchanges (default 2,000,000). */
  maxEntries?: number;
  /** Initial ring size (default 64 KiB). */
  initialBytes?: number;
}

export class DedupStore {
  private index = new Map<number, number>();
  private ring: Buffer;
  private mask: number;
  /** Absolute write position (monotonic). */
  private head = 0;
  /** Absolute position of the oldest live record. */
  private tail = 0;
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  evictedEarly = 0;

  constructor(options: DedupOptions = {}) {
    this.maxBytes = pow2AtLeast(options.maxBytes ?? 64 * 1024 * 1024);
    this.maxEntries = options.maxEntries ?? 2_000_000;
    const initial = Math.min(pow2AtLeast(options.initialBytes ?? 64 * 1024), this.maxBytes);
    this.ring = Buffer.alloc(initial);
    this.mask = initial - 1;
  }

  get size(): number {
    return this.index.size;
  }

  /** Bytes currently allocated for records (not counting the index Map). */
  get capacity(): number {
    return this.ring.length;
  }

  /**
   * Looks up a key. Returns undefined when unknown or expired, otherwise the
   * remembered reply (a view; may be null when the exchange had no reply).
   */
  lookup(key: number, now: number): Buffer | null | undefined {
    const pos = this.index.get(key);
    if (pos === undefined) return undefined;
    const off = pos & this.mask;
    if (this.ring.readDoubleLE(off + 8) <= now) return undefined;
    const len = this.ring.readUInt16LE(off + 16);
    if (len === NO_REPLY) return null;
    return this.ring.subarray(off + HEADER, off + HEADER + len);
  }

  /** Remembers `key` until `expiresAt` with an optional reply to replay. */
  remember(key: number, reply: Uint8Array | null, expiresAt: number, now: number): void {
    const len = reply === null ? 0 : reply.length;
    if (len >= NO_REPLY) return; // cannot happen for a datagram-sized reply; refuse silently
    this.expire(now);
    const need = align8(HEADER + len);
    if (2 * need > this.maxBytes) {
      // reserve() could never make room: drop any older record for the key instead of looping forever.
      this.index.delete(key);
      return;
    }
    this.reserve(need);
    let off = this.head & this.mask;
    if (off + need > this.ring.length) {
      // Pad to the physical end and start over at 0.
      const pad = this.ring.length - off;
      this.ring.writeDoubleLE(-pad, off);
      this.head += pad;
      this.reserve(need);
      off = this.head & this.mask;
    }
    const r = this.ring;
    r.writeDoubleLE(key, off);
    r.writeDoubleLE(expiresAt, off + 8);
    r.writeUInt16LE(reply === null ? NO_REPLY : len, off + 16);
    if (reply !== null && len > 0) r.set(reply, off + HEADER);
    this.index.set(key, this.head);
    this.head += need;
    while (this.index.size > this.maxEntries) this.dropOldest();
  }

  /** Pops expired records from the tail. */
  expire(now: number): void {
    while (this.tail < this.head) {
      const off = this.tail & this.mask;
      const key = this.ring.readDoubleLE(off);
      if (key < 0) {
        this.tail -= key;
        continue;
      }
      if (this.ring.readDoubleLE(off + 8) > now) return;
      this.dropOldest();
    }
  }

  clear(): void {
    this.index.clear();
    this.head = 0;
    this.tail = 0;
  }

  private dropOldest(): void {
    while (this.tail < this.head) {
      const off = this.tail & this.mask;
      const key = this.ring.readDoubleLE(off);
      if (key < 0) {
        this.tail -= key;
        continue;
      }
      const len = this.ring.readUInt16LE(off + 16);
      if (this.index.get(key) === this.tail) this.index.delete(key);
      this.tail += align8(HEADER + (len === NO_REPLY ? 0 : len));
      return;
    }
  }

  /** Makes room for `need` contiguous-or-wrapping bytes, growing or evicting. */
  private reserve(need: number): void {
    // Worst case a record needs `need` plus padding up to `need`.
    while (this.head - this.tail + 2 * need > this.ring.length) {
      if (this.ring.length < this.maxBytes) this.grow();
      else {
        this.dropOldest();
        this.evictedEarly++;
      }
    }
  }

  private grow(): void {
    const old = this.ring;
    const oldMask = this.mask;
    const next = Buffer.alloc(old.length * 2);
    const nextMask = next.length - 1;
    // Copy the live region [tail, head) keeping absolute positions valid.
    let p = this.tail;
    while (p < this.head) {
      const from = p & oldMask;
      const chunk = Math.min(old.length - from, this.head - p, next.length - (p & nextMask));
      old.copy(next, p & nextMask, from, from + chunk);
      p += chunk;
    }
    this.ring = next;
    this.mask = nextMask;
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function pow2AtLeast(n: number): number {
  let p = 1024;
  while (p < n) p *= 2;
  return p;
}
