/**
 * TLS 1.2 pseudo-random function (RFC 5246 §5): PRF(secret, label, seed) =
 * P_<hash>(secret, label + seed), where P_hash is the HMAC-based expansion
 * A(0) = seed', A(i) = HMAC(secret, A(i-1)), output = HMAC(secret, A(i) + seed')...
 * DTLS 1.2 uses the same PRF. Used for the master secret, key block and
 * Finished verify_data; also imported by the passive capture decoder.
 *
 * Cost: 2 HMACs per output block (32 bytes for SHA-256); the last A(i) is not
 * computed beyond what the output needs.
 */
import { Buffer } from 'node:buffer';
import { createHmac } from 'node:crypto';

export type PrfHash = 'sha256' | 'sha384';

/** Writes `length` PRF bytes into `out` (allocated if not given) and returns it. */
export function prf(
  hash: PrfHash,
  secret: Uint8Array,
  label: string,
  seed: Uint8Array,
  length: number,
  out: Buffer = Buffer.allocUnsafe(length),
): Buffer {
  const labelSeed = Buffer.allocUnsafe(label.length + seed.length);
  labelSeed.write(label, 0, 'latin1');
  labelSeed.set(seed, label.length);
  let filled = 0;
  let a: Buffer = createHmac(hash, secret).update(labelSeed).digest();
  for (;;) {
    const block = createHmac(hash, secret).update(a).update(labelSeed).digest();
    const n = Math.min(block.length, length - filled);
    block.copy(out, filled, 0, n);
    filled += n;
    if (filled >= length) return out;
    a = createHmac(hash, secret).update(a).digest();
  }
}
