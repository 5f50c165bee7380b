/**
 * OSCORE sender sequence number ranges in a durable store (RFC 8613 §7.5):
 * `reserveSequence(name, count, atLeast)` moves a per-context counter up by
 * `count` in one atomic, durable step and answers where the range starts, so
 * several servers sharing one store never receive the same number. The
 * counter is a named blob, `oscore.seq:NAME`, holding the next free number in
 * decimal ASCII (the same text as FILE.seq).
 */

import { Buffer } from 'node:buffer';
import { StoreError, StoreFormatError } from './errors.js';

/** Prefix of the named blob that holds a context's counter. */
const SEQUENCE_STATE_PREFIX = 'oscore.seq:';

/** Largest counter value kept (above the 2^40 sequence number space, below 2^53). */
export const MAX_STORED_SEQUENCE = 2 ** 50;

/** The blob name of a context's counter. */
export function sequenceStateName(name: string): string {
  return `${SEQUENCE_STATE_PREFIX}${name}`;
}

/** Checks the arguments of reserveSequence; StoreError saying what is wrong. */
export function checkReserve(name: string, count: number, atLeast: number): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 512)
    throw new StoreError('reserveSequence: name must be a non-empty string of at most 512 characters');
  if (!Number.isSafeInteger(count) || count < 1 || count > 2 ** 32)
    throw new StoreError(`reserveSequence: count must be an integer in 1..2^32, got ${count}`);
  if (!Number.isSafeInteger(atLeast) || atLeast < 0 || atLeast > MAX_STORED_SEQUENCE)
    throw new StoreError(`reserveSequence: atLeast must be an integer in 0..2^50, got ${atLeast}`);
}

/** The counter in a stored blob (0 when there is none); StoreFormatError when it is not a number. */
export function parseStoredSequence(name: string, value: Uint8Array | undefined): number {
  if (value === undefined) return 0;
  const t = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
  const n = Number(t);
  if (!/^\d{1,16}$/.test(t) || n > MAX_STORED_SEQUENCE)
    throw badStoredSequence(name, '', `: ${JSON.stringify(t.slice(0, 40))}`);
  return n;
}

/** The error for a stored counter that is not a number (`where` and `detail` frame the message). */
export function badStoredSequence(name: string, where: string, detail: string): StoreFormatError {
  return new StoreFormatError(
    `${where}the stored OSCORE sequence counter ${sequenceStateName(name)} is not a number${detail}`,
    { hint: 'a counter that cannot be trusted means new OSCORE contexts are needed (never reuse a nonce)' },
  );
}

/** The blob of a counter. */
export function storedSequence(next: number): Buffer {
  return Buffer.from(String(next), 'latin1');
}
