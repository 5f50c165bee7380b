/**
 * Helpers shared by the client and server sides of block-wise transfer (RFC 7959).
 */
import { createHash } from 'node:crypto';
import type { CoapOption } from '../codec/message.js';

/** Largest SZX over UDP/DTLS (1024-byte blocks); 7 is BERT (TCP only). */
export const MAX_SZX = 6;

/** Block size in bytes for an SZX (§2.2): 2^(SZX+4). */
export function szxToSize(szx: number): number {
  return 1 << (szx + 4);
}

/** The SZX of the largest power-of-two block size not above `size` (clamped to 16..1024). */
export function sizeToSzxFloor(size: number): number {
  let szx = 0;
  while (szx < MAX_SZX && szxToSize(szx + 1) <= size) szx++;
  return szx;
}

/** Progress of one block-wise transfer, as reported to `onProgress`. */
export interface BlockProgress {
  /** 'upload' (Block1, request payload) or 'download' (Block2, response payload). */
  direction: 'upload' | 'download';
  /** Bytes transferred so far in this direction. */
  bytes: number;
  /** Total size when known (the payload length for uploads, Size2 for downloads). */
  totalBytes?: number;
  /** Blocks transferred so far. */
  blocks: number;
}

/** Drops every option with one of the given numbers. */
export function withoutOptions(options: readonly CoapOption[], ...numbers: number[]): CoapOption[] {
  return options.filter((o) => !numbers.includes(o.number));
}

/** A short strong ETag for a representation that has none (8 bytes of SHA-256). */
export function contentEtag(payload: Uint8Array): Buffer {
  return createHash('sha256').update(payload).digest().subarray(0, 8);
}
