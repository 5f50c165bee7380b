/**
 * Deduplication memory (RFC 7252 §4.5) kept compact: every remembered
 * exchange is one 8-byte slot in an open-addressing hash table held in one
 * Uint32Array (u32 tag = the key's low 32 bits, u32 ring position; linear
 * probing on the tag's hash, backward-shift deletion, load <= 1/2) plus a
 * record in a ring buffer holding the full key and the reply bytes — no
 * per-exchange objects, nothing for the garbage collector to trace. A tag
 * match is confirmed against the key in the record, so keys whose low 32
 * bits collide stay distinct; tag and position share a cache line, so a probe
 * costs one memory access. A 2.05 piggybacked reply with a 4-byte token and
 * a 5-byte payload costs 32 B of ring plus at most 16 B of table (48 B per
 * exchange).
 *
 * Record layout at position p (native byte order, read through typed-array
 * views of the ring: no bounds-checked Buffer.read* calls on the hot path):
 *   f64 key | f64 expiresAt (ms) | u16 replyLength (0xffff = none) | reply bytes
 * Records are 8-byte aligned and never wrap: when one does not fit before
 * the physical end, a padding record (key = -padLength) fills the rest and
 * writing restarts at 0.
 *
 * Records expire in insertion order, so expiry pops from the tail. When the
 * ring reaches `maxBytes`, the oldest records are dropped early (counted in
 * `evictedEarly`), which bounds memory under any load.
 *
 * The default bounds (1,000,000 exchanges, 32 MiB of ring, so at most
 * 16 MiB of table + 32 MiB of ring) are a deliberate trade-off: the RFC's
 * EXCHANGE_LIFETIME of 247 s at 50,000 requests/s would need more than
 * 12 million entries (~700 MB). At the measured maximum rate of one
 * process (~90k requests/s on loopback) the bounds keep at least the
 * last ~11 s of exchanges; at 22k requests/s and below they keep the whole
 * MAX_TRANSMIT_SPAN (45 s) within which a peer retransmits a CON, and at
 * 4k requests/s and below the whole EXCHANGE_LIFETIME. Raise `maxEntries`
 * and `maxBytes` to widen the window at the cost of memory.
 */

import { Buffer } from 'node:buffer';
import { randomInt } from 'node:crypto';

const HEADER = 18;
const NO_REPLY = 0xffff;
/** Set in a slot's position word when the slot is in use (positions are kept mod 2^31). */
const USED = 0x80000000;
const MIN_SLOTS = 1024;

export interface DedupOptions {
  /** Upper bound of the ring buffer in bytes (default 32 MiB). */
  maxBytes?: number;
  /** Upper bound of remembered exchanges (default 1,000,000). */
  maxEntries?: number;
  /** Initial ring size (default 64 KiB). */
  initialBytes?: number;
}

export class DedupStore {
  /**
   * Hash table, two words per slot: [2i] the key's low 32 bits (its tag),
   * [2i + 1] USED | (absolute ring position / 8, mod 2^31) of the newest record
   * for that key, or 0 for a free slot.
   */
  private table: Uint32Array;
  /** Slot count - 1. */
  private tmask: number;
  private count = 0;
  private ring: Buffer;
  /** Views of `ring`: f64 at offset/8 (key, expiresAt), u16 at offset/2 (replyLength). */
  private f64: Float64Array;
  private u16: Uint16Array;
  private mask: number;
  /** Absolute write position (monotonic). */
  private head = 0;
  /** Absolute position of the oldest live record. */
  private tail = 0;
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly initialBytes: number;
  evictedEarly = 0;
  /** Random per store, so that peers cannot aim Message IDs at one probe run (hash flooding). */
  private readonly seed = randomInt(0x7fffffff);

  constructor(options: DedupOptions = {}) {
    this.maxBytes = pow2AtLeast(options.maxBytes ?? 32 * 1024 * 1024);
    this.maxEntries = options.maxEntries ?? 1_000_000;
    this.table = new Uint32Array(2 * MIN_SLOTS);
    this.tmask = MIN_SLOTS - 1;
    const initial = Math.min(pow2AtLeast(options.initialBytes ?? 64 * 1024), this.maxBytes);
    this.initialBytes = initial;
    this.ring = Buffer.alloc(initial);
    this.f64 = new Float64Array(this.ring.buffer, this.ring.byteOffset, initial / 8);
    this.u16 = new Uint16Array(this.ring.buffer, this.ring.byteOffset, initial / 2);
    this.mask = initial - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Bytes currently allocated for records (not counting the hash table). */
  get capacity(): number {
    return this.ring.length;
  }

  /** Bytes currently allocated for the hash table. */
  get tableBytes(): number {
    return this.table.byteLength;
  }

  /**
   * Looks up a key. Returns undefined when unknown or expired, otherwise the
   * remembered reply (a view; may be null when the exchange had no reply).
   */
  lookup(key: number, now: number): Buffer | null | undefined {
    const i = this.find(key);
    if (i < 0) return undefined;
    const off = this.recordOffset(i);
    if (this.f64[(off >> 3) + 1]! <= now) return undefined;
    const len = this.u16[(off >> 1) + 8]!;
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
      const i = this.find(key);
      if (i >= 0) this.removeSlot(i);
      return;
    }
    this.reserve(need);
    let off = this.head & this.mask;
    if (off + need > this.ring.length) {
      // Pad to the physical end and start over at 0.
      const pad = this.ring.length - off;
      this.f64[off >> 3] = -pad;
      this.head += pad;
      this.reserve(need);
      off = this.head & this.mask;
    }
    const f = off >> 3;
    this.f64[f] = key;
    this.f64[f + 1] = expiresAt;
    this.u16[(off >> 1) + 8] = reply === null ? NO_REPLY : len;
    if (reply !== null && len > 0) {
      const r = this.ring;
      const o = off + HEADER;
      // A loop beats TypedArray#set's call overhead for the usual short reply.
      if (len <= 64) for (let k = 0; k < len; k++) r[o + k] = reply[k]!;
      else r.set(reply, o);
    }
    this.set(key, this.head);
    this.head += need;
    while (this.count > this.maxEntries) this.dropOldest();
  }

  /** Pops expired records from the tail. */
  expire(now: number): void {
    for (let off = this.oldest(); off !== -1; off = this.oldest()) {
      if (this.f64[(off >> 3) + 1]! > now) return;
      this.dropOldest();
    }
  }

  /** Ring offset of the oldest live record (padding skipped), or -1 when empty. */
  private oldest(): number {
    while (this.tail < this.head) {
      const off = this.tail & this.mask;
      const key = this.f64[off >> 3]!;
      if (key >= 0) return off;
      this.tail -= key; // padding record: key = -padLength
    }
    return -1;
  }

  /**
   * Gives memory back after a burst: when the live records fill at most an
   * eighth of the ring (or the table is at most 1/8 full), they are copied
   * into a ring of at least 4x their size (not below the initial size) and a
   * table sized for them; expired records are dropped on the way. O(live
   * records); meant for a periodic sweep, not the per-datagram path.
   * Returns true when it reallocated.
   */
  shrink(now: number): boolean {
    this.expire(now);
    const live = this.head - this.tail;
    const ringOversized = this.ring.length > this.initialBytes && live * 8 <= this.ring.length;
    const tableOversized = this.tmask + 1 > MIN_SLOTS && this.count * 16 <= this.tmask + 1;
    if (!ringOversized && !tableOversized) return false;
    const keys: number[] = [];
    const expires: number[] = [];
    const replies: Array<Buffer | null> = [];
    let p = this.tail;
    while (p < this.head) {
      const off = p & this.mask;
      const key = this.f64[off >> 3]!;
      if (key < 0) {
        p -= key; // padding
        continue;
      }
      const len = this.u16[(off >> 1) + 8]!;
      const expiresAt = this.f64[(off >> 3) + 1]!;
      const i = this.find(key);
      // Only the newest record of a key is live (older ones were replaced).
      if (expiresAt > now && i >= 0 && this.table[2 * i + 1] === posWord(p)) {
        keys.push(key);
        expires.push(expiresAt);
        replies.push(
          len === NO_REPLY ? null : Buffer.from(this.ring.subarray(off + HEADER, off + HEADER + len)),
        );
      }
      p += align8(HEADER + (len === NO_REPLY ? 0 : len));
    }
    let size = this.initialBytes;
    while (size < 4 * live && size < this.maxBytes) size *= 2;
    if (size > this.ring.length) size = this.ring.length;
    let slots = MIN_SLOTS;
    while (2 * keys.length > slots) slots *= 2;
    this.ring = Buffer.alloc(size);
    this.f64 = new Float64Array(this.ring.buffer, this.ring.byteOffset, size / 8);
    this.u16 = new Uint16Array(this.ring.buffer, this.ring.byteOffset, size / 2);
    this.mask = size - 1;
    this.table = new Uint32Array(2 * slots);
    this.tmask = slots - 1;
    this.count = 0;
    this.head = 0;
    this.tail = 0;
    for (let k = 0; k < keys.length; k++) this.remember(keys[k]!, replies[k]!, expires[k]!, now);
    return true;
  }

  clear(): void {
    this.table = new Uint32Array(2 * MIN_SLOTS);
    this.tmask = MIN_SLOTS - 1;
    this.count = 0;
    this.head = 0;
    this.tail = 0;
  }

  private dropOldest(): void {
    const off = this.oldest();
    if (off === -1) return;
    const key = this.f64[off >> 3]!;
    const len = this.u16[(off >> 1) + 8]!;
    const i = this.find(key);
    if (i >= 0 && this.table[2 * i + 1] === posWord(this.tail)) this.removeSlot(i);
    this.tail += align8(HEADER + (len === NO_REPLY ? 0 : len));
  }

  /** Ring offset of the record slot `i` points at. */
  private recordOffset(i: number): number {
    return ((this.table[2 * i + 1]! & ~USED) * 8) & this.mask;
  }

  /** Slot of `key`, or -1. */
  private find(key: number): number {
    const t = this.table;
    const m = this.tmask;
    const tag = key >>> 0;
    let i = home(tag, this.seed) & m;
    for (;;) {
      const w = t[2 * i + 1]!;
      if (w === 0) return -1;
      // The tag is the key's low 32 bits; the record holds the whole key.
      if (t[2 * i] === tag && this.f64[this.recordOffset(i) >> 3] === key) return i;
      i = (i + 1) & m;
    }
  }

  /** Points `key` at the record at absolute ring position `pos` (the record's key is already written). */
  private set(key: number, pos: number): void {
    if (2 * (this.count + 1) > this.tmask + 1) this.growTable();
    const i = this.find(key);
    if (i >= 0) {
      this.table[2 * i + 1] = posWord(pos);
      return;
    }
    const t = this.table;
    const m = this.tmask;
    const tag = key >>> 0;
    let j = home(tag, this.seed) & m;
    while (t[2 * j + 1] !== 0) j = (j + 1) & m;
    t[2 * j] = tag;
    t[2 * j + 1] = posWord(pos);
    this.count++;
  }

  /** Frees slot `i`, shifting later members of its probe run back (no tombstones). */
  private removeSlot(i: number): void {
    const t = this.table;
    const m = this.tmask;
    let j = i;
    for (;;) {
      j = (j + 1) & m;
      if (t[2 * j + 1] === 0) break;
      const h = home(t[2 * j]!, this.seed) & m;
      // Move slot j into the hole at i unless its home lies cyclically in (i, j].
      if (i <= j ? h <= i || h > j : h <= i && h > j) {
        t[2 * i] = t[2 * j]!;
        t[2 * i + 1] = t[2 * j + 1]!;
        i = j;
      }
    }
    t[2 * i] = 0;
    t[2 * i + 1] = 0;
    this.count--;
  }

  private growTable(): void {
    const old = this.table;
    const n = (this.tmask + 1) * 2;
    const t = new Uint32Array(2 * n);
    const m = n - 1;
    for (let j = 0; j < old.length; j += 2) {
      const w = old[j + 1]!;
      if (w === 0) continue;
      const tag = old[j]!;
      let i = home(tag, this.seed) & m;
      while (t[2 * i + 1] !== 0) i = (i + 1) & m;
      t[2 * i] = tag;
      t[2 * i + 1] = w;
    }
    this.table = t;
    this.tmask = m;
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
    this.f64 = new Float64Array(next.buffer, next.byteOffset, next.length / 8);
    this.u16 = new Uint16Array(next.buffer, next.byteOffset, next.length / 2);
    this.mask = nextMask;
  }
}

/** The table word for absolute ring position `pos` (a multiple of 8). */
function posWord(pos: number): number {
  // ToUint32 (>>> 0) takes pos / 8 modulo 2^32 without a floating-point remainder.
  return (((pos / 8) >>> 0) | USED) >>> 0;
}

/**
 * Home slot of a tag: keys that differ only in their low 3 bits (a peer's
 * consecutive Message IDs) get neighbouring slots in one 64-byte group, so a
 * peer's next exchange usually finds its slot in a cache line already touched;
 * the groups themselves are spread by the hash.
 */
function home(tag: number, seed: number): number {
  return (hash((tag >>> 3) ^ seed) << 3) | (tag & 7);
}

/** Mixes a 32-bit tag. */
function hash(tag: number): number {
  let h = Math.imul(tag, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 13);
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function pow2AtLeast(n: number): number {
  let p = 1024;
  while (p < n) p *= 2;
  return p;
}
