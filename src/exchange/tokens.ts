/**
 * Random tokens (RFC 7252 §5.3.1, §11.4) from node:crypto, drawn from a
 * pooled buffer so the hot path does not call into the CSPRNG per request.
 */

import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
let pool = Buffer.allocUnsafe(POOL_SIZE);
let offset = POOL_SIZE;

/** Returns `length` fresh random bytes (a new Buffer the caller may keep). */
export function randomToken(length: number): Buffer {
  if (length === 0) return Buffer.alloc(0);
  if (offset + length > POOL_SIZE) {
    pool = Buffer.allocUnsafe(POOL_SIZE);
    randomFillSync(pool);
    offset = 0;
  }
  const t = Buffer.from(pool.subarray(offset, offset + length));
  offset += length;
  return t;
}
