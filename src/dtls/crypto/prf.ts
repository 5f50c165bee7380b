/**
 * TLS 1.2 pseudo-random function (RFC 5246 §5): PRF(secret, label, seed) =
 * P_<hash>(secret, label + seed), where P_hash is the HMAC-based expansion
 * A(0) = seed', A(i) = HMAC(secret, A(i-1)), output = HMAC(secret, A(i) + seed')...
 * DTLS 1.2 uses the same PRF. Used for the master secret, key block and
 * Finished verify_data; also imported by the passive capture decoder.
 */
import { createHmac } from 'node:crypto';

export type PrfHash = 'sha256' | 'sha384';

export function prf(
  hash: PrfHash,
  secret: Uint8Array,
  label: string,
  seed: Uint8Array,
  length: number,
): Buffer {
  const labelSeed = Buffer.concat([Buffer.from(label, 'latin1'), seed]);
  const out = Buffer.allocUnsafe(length);
  let filled = 0;
  let a: Buffer = labelSeed;
  while (filled < length) {
    a = createHmac(hash, secret).update(a).digest();
    const block = createHmac(hash, secret).update(a).update(labelSeed).digest();
    const n = Math.min(block.length, length - filled);
    block.copy(out, filled, 0, n);
    filled += n;
  }
  return out;
}
