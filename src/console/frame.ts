/**
 * CoAP over WebSockets framing (RFC 8323 §4.2), without dependencies: no
 * node: import, no Buffer (its one import, util/errors.ts, imports nothing), so the
 * console page (console/, built for the browser) and the console server share this one file.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  | Len=0 |  TKL  |      Code     |    Token (TKL bytes) ...
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |   Options (if any) ...
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |1 1 1 1 1 1 1 1|    Payload (if any) ...
 *
 * One WebSocket binary message carries one CoAP message: no Type, no
 * Message ID, Len always 0 (the WebSocket frame has the length). Options
 * and the payload marker are encoded as in RFC 7252 §3.1.
 */

import { CoapError } from '../util/errors.js';

/** One option: number and raw value. */
export interface WsOption {
  number: number;
  value: Uint8Array;
}

/** A CoAP message as RFC 8323 carries it over WebSockets. */
export interface WsMessage {
  /** Code byte: class << 5 | detail (1 = GET, 69 = 2.05, 225 = 7.01 CSM...). */
  code: number;
  /** 0 to 8 bytes. */
  token: Uint8Array;
  /** In any order; encoded sorted by number (stable for repeated options). */
  options: WsOption[];
  payload: Uint8Array;
}

/** A message that cannot be decoded or encoded; the message names the rule broken. */
export class WsFrameError extends CoapError {
  static override readonly code: string = 'COAP_ERR_WS_FRAME';
}

/** Signaling codes (RFC 8323 §5): 7.01 CSM, 7.02 Ping, 7.03 Pong, 7.04 Release, 7.05 Abort. */
export const SignalCode = { CSM: 225, Ping: 226, Pong: 227, Release: 228, Abort: 229 } as const;

/** Option numbers this codec's users need by name. */
export const Opt = {
  /** In 7.01 CSM: Max-Message-Size (uint). */
  MaxMessageSize: 2,
  /** In 7.01 CSM: Block-Wise-Transfer (empty). */
  BlockWiseTransfer: 4,
  IfMatch: 1,
  UriHost: 3,
  ETag: 4,
  Observe: 6,
  UriPort: 7,
  LocationPath: 8,
  UriPath: 11,
  ContentFormat: 12,
  MaxAge: 14,
  UriQuery: 15,
  Accept: 17,
  LocationQuery: 20,
  Block2: 23,
  Block1: 27,
  Size2: 28,
  ProxyUri: 35,
  ProxyScheme: 39,
  Size1: 60,
} as const;

function extended(n: number): [nibble: number, extra: number[]] {
  if (n < 13) return [n, []];
  if (n < 269) return [13, [n - 13]];
  if (n < 65805) return [14, [(n - 269) >> 8, (n - 269) & 0xff]];
  throw new WsFrameError(`option delta or length ${n} is over 65804`);
}

/** The bytes of one WebSocket message carrying `msg`. */
export function encodeWsMessage(msg: WsMessage): Uint8Array {
  if (msg.token.length > 8) throw new WsFrameError(`token of ${msg.token.length} bytes (at most 8)`);
  if (!Number.isInteger(msg.code) || msg.code < 0 || msg.code > 255) {
    throw new WsFrameError(`code ${msg.code} is not a byte`);
  }
  const options = msg.options
    .map((o, i) => ({ o, i }))
    .sort((a, b) => a.o.number - b.o.number || a.i - b.i)
    .map((x) => x.o);
  const head: number[] = [msg.token.length & 0x0f, msg.code];
  const parts: Uint8Array[] = [];
  let size = 2 + msg.token.length;
  let prev = 0;
  const optBytes: number[] = [];
  for (const o of options) {
    if (!Number.isInteger(o.number) || o.number < 0 || o.number > 65535 + 269) {
      throw new WsFrameError(`option number ${o.number} out of range`);
    }
    const [dn, dx] = extended(o.number - prev);
    const [ln, lx] = extended(o.value.length);
    optBytes.push((dn << 4) | ln, ...dx, ...lx);
    // Values are copied below, in order, after their header bytes.
    parts.push(Uint8Array.from(optBytes.splice(0)), o.value);
    size += 1 + dx.length + lx.length + o.value.length;
    prev = o.number;
  }
  if (msg.payload.length > 0) size += 1 + msg.payload.length;
  const out = new Uint8Array(size);
  out.set(head, 0);
  out.set(msg.token, 2);
  let at = 2 + msg.token.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  if (msg.payload.length > 0) {
    out[at++] = 0xff;
    out.set(msg.payload, at);
  }
  return out;
}

/** Decodes one WebSocket message (throws WsFrameError; never reads past `data`). */
export function decodeWsMessage(data: Uint8Array): WsMessage {
  if (data.length < 2) throw new WsFrameError(`message of ${data.length} bytes (at least 2)`);
  const len = data[0]! >> 4;
  const tkl = data[0]! & 0x0f;
  if (len !== 0) throw new WsFrameError(`Len is ${len}: over WebSockets it must be 0 (RFC 8323 §4.2)`);
  if (tkl > 8) throw new WsFrameError(`TKL ${tkl} is reserved (RFC 8323 §3.2)`);
  if (data.length < 2 + tkl) throw new WsFrameError('message shorter than its token');
  const code = data[1]!;
  const token = data.slice(2, 2 + tkl);
  const options: WsOption[] = [];
  let at = 2 + tkl;
  let number = 0;
  const ext = (nibble: number, what: string): number => {
    if (nibble < 13) return nibble;
    if (nibble === 13) {
      if (at + 1 > data.length) throw new WsFrameError(`option ${what} runs past the end`);
      return data[at++]! + 13;
    }
    if (nibble === 14) {
      if (at + 2 > data.length) throw new WsFrameError(`option ${what} runs past the end`);
      const v = ((data[at]! << 8) | data[at + 1]!) + 269;
      at += 2;
      return v;
    }
    throw new WsFrameError(`option ${what} nibble 15 is reserved (RFC 7252 §3.1)`);
  };
  while (at < data.length) {
    const b = data[at++]!;
    if (b === 0xff) {
      if (at === data.length) throw new WsFrameError('payload marker followed by no payload (RFC 7252 §3)');
      return { code, token, options, payload: data.slice(at) };
    }
    number += ext(b >> 4, 'delta');
    const length = ext(b & 0x0f, 'length');
    if (at + length > data.length) throw new WsFrameError(`option ${number} value runs past the end`);
    options.push({ number, value: data.slice(at, at + length) });
    at += length;
  }
  return { code, token, options, payload: new Uint8Array(0) };
}

/** Minimal big-endian encoding of an unsigned integer option value (RFC 7252 §3.2). */
export function uintValue(n: number): Uint8Array {
  const out: number[] = [];
  let v = Math.floor(n);
  while (v > 0) {
    out.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return Uint8Array.from(out);
}

/** An unsigned integer option value. */
export function readUint(v: Uint8Array): number {
  let n = 0;
  for (const b of v) n = n * 256 + b;
  return n;
}

/** "2.05", "7.01": a code as c.dd. */
export function codeText(code: number): string {
  return `${code >> 5}.${String(code & 31).padStart(2, '0')}`;
}
