/**
 * CoAP message codec (RFC 7252 §3). Pure functions: no I/O, no timers.
 * decodeMessage() returns a message or throws MessageFormatError — nothing else.
 * Token, option values and payload of a decoded message are views into the
 * input buffer (no copies); copy them if the input buffer is reused.
 */

import { Buffer } from 'node:buffer';
import type { MessageType } from '../constants/codes.js';
import { InvalidArgumentError, MessageFormatError } from '../errors.js';
import { BufferView } from '../util/view.js';

export interface CoapOption {
  number: number;
  value: Buffer;
}

export interface CoapMessage {
  type: MessageType;
  code: number;
  messageId: number;
  token: Buffer;
  /** Options in wire order (sorted by number; repeated options keep their order). */
  options: CoapOption[];
  payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

function fail(msg: string): never {
  throw new MessageFormatError(msg);
}

/** Decodes one CoAP message from a datagram. */
export function decodeMessage(buf: Uint8Array): CoapMessage {
  const len = buf.length;
  if (len < 4) fail(`message too short: ${len} bytes (header is 4)`);
  const b0 = buf[0]!;
  const version = b0 >> 6;
  if (version !== 1) fail(`unsupported version ${version}`);
  const type = ((b0 >> 4) & 3) as MessageType;
  const tkl = b0 & 0x0f;
  const code = buf[1]!;
  const messageId = (buf[2]! << 8) | buf[3]!;
  if (tkl > 8) fail(`token length ${tkl} is reserved (must be 0-8)`);
  if (code === 0) {
    // §4.1: Empty message — nothing may follow the Message ID.
    if (len !== 4 || tkl !== 0) fail('empty message (code 0.00) with token, options or payload');
    return { type, code, messageId, token: EMPTY, options: [], payload: EMPTY };
  }
  if (len < 4 + tkl) fail(`truncated token: need ${tkl} bytes, have ${len - 4}`);
  const ab = buf.buffer;
  const bo = buf.byteOffset;
  const token = tkl === 0 ? EMPTY : new BufferView(ab, bo + 4, tkl);
  // The first option starts an exactly sized array (a push onto [] would
  // allocate room for 16); one return site for the whole loop.
  let options: CoapOption[] | undefined;
  let payload: Buffer = EMPTY;
  let pos = 4 + tkl;
  let number = 0;
  while (pos < len) {
    const byte = buf[pos++]!;
    if (byte === 0xff) {
      if (pos === len) fail('payload marker followed by an empty payload');
      payload = new BufferView(ab, bo + pos, len - pos);
      break;
    }
    let delta = byte >> 4;
    let olen = byte & 0x0f;
    if (delta === 13) {
      if (pos >= len) fail('truncated option delta');
      delta = buf[pos++]! + 13;
    } else if (delta === 14) {
      if (pos + 1 >= len) fail('truncated option delta');
      delta = ((buf[pos]! << 8) | buf[pos + 1]!) + 269;
      pos += 2;
    } else if (delta === 15) {
      fail('option delta 15 is reserved');
    }
    if (olen === 13) {
      if (pos >= len) fail('truncated option length');
      olen = buf[pos++]! + 13;
    } else if (olen === 14) {
      if (pos + 1 >= len) fail('truncated option length');
      olen = ((buf[pos]! << 8) | buf[pos + 1]!) + 269;
      pos += 2;
    } else if (olen === 15) {
      fail('option length 15 is reserved');
    }
    number += delta;
    if (number > 0xffff) fail(`option number ${number} exceeds 65535`);
    if (pos + olen > len) fail(`option ${number} value truncated: need ${olen} bytes, have ${len - pos}`);
    const option: CoapOption = { number, value: olen === 0 ? EMPTY : new BufferView(ab, bo + pos, olen) };
    if (options === undefined) options = [option];
    else options.push(option);
    pos += olen;
  }
  return { type, code, messageId, token, options: options ?? [], payload };
}

/** Input accepted by encodeMessage: like CoapMessage, with defaults for missing parts. */
export interface EncodableMessage {
  type: MessageType;
  code: number;
  messageId: number;
  token?: Uint8Array | undefined;
  options?: readonly { number: number; value: Uint8Array }[] | undefined;
  payload?: Uint8Array | undefined;
}

function extLen(n: number): number {
  return n < 13 ? 0 : n < 269 ? 1 : 2;
}

/** Exact encoded size of a decoded message (options in wire order), without encoding it. */
export function encodedLength(msg: CoapMessage): number {
  let size = 4 + msg.token.length;
  let prev = 0;
  const options = msg.options;
  for (let i = 0; i < options.length; i++) {
    const o = options[i]!;
    const d = o.number >= prev ? o.number - prev : 0;
    prev = o.number;
    const len = o.value.length;
    size += 1 + extLen(d) + extLen(len) + len;
  }
  const pl = msg.payload.length;
  return pl > 0 ? size + 1 + pl : size;
}

/**
 * Upper bound of the encoded size of a message with a token of `tokenLength` bytes, these
 * options (possibly unsorted: each delta is counted as its option number) and payload.
 */
export function encodedLengthBound(
  tokenLength: number,
  options: readonly { number: number; value: Uint8Array }[] | undefined,
  payload: Uint8Array | undefined,
): number {
  let size = 4 + tokenLength;
  if (options !== undefined) {
    for (let i = 0; i < options.length; i++) {
      const o = options[i]!;
      const len = o.value.length;
      size += 1 + extLen(o.number) + extLen(len) + len;
    }
  }
  const pl = payload?.length ?? 0;
  return pl > 0 ? size + 1 + pl : size;
}

function sortOptions<T extends { number: number }>(opts: readonly T[]): readonly T[] {
  for (let i = 1; i < opts.length; i++) {
    if (opts[i]!.number < opts[i - 1]!.number) {
      // Stable sort keeps the order of repeated options.
      return [...opts].sort((a, b) => a.number - b.number);
    }
  }
  return opts;
}

/** Encodes a message into a new Buffer. Throws InvalidArgumentError on impossible input. */
export function encodeMessage(msg: EncodableMessage): Buffer {
  const token = msg.token ?? EMPTY;
  const payload = msg.payload ?? EMPTY;
  const options = sortOptions(msg.options ?? []);
  const { type, code, messageId } = msg;
  if (!(type >= 0 && type <= 3 && Number.isInteger(type)))
    throw new InvalidArgumentError(`invalid type ${type}`);
  if (!(code >= 0 && code <= 255 && Number.isInteger(code)))
    throw new InvalidArgumentError(`invalid code ${code}`);
  if (!(messageId >= 0 && messageId <= 0xffff && Number.isInteger(messageId))) {
    throw new InvalidArgumentError(`invalid message ID ${messageId}`);
  }
  if (token.length > 8) throw new InvalidArgumentError(`token is ${token.length} bytes (max 8)`);
  if (code === 0 && (token.length > 0 || options.length > 0 || payload.length > 0)) {
    throw new InvalidArgumentError('an empty message (code 0.00) carries no token, options or payload');
  }
  let size = 4 + token.length;
  let prev = 0;
  for (const o of options) {
    const delta = o.number - prev;
    if (!(o.number >= 0 && o.number <= 0xffff && Number.isInteger(o.number))) {
      throw new InvalidArgumentError(`invalid option number ${o.number}`);
    }
    if (o.value.length > 65535 + 269) throw new InvalidArgumentError(`option ${o.number} value too long`);
    size += 1 + extLen(delta) + extLen(o.value.length) + o.value.length;
    prev = o.number;
  }
  if (payload.length > 0) size += 1 + payload.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = 0x40 | (type << 4) | token.length;
  out[1] = code;
  out[2] = messageId >> 8;
  out[3] = messageId & 0xff;
  let pos = 4;
  for (let k = 0; k < token.length; k++) out[pos++] = token[k]!;
  prev = 0;
  for (const o of options) {
    const delta = o.number - prev;
    prev = o.number;
    const vlen = o.value.length;
    const dn = delta < 13 ? delta : delta < 269 ? 13 : 14;
    const ln = vlen < 13 ? vlen : vlen < 269 ? 13 : 14;
    out[pos++] = (dn << 4) | ln;
    if (dn === 13) out[pos++] = delta - 13;
    else if (dn === 14) {
      out[pos++] = (delta - 269) >> 8;
      out[pos++] = (delta - 269) & 0xff;
    }
    if (ln === 13) out[pos++] = vlen - 13;
    else if (ln === 14) {
      out[pos++] = (vlen - 269) >> 8;
      out[pos++] = (vlen - 269) & 0xff;
    }
    if (vlen > 0) pos = copy(o.value, out, pos);
  }
  if (payload.length > 0) {
    out[pos++] = 0xff;
    copy(payload, out, pos);
  }
  return out;
}

/** Copies `src` into `out` at `pos`, returns the new position. Short copies loop (TypedArray#set costs a call). */
function copy(src: Uint8Array, out: Buffer, pos: number): number {
  const n = src.length;
  if (n <= 32) {
    for (let k = 0; k < n; k++) out[pos + k] = src[k]!;
  } else out.set(src, pos);
  return pos + n;
}

/** Encodes an empty ACK or RST (4 bytes) for a message ID. */
export function encodeEmpty(type: MessageType, messageId: number): Buffer {
  if (!(type >= 0 && type <= 3 && Number.isInteger(type)))
    throw new InvalidArgumentError(`invalid type ${type}`);
  if (!(messageId >= 0 && messageId <= 0xffff && Number.isInteger(messageId))) {
    throw new InvalidArgumentError(`invalid message ID ${messageId}`);
  }
  const out = Buffer.allocUnsafe(4);
  out[0] = 0x40 | (type << 4);
  out[1] = 0;
  out[2] = messageId >> 8;
  out[3] = messageId & 0xff;
  return out;
}
