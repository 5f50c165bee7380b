/** Small bounds-checked helpers shared by the capture parsers. */

import { Buffer } from 'node:buffer';
import { CaptureFormatError } from '../errors.js';

/** Thrown internally when a read goes past the end of a buffer. */
export function need(buf: Uint8Array, offset: number, length: number, what: string): void {
  if (offset < 0 || length < 0 || offset + length > buf.length) {
    throw new CaptureFormatError(
      `truncated ${what}: need ${length} byte(s) at offset ${offset}, have ${Math.max(0, buf.length - offset)}`,
    );
  }
}

export function u8(buf: Uint8Array, o: number, what = 'data'): number {
  need(buf, o, 1, what);
  return buf[o] as number;
}

export function u16be(buf: Uint8Array, o: number, what = 'data'): number {
  need(buf, o, 2, what);
  return ((buf[o] as number) << 8) | (buf[o + 1] as number);
}

export function u24be(buf: Uint8Array, o: number, what = 'data'): number {
  need(buf, o, 3, what);
  return ((buf[o] as number) << 16) | ((buf[o + 1] as number) << 8) | (buf[o + 2] as number);
}

export function u32be(buf: Uint8Array, o: number, what = 'data'): number {
  need(buf, o, 4, what);
  return (
    (((buf[o] as number) << 24) >>> 0) +
    (((buf[o + 1] as number) << 16) | ((buf[o + 2] as number) << 8) | (buf[o + 3] as number))
  );
}

export function u48be(buf: Uint8Array, o: number, what = 'data'): number {
  need(buf, o, 6, what);
  return u16be(buf, o) * 0x100000000 + u32be(buf, o + 2);
}

export function u16(buf: Uint8Array, o: number, le: boolean, what = 'data'): number {
  need(buf, o, 2, what);
  return le ? (buf[o] as number) | ((buf[o + 1] as number) << 8) : u16be(buf, o);
}

export function u32(buf: Uint8Array, o: number, le: boolean, what = 'data'): number {
  need(buf, o, 4, what);
  if (!le) return u32be(buf, o);
  return (
    (((buf[o + 3] as number) << 24) >>> 0) +
    (((buf[o + 2] as number) << 16) | ((buf[o + 1] as number) << 8) | (buf[o] as number))
  );
}

export function slice(buf: Uint8Array, o: number, length: number, what = 'data'): Uint8Array {
  need(buf, o, length, what);
  return buf.subarray(o, o + length);
}

export function toHex(buf: Uint8Array, sep = ''): string {
  const hex = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex');
  if (!sep || hex.length <= 2) return hex;
  return hex.replace(/(..)(?!$)/g, `$1${sep}`);
}

export function macToString(buf: Uint8Array): string {
  return toHex(buf, ':');
}

export function ipv4ToString(buf: Uint8Array, o = 0): string {
  need(buf, o, 4, 'IPv4 address');
  return `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
}

/** RFC 5952 text form of an IPv6 address. */
export function ipv6ToString(buf: Uint8Array, o = 0): string {
  need(buf, o, 16, 'IPv6 address');
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(u16be(buf, o + i * 2));
  // IPv4-mapped
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${ipv4ToString(buf, o + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}
