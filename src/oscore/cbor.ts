/**
 * The few CBOR (RFC 8949) items OSCORE needs, encoded deterministically
 * (§4.2.1: shortest heads, definite lengths): unsigned and negative
 * integers, byte and text strings, null and arrays. Encoding only: OSCORE
 * never has to parse CBOR it did not build (the option is not CBOR).
 */
import { Buffer } from 'node:buffer';
import { InvalidArgumentError } from '../errors.js';

/** A value the encoder takes: an integer, bytes, text, null or an array of those. */
export type CborValue = number | Uint8Array | string | null | readonly CborValue[];

function head(major: number, n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`CBOR argument ${n} out of range`);
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) return Buffer.from([m | 25, n >> 8, n & 0xff]);
  if (n < 0x100000000) {
    const b = Buffer.allocUnsafe(5);
    b[0] = m | 26;
    b.writeUInt32BE(n, 1);
    return b;
  }
  const b = Buffer.allocUnsafe(9);
  b[0] = m | 27;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

function encodeInto(v: CborValue, out: Buffer[]): void {
  if (v === null) out.push(Buffer.from([0xf6]));
  else if (typeof v === 'number') out.push(v >= 0 ? head(0, v) : head(1, -1 - v));
  else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    out.push(head(3, b.length), b);
  } else if (v instanceof Uint8Array)
    out.push(head(2, v.length), Buffer.from(v.buffer, v.byteOffset, v.length));
  else {
    out.push(head(4, v.length));
    for (const item of v) encodeInto(item, out);
  }
}

/** Deterministic CBOR encoding of `v`. */
export function cborEncode(v: CborValue): Buffer {
  const parts: Buffer[] = [];
  encodeInto(v, parts);
  return Buffer.concat(parts);
}
