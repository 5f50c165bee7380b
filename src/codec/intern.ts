/**
 * Interning of short UTF-8 strings decoded from option values (Uri-Path
 * segments): a server sees the same few path segments over and over, and
 * `buf.toString('utf8')` costs ~120 ns in Node 20 while hashing and comparing
 * a few bytes costs ~15 ns. A direct-mapped cache of 1,024 entries keyed by an
 * FNV-1a hash of the bytes; a hit is verified byte by byte, so the result is
 * always exactly `buf.toString('utf8')`. Memory is bounded (entries up to 32
 * bytes, ~100 KB at most); values longer than that are decoded directly.
 */

const SIZE = 1024;
const MAX_BYTES = 32;

interface Entry {
  bytes: Uint8Array;
  str: string;
}

const table: Array<Entry | undefined> = new Array(SIZE).fill(undefined);

/** `buf.toString('utf8')`, served from a small cache for short values. */
export function utf8Interned(buf: Buffer): string {
  const n = buf.length;
  if (n === 0) return '';
  if (n > MAX_BYTES) return buf.toString('utf8');
  let h = 0x811c9dc5 ^ n;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  const slot = (h ^ (h >>> 15)) & (SIZE - 1);
  const e = table[slot];
  if (e !== undefined) {
    const b = e.bytes;
    if (b.length === n) {
      let i = 0;
      while (i < n && b[i] === buf[i]) i++;
      if (i === n) return e.str;
    }
  }
  const str = buf.toString('utf8');
  table[slot] = { bytes: Uint8Array.from(buf), str };
  return str;
}
