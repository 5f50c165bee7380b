/**
 * Helpers shared by the client and server sides of block-wise transfer (RFC 7959).
 */
import { createHash } from 'node:crypto';
import type { CoapOption } from '../codec/message.js';
import type { BlockOption } from '../codec/options.js';

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

/** SZX 7: BERT (RFC 8323 §6), several 1024-byte blocks per message; NUM counts 1024-byte units. */
export const BERT_SZX = 7;

/**
 * The payload of one BERT message (a multiple of 1024) that keeps a message with
 * `options` (plus the block-wise options still to add) within the peer's
 * Max-Message-Size `mms`; 0 when BERT would carry no more than one 1024-byte block.
 */
export function bertPayloadSize(mms: number | undefined, options: readonly CoapOption[] | undefined): number {
  if (mms === undefined || mms < 3072) return 0;
  // Frame header (Len + 4-byte Extended Length + Code + 8-byte token) and block-wise options
  // (Block1, Block2, Size1/Size2, ETag) with their worst-case option headers.
  let overhead = 14 + 64;
  if (options !== undefined) for (const o of options) overhead += o.value.length + 5;
  const n = Math.floor((mms - overhead) / 1024) * 1024;
  return n >= 2048 ? n : 0;
}

/**
 * A block's payload fits its option: with M=1 exactly the block size, or for BERT
 * (RFC 8323 §6) a non-zero multiple of 1024; the last block at most the block size
 * (BERT: any length, which the transport's Max-Message-Size bounds).
 */
export function blockLengthOk(b: BlockOption, len: number, full: boolean): boolean {
  if (b.szx === BERT_SZX) return full ? len > 0 && len % 1024 === 0 : true;
  return full ? len === b.size : len <= b.size;
}
