/**
 * Option values (RFC 7252 §3.2 formats, §5.10 definitions) and helpers to
 * read options from decoded messages. Pure functions.
 */

import { Buffer } from 'node:buffer';
import { contentFormatName } from '../constants/content-formats.js';
import { isCritical, optionDefinition } from '../constants/options.js';
import { OptionError } from '../errors.js';
import type { CoapOption } from './message.js';

const EMPTY = Buffer.alloc(0);

/** §3.2 uint: minimal big-endian bytes, zero is the empty string. */
export function encodeUint(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new OptionError(`uint option value out of range: ${n}`);
  if (n === 0) return EMPTY;
  if (n < 0x100) return Buffer.from([n]);
  if (n < 0x10000) return Buffer.from([n >> 8, n & 0xff]);
  if (n < 0x1000000) return Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.from([n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

/** Decodes a uint of 0-4 bytes (leading zeros are tolerated on input). */
export function decodeUint(b: Uint8Array): number {
  if (b.length > 4) throw new OptionError(`uint option value too long: ${b.length} bytes`);
  let n = 0;
  for (let i = 0; i < b.length; i++) n = n * 256 + b[i]!;
  return n;
}

export type OptionInput = string | number | Uint8Array | null;

/**
 * Converts a user value to wire bytes following the option's format:
 * numbers for uint options, strings for string options, bytes for opaque.
 * Unregistered options accept bytes, strings (UTF-8) and numbers (uint).
 */
export function optionValue(number: number, value: OptionInput): Buffer {
  const def = optionDefinition(number);
  let bytes: Buffer;
  if (value === null) bytes = EMPTY;
  else if (typeof value === 'number') {
    if (def && def.format !== 'uint') throw new OptionError(`${def.name} does not take a number`);
    bytes = encodeUint(value);
  } else if (typeof value === 'string') {
    if (def?.format === 'uint') {
      if (!/^\d+$/.test(value))
        throw new OptionError(`${def.name} takes an unsigned integer, got "${value}"`);
      bytes = encodeUint(Number(value));
    } else if (def?.format === 'opaque' && /^0x[0-9a-f]*$/i.test(value) && value.length % 2 === 0) {
      bytes = Buffer.from(value.slice(2), 'hex');
    } else bytes = Buffer.from(value, 'utf8');
  } else bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (def) {
    if (def.format === 'empty' && bytes.length !== 0) throw new OptionError(`${def.name} takes no value`);
    if (bytes.length < def.minLength || bytes.length > def.maxLength) {
      throw new OptionError(
        `${def.name} value must be ${def.minLength}-${def.maxLength} bytes, got ${bytes.length}`,
      );
    }
  }
  return bytes;
}

export function getOption(options: readonly CoapOption[], number: number): Buffer | undefined {
  for (const o of options) if (o.number === number) return o.value;
  return undefined;
}

export function getOptions(options: readonly CoapOption[], number: number): Buffer[] {
  const out: Buffer[] = [];
  for (const o of options) if (o.number === number) out.push(o.value);
  return out;
}

export function hasOption(options: readonly CoapOption[], number: number): boolean {
  for (const o of options) if (o.number === number) return true;
  return false;
}

export function getUintOption(options: readonly CoapOption[], number: number): number | undefined {
  const v = getOption(options, number);
  return v === undefined || v.length > 4 ? undefined : decodeUint(v);
}

export function getStringOptions(options: readonly CoapOption[], number: number): string[] {
  return getOptions(options, number).map((v) => v.toString('utf8'));
}

/** RFC 7959 §2.2 block option value. */
export interface BlockOption {
  num: number;
  more: boolean;
  szx: number;
  /**
   * Block size in bytes: 2^(szx+4). For SZX 7 (BERT, RFC 8323 §6) 1024, the unit the
   * block number counts in: the payload is then any multiple of 1024 bytes (M=1), or
   * such a multiple plus a shorter tail (the last block).
   */
  size: number;
}

/**
 * Decodes a Block1/Block2 value. SZX 7 (BERT) is a format error unless `bert`
 * (a reliable transport where this side announced Block-Wise-Transfer in its CSM).
 */
export function decodeBlock(v: Uint8Array, bert = false): BlockOption {
  if (v.length > 3) throw new OptionError(`block option too long: ${v.length} bytes`);
  const n = decodeUint(v);
  const szx = n & 7;
  if (szx === 7 && !bert) {
    throw new OptionError('block SZX 7 (BERT) is only valid over RFC 8323 transports that announced it');
  }
  return { num: n >>> 4, more: (n & 8) !== 0, szx, size: szx === 7 ? 1024 : 1 << (szx + 4) };
}

/** Encodes a Block1/Block2 value; SZX 7 is BERT (RFC 8323 §6: NUM counts 1024-byte blocks). */
export function encodeBlock(num: number, more: boolean, szx: number): Buffer {
  if (!Number.isInteger(num) || !Number.isInteger(szx) || szx < 0 || szx > 7 || num < 0 || num > 0xfffff) {
    throw new OptionError(`block option out of range: NUM ${num}, SZX ${szx}`);
  }
  return encodeUint(num * 16 + (more ? 8 : 0) + szx);
}

export function sizeToSzx(size: number): number {
  const szx = Math.log2(size) - 4;
  if (!Number.isInteger(szx) || szx < 0 || szx > 6) {
    throw new OptionError(`block size must be a power of two from 16 to 1024, got ${size}`);
  }
  return szx;
}

/** A human-readable rendering of an option value according to its format. */
export function formatOptionValue(number: number, value: Uint8Array): string {
  const def = optionDefinition(number);
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (!def) return buf.length === 0 ? '(empty)' : `0x${buf.toString('hex')}`;
  switch (def.format) {
    case 'empty':
      return '(empty)';
    case 'string':
      return JSON.stringify(buf.toString('utf8'));
    case 'opaque':
      return buf.length === 0 ? '(empty)' : `0x${buf.toString('hex')}`;
    case 'uint': {
      if (buf.length > 4) return `0x${buf.toString('hex')}`;
      const n = decodeUint(buf);
      if (number === 12 || number === 17) {
        const name = contentFormatName(n);
        return name ? `${n} (${name})` : String(n);
      }
      if (number === 23 || number === 27 || number === 19 || number === 31) {
        if (buf.length > 3) return String(n);
        const szx = n & 7;
        return `${n >>> 4}/${(n & 8) !== 0 ? 1 : 0}/${szx === 7 ? 'BERT' : 1 << (szx + 4)}`;
      }
      return String(n);
    }
  }
}

export interface OptionCheck {
  /** First unrecognized or malformed critical option (§5.4.1, §5.4.3, §5.4.5), if any. */
  badCritical?: number;
  /** Options to ignore: unrecognized elective, malformed elective, repeated non-repeatable. */
  ignored: number[];
}

/**
 * Classifies options of a received message. `recognized` is the set of option
 * numbers the receiver implements; the rest are unrecognized.
 */
export function checkOptions(options: readonly CoapOption[], recognized: ReadonlySet<number>): OptionCheck {
  const ignored: number[] = [];
  let badCritical: number | undefined;
  let prev = -1;
  for (const o of options) {
    const def = optionDefinition(o.number);
    // §5.4.1: "recognized" is what the receiver implements, registered here or
    // not; length and repetition rules apply where a definition is known.
    let ok = recognized.has(o.number);
    if (ok && def) {
      if (o.value.length < def.minLength || o.value.length > def.maxLength) ok = false;
      else if (!def.repeatable && o.number === prev) ok = false;
    }
    if (!ok) {
      if (isCritical(o.number)) {
        if (badCritical === undefined) badCritical = o.number;
      } else ignored.push(o.number);
    }
    prev = o.number;
  }
  return badCritical === undefined ? { ignored } : { badCritical, ignored };
}

/**
 * The first unrecognized or malformed critical option (§5.4.1), or undefined:
 * what checkOptions() reports as `badCritical`, without allocating (the
 * server and the client call it for every message).
 */
export function firstBadCritical(
  options: readonly CoapOption[],
  recognized: ReadonlySet<number>,
): number | undefined {
  let prev = -1;
  for (let i = 0; i < options.length; i++) {
    const o = options[i]!;
    const n = o.number;
    if (isCritical(n)) {
      let ok = recognized.has(n);
      if (ok) {
        const def = optionDefinition(n);
        if (
          def &&
          (o.value.length < def.minLength ||
            o.value.length > def.maxLength ||
            (!def.repeatable && n === prev))
        )
          ok = false;
      }
      if (!ok) return n;
    }
    prev = n;
  }
  return undefined;
}
