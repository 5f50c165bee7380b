/**
 * Sliding anti-replay window (RFC 6347 §4.1.2.6, the RFC 4303 §3.4.3 algorithm).
 * `check()` before authenticating a record; `update()` only after the record
 * authenticated successfully, so forged records cannot move the window.
 */
export class ReplayWindow {
  private readonly bits: Uint8Array;
  private max = -1;

  constructor(readonly size = 64) {
    this.bits = new Uint8Array(size);
  }

  /** True if `seq` is new (not yet seen and not left of the window). */
  check(seq: number): boolean {
    if (seq > this.max) return true;
    if (this.max - seq >= this.size) return false;
    return this.bits[seq % this.size] === 0;
  }

  /** Marks `seq` as received. */
  update(seq: number): void {
    if (seq > this.max) {
      const advance = seq - this.max;
      if (advance >= this.size) this.bits.fill(0);
      else for (let s = this.max + 1; s < seq; s++) this.bits[s % this.size] = 0;
      this.max = seq;
    }
    this.bits[seq % this.size] = 1;
  }

  /** Highest sequence number accepted so far (-1 if none). */
  get highest(): number {
    return this.max;
  }
}
