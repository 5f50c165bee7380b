/**
 * Sliding anti-replay window (RFC 6347 §4.1.2.6, the RFC 4303 §3.4.3 algorithm).
 * `check()` before authenticating a record; `update()` only after the record
 * authenticated successfully, so forged records cannot move the window.
 *
 * The window is a 64-bit bitmap kept in two int32 numbers (bit i = "max - i
 * was received"), so an idle session pays a few machine words for it.
 */
import { DtlsError } from '../errors.js';

export class ReplayWindow {
  private max = -1;
  /** Bits 0..31 of the bitmap (relative to `max`). */
  private lo = 0;
  /** Bits 32..63 of the bitmap. */
  private hi = 0;

  constructor(readonly size = 64) {
    if (!Number.isInteger(size) || size < 1 || size > 64)
      throw new DtlsError('replay window size must be 1..64');
  }

  /** True if `seq` is new (not yet seen and not left of the window). */
  check(seq: number): boolean {
    if (seq > this.max) return true;
    const d = this.max - seq;
    if (d >= this.size) return false;
    return (d < 32 ? (this.lo >>> d) & 1 : (this.hi >>> (d - 32)) & 1) === 0;
  }

  /** Marks `seq` as received. */
  update(seq: number): void {
    if (seq > this.max) {
      const shift = seq - this.max;
      if (shift >= 64) {
        this.hi = 0;
        this.lo = 0;
      } else if (shift >= 32) {
        this.hi = shift === 32 ? this.lo : this.lo << (shift - 32);
        this.lo = 0;
      } else {
        this.hi = (this.hi << shift) | (this.lo >>> (32 - shift));
        this.lo = this.lo << shift;
      }
      this.lo |= 1;
      this.max = seq;
      return;
    }
    const d = this.max - seq;
    if (d >= this.size) return;
    if (d < 32) this.lo |= 1 << d;
    else this.hi |= 1 << (d - 32);
  }

  /** Highest sequence number accepted so far (-1 if none). */
  get highest(): number {
    return this.max;
  }
}
