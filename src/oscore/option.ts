/**
 * The OSCORE option value (RFC 8613 §6.1): a flag byte (n = Partial IV
 * length, k = kid present, h = kid context present; the other bits reserved
 * and zero), the Partial IV, the kid context with its length byte, the kid.
 * All flags zero and nothing else: the value is empty.
 */
import { Buffer } from 'node:buffer';
import { OscoreError } from '../errors.js';

/** A decoded OSCORE option value. */
export interface OscoreOptionValue {
  /** Partial IV (1..5 bytes), absent in most responses. */
  partialIv?: Buffer | undefined;
  /** kid: the sender's ID (present in requests). */
  kid?: Buffer | undefined;
  /** kid context (ID Context). */
  kidContext?: Buffer | undefined;
}

/** Encodes an OSCORE option value. */
export function encodeOscoreOption(v: OscoreOptionValue): Buffer {
  const piv = v.partialIv;
  if (piv !== undefined && (piv.length < 1 || piv.length > 5))
    throw new OscoreError(`Partial IV of ${piv.length} bytes (1..5)`);
  if (v.kidContext !== undefined && v.kidContext.length > 255)
    throw new OscoreError('kid context over 255 bytes');
  const flags =
    (piv?.length ?? 0) | (v.kid !== undefined ? 0x08 : 0) | (v.kidContext !== undefined ? 0x10 : 0);
  if (flags === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [Buffer.from([flags])];
  if (piv !== undefined) parts.push(piv);
  if (v.kidContext !== undefined) parts.push(Buffer.from([v.kidContext.length]), v.kidContext);
  if (v.kid !== undefined) parts.push(v.kid);
  return Buffer.concat(parts);
}

/** Decodes an OSCORE option value; OscoreError (4.02 "Failed to decode COSE") when malformed. */
export function decodeOscoreOption(value: Uint8Array): OscoreOptionValue {
  const b = Buffer.from(value.buffer, value.byteOffset, value.length);
  if (b.length === 0) return {};
  const flags = b[0]!;
  if ((flags & 0xe0) !== 0)
    throw new OscoreError(`OSCORE option flags 0x${flags.toString(16)}: reserved bits set`);
  const n = flags & 0x07;
  if (n > 5) throw new OscoreError(`OSCORE option Partial IV length ${n} is reserved`);
  if (flags === 0) throw new OscoreError('OSCORE option with all flags zero must be empty');
  let pos = 1;
  const out: OscoreOptionValue = {};
  if (n > 0) {
    if (pos + n > b.length) throw new OscoreError('OSCORE option truncated in the Partial IV');
    out.partialIv = b.subarray(pos, pos + n);
    pos += n;
  }
  if (flags & 0x10) {
    if (pos >= b.length) throw new OscoreError('OSCORE option truncated before the kid context length');
    const s = b[pos++]!;
    if (pos + s > b.length) throw new OscoreError('OSCORE option truncated in the kid context');
    out.kidContext = b.subarray(pos, pos + s);
    pos += s;
  }
  if (flags & 0x08) out.kid = b.subarray(pos);
  else if (pos !== b.length) throw new OscoreError('OSCORE option has bytes after its last field');
  return out;
}

/** Partial IV bytes of a sequence number: big-endian, shortest, 0 is one zero byte (§6.1). */
export function partialIvOf(seq: number): Buffer {
  if (seq === 0) return Buffer.from([0]);
  const out: number[] = [];
  for (let v = seq; v > 0; v = Math.floor(v / 256)) out.unshift(v % 256);
  return Buffer.from(out);
}

/** The sequence number a Partial IV stands for. */
export function sequenceOf(piv: Uint8Array): number {
  let v = 0;
  for (let i = 0; i < piv.length; i++) v = v * 256 + piv[i]!;
  return v;
}
