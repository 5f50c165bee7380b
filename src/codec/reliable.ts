/**
 * CoAP over reliable transports (RFC 8323): the TCP/TLS framing (§3.2: Len
 * nibble and Extended Length, TKL, Code, Token, Options and Payload; no Type
 * and no Message ID), the WebSocket variant (§4.2: Len is 0 and there is no
 * Extended Length, the WebSocket message gives the length), a bounded
 * streaming decoder for byte streams, and the signaling messages (§5:
 * codes 7.01-7.05 and their options).
 *
 * The message layer above speaks RFC 7252 datagrams; a reliable transport
 * converts with `datagramToFrame` / `frameToDatagram` (the Type and the
 * Message ID of a datagram are dropped on the way out; an incoming frame
 * becomes a NON datagram with Message ID 0). Pure functions, no I/O.
 */

import { Buffer } from 'node:buffer';
import { InvalidArgumentError, MessageFormatError } from '../errors.js';
import { type CoapOption, decodeMessage, encodeMessage } from './message.js';

/** Signaling codes (RFC 8323 §5, class 7). */
export const SignalCode = {
  /** 7.01 Capabilities and Settings Message. */
  CSM: 0xe1,
  /** 7.02 Ping. */
  Ping: 0xe2,
  /** 7.03 Pong. */
  Pong: 0xe3,
  /** 7.04 Release. */
  Release: 0xe4,
  /** 7.05 Abort. */
  Abort: 0xe5,
} as const;

/** Signaling option numbers (RFC 8323 §5.3-§5.6; numbers are per signaling code). */
export const SignalOption = {
  /** CSM: Max-Message-Size (uint). */
  MaxMessageSize: 2,
  /** CSM: Block-Wise-Transfer (empty: the sender supports BERT, §6). */
  BlockWiseTransfer: 4,
  /** Ping/Pong: Custody (empty). */
  Custody: 2,
  /** Release: Alternative-Address (string). */
  AlternativeAddress: 2,
  /** Release: Hold-Off (uint, seconds). */
  HoldOff: 4,
  /** Abort: Bad-CSM-Option (uint). */
  BadCsmOption: 2,
} as const;

/** The name of each signaling code (RFC 8323 §5): "CSM" for 7.01. */
export const SIGNAL_NAMES: Readonly<Record<number, string>> = {
  [SignalCode.CSM]: 'CSM',
  [SignalCode.Ping]: 'Ping',
  [SignalCode.Pong]: 'Pong',
  [SignalCode.Release]: 'Release',
  [SignalCode.Abort]: 'Abort',
};

/** A signaling option's name and value format. */
export interface SignalOptionDef {
  name: string;
  format: 'empty' | 'uint' | 'string';
}

/** Each signaling code's options (their numbers mean something else per code, §5.2). */
export const SIGNAL_OPTIONS: Readonly<Record<number, Readonly<Record<number, SignalOptionDef>>>> = {
  [SignalCode.CSM]: {
    [SignalOption.MaxMessageSize]: { name: 'Max-Message-Size', format: 'uint' },
    [SignalOption.BlockWiseTransfer]: { name: 'Block-Wise-Transfer', format: 'empty' },
  },
  [SignalCode.Ping]: { [SignalOption.Custody]: { name: 'Custody', format: 'empty' } },
  [SignalCode.Pong]: { [SignalOption.Custody]: { name: 'Custody', format: 'empty' } },
  [SignalCode.Release]: {
    [SignalOption.AlternativeAddress]: { name: 'Alternative-Address', format: 'string' },
    [SignalOption.HoldOff]: { name: 'Hold-Off', format: 'uint' },
  },
  [SignalCode.Abort]: { [SignalOption.BadCsmOption]: { name: 'Bad-CSM-Option', format: 'uint' } },
};

/** The Max-Message-Size every peer may assume before the CSM arrives (RFC 8323 §5.3.1). */
export const DEFAULT_RELIABLE_MAX_MESSAGE_SIZE = 1152;

/** A CoAP message as RFC 8323 frames carry it (no Type, no Message ID). */
export interface ReliableMessage {
  code: number;
  token: Buffer;
  /** Options in wire order. */
  options: CoapOption[];
  payload: Buffer;
}

/** Input of `encodeFrame`. */
export interface EncodableReliableMessage {
  code: number;
  token?: Uint8Array | undefined;
  options?: readonly { number: number; value: Uint8Array }[] | undefined;
  payload?: Uint8Array | undefined;
}

const EMPTY = Buffer.alloc(0);

/** Size of the Extended Length field for a body of `len` bytes (TCP framing). */
function extLenSize(len: number): number {
  return len < 13 ? 0 : len < 269 ? 1 : len < 65805 ? 2 : 4;
}

/** Size of the header (Len/TKL byte, Extended Length, Code) for a body of `len` bytes. */
export function frameHeaderSize(bodyLength: number, websocket: boolean): number {
  return websocket ? 2 : 2 + extLenSize(bodyLength);
}

/**
 * Builds a frame from its parts: `body` is the options, payload marker and
 * payload exactly as RFC 7252 encodes them after the token.
 */
export function buildFrame(code: number, token: Uint8Array, body: Uint8Array, websocket: boolean): Buffer {
  const tkl = token.length;
  if (tkl > 8) throw new InvalidArgumentError(`token is ${tkl} bytes (max 8)`);
  if (!(code >= 0 && code <= 255 && Number.isInteger(code)))
    throw new InvalidArgumentError(`invalid code ${code}`);
  const len = body.length;
  if (len > 0xffffffff + 65805) throw new InvalidArgumentError(`message body of ${len} bytes is too long`);
  const head = frameHeaderSize(len, websocket);
  const out = Buffer.allocUnsafe(head + tkl + len);
  let pos = 1;
  if (websocket) out[0] = tkl;
  else if (len < 13) out[0] = (len << 4) | tkl;
  else if (len < 269) {
    out[0] = 0xd0 | tkl;
    out[pos++] = len - 13;
  } else if (len < 65805) {
    out[0] = 0xe0 | tkl;
    out.writeUInt16BE(len - 269, pos);
    pos += 2;
  } else {
    out[0] = 0xf0 | tkl;
    out.writeUInt32BE(len - 65805, pos);
    pos += 4;
  }
  out[pos++] = code;
  out.set(token, pos);
  out.set(body, pos + tkl);
  return out;
}

/**
 * The options and payload, encoded as RFC 7252 §3.1 does after the token: the same bytes in
 * both framings, so the message codec writes them (and validates and sorts the options).
 */
function encodeBody(
  options: readonly { number: number; value: Uint8Array }[] | undefined,
  payload: Uint8Array | undefined,
): Uint8Array {
  if ((options === undefined || options.length === 0) && (payload === undefined || payload.length === 0))
    return EMPTY;
  // Code 0.01 only because an empty message (0.00) may carry nothing; the 4-byte header is dropped.
  return encodeMessage({
    type: 0,
    code: 1,
    messageId: 0,
    options: options ?? [],
    payload: payload ?? EMPTY,
  }).subarray(4);
}

/** Encodes one message as an RFC 8323 frame (TCP/TLS framing, or the WebSocket one). */
export function encodeFrame(msg: EncodableReliableMessage, websocket = false): Buffer {
  return buildFrame(msg.code, msg.token ?? EMPTY, encodeBody(msg.options, msg.payload), websocket);
}

/** Where the parts of a frame lie, from its header. */
export interface FrameHeader {
  /** Total frame size in bytes (header, token, options and payload). */
  size: number;
  tkl: number;
  code: number;
  /** Offset of the token (the code is the byte before). */
  tokenOffset: number;
}

/**
 * Reads a frame header at `offset`. Returns undefined when `buf` does not
 * yet hold the whole header (stream framing). For the WebSocket framing the
 * frame is the whole of `buf` from `offset`.
 */
export function readFrameHeader(
  buf: Uint8Array,
  offset: number,
  websocket: boolean,
): FrameHeader | undefined {
  const avail = buf.length - offset;
  if (avail < 1) return undefined;
  const b0 = buf[offset]!;
  const tkl = b0 & 0x0f;
  const lenNibble = b0 >> 4;
  if (websocket) {
    if (lenNibble !== 0) throw new MessageFormatError(`WebSocket frame with Len ${lenNibble} (must be 0)`);
    if (avail < 2) throw new MessageFormatError('WebSocket frame shorter than its header');
    return { size: avail, tkl, code: buf[offset + 1]!, tokenOffset: offset + 2 };
  }
  let ext = 0;
  let len = lenNibble;
  if (lenNibble === 13) ext = 1;
  else if (lenNibble === 14) ext = 2;
  else if (lenNibble === 15) ext = 4;
  if (avail < 2 + ext) return undefined;
  const p = offset + 1;
  if (ext === 1) len = buf[p]! + 13;
  else if (ext === 2) len = ((buf[p]! << 8) | buf[p + 1]!) + 269;
  else if (ext === 4)
    len = buf[p]! * 0x1000000 + ((buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!) + 65805;
  const tokenOffset = p + ext + 1;
  return { size: 2 + ext + tkl + len, tkl, code: buf[p + ext]!, tokenOffset };
}

/**
 * Converts one complete frame to an RFC 7252 datagram: a NON with Message
 * ID 0 (the message layer of a reliable endpoint ignores both).
 */
export function frameToDatagram(frame: Uint8Array, websocket: boolean): Buffer {
  const h = readFrameHeader(frame, 0, websocket);
  if (h === undefined || h.size !== frame.length) throw new MessageFormatError('incomplete frame');
  if (h.tkl > 8) throw new MessageFormatError(`token length ${h.tkl} is reserved (must be 0-8)`);
  const rest = frame.length - h.tokenOffset;
  if (rest < h.tkl) throw new MessageFormatError('truncated token');
  const out = Buffer.allocUnsafe(4 + rest);
  out[0] = 0x50 | h.tkl;
  out[1] = h.code;
  out[2] = 0;
  out[3] = 0;
  out.set(frame.subarray(h.tokenOffset), 4);
  return out;
}

/**
 * Converts an RFC 7252 datagram to a frame (its Type and Message ID are
 * dropped). Undefined for an Empty message (ACK, RST, ping: reliable
 * transports have none of them).
 */
export function datagramToFrame(datagram: Uint8Array, websocket: boolean): Buffer | undefined {
  if (datagram.length < 4 || datagram[1] === 0) return undefined;
  const tkl = datagram[0]! & 0x0f;
  if (tkl > 8 || datagram.length < 4 + tkl) throw new InvalidArgumentError('malformed datagram');
  return buildFrame(datagram[1]!, datagram.subarray(4, 4 + tkl), datagram.subarray(4 + tkl), websocket);
}

/** Decodes one complete frame (validating its options as RFC 7252 does). */
export function decodeFrame(frame: Uint8Array, websocket = false): ReliableMessage {
  const m = decodeMessage(frameToDatagram(frame, websocket));
  return { code: m.code, token: m.token, options: m.options, payload: m.payload };
}

/** A frame whose announced size exceeds the receiver's Max-Message-Size. */
export class FrameTooLargeError extends MessageFormatError {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`frame of ${size} bytes exceeds the Max-Message-Size of ${limit}`);
  }
}

/**
 * Splits a TCP/TLS byte stream into frames. Holds at most one frame
 * (bounded by `maxFrameSize`): a header announcing more throws
 * FrameTooLargeError before anything of that frame is buffered, so the
 * connection can be aborted (7.05).
 */
export class FrameDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxFrameSize: number) {}

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** Size of the frame being collected, once its header is known (0: not yet). */
  private need = 0;

  /** Feeds a chunk; calls `onFrame` for every complete frame (the frame Buffer may be kept). */
  push(chunk: Buffer, onFrame: (frame: Buffer) => void): void {
    let buf: Buffer;
    if (this.pendingBytes === 0) buf = chunk;
    else {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      // Collect without copying until the frame is complete (no quadratic concatenation).
      if (this.need !== 0 && this.pendingBytes < this.need) return;
      buf = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    this.need = 0;
    let pos = 0;
    while (pos < buf.length) {
      const h = readFrameHeader(buf, pos, false);
      if (h !== undefined && h.size > this.maxFrameSize)
        throw new FrameTooLargeError(h.size, this.maxFrameSize);
      if (h === undefined || pos + h.size > buf.length) {
        // Keep the incomplete rest (at most one frame, bounded above).
        const rest = buf.subarray(pos);
        this.pending.push(rest);
        this.pendingBytes = rest.length;
        this.need = h?.size ?? 0;
        return;
      }
      onFrame(buf.subarray(pos, pos + h.size));
      pos += h.size;
    }
  }
}

/** What a peer announced in its CSM (RFC 8323 §5.3). */
export interface PeerCapabilities {
  /** Largest message the peer accepts (1152 until its CSM says otherwise). */
  maxMessageSize: number;
  /** The peer supports BERT (RFC 8323 §6). */
  blockWiseTransfer: boolean;
}

/** Encodes a uint option value (shortest form). */
export function uintValue(n: number): Buffer {
  if (n === 0) return EMPTY;
  const bytes: number[] = [];
  let v = n;
  while (v > 0) {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  }
  return Buffer.from(bytes);
}

/** Reads a uint option value (up to 6 bytes). */
export function readUint(value: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < value.length && i < 6; i++) n = n * 256 + value[i]!;
  return n;
}

/**
 * A CSM (7.01) announcing `maxMessageSize` (omitted when undefined: the peer
 * then assumes 1152) and, when `blockWise`, BERT support.
 */
export function encodeCsm(
  maxMessageSize: number | undefined,
  blockWise: boolean,
  websocket: boolean,
): Buffer {
  const options: CoapOption[] = [];
  if (maxMessageSize !== undefined) {
    options.push({ number: SignalOption.MaxMessageSize, value: uintValue(maxMessageSize) });
  }
  if (blockWise) options.push({ number: SignalOption.BlockWiseTransfer, value: EMPTY });
  return encodeFrame({ code: SignalCode.CSM, options }, websocket);
}

/**
 * Applies a CSM to what is known of the peer (RFC 8323 §5.3: values not
 * named keep their previous value). Returns the number of an unknown
 * critical option (odd number), which calls for an Abort with
 * Bad-CSM-Option, or undefined.
 */
export function applyCsm(caps: PeerCapabilities, msg: ReliableMessage): number | undefined {
  for (const o of msg.options) {
    if (o.number === SignalOption.MaxMessageSize) caps.maxMessageSize = readUint(o.value);
    else if (o.number === SignalOption.BlockWiseTransfer) caps.blockWiseTransfer = true;
    else if (o.number & 1) return o.number;
  }
  return undefined;
}

/** An Abort (7.05) with a diagnostic payload and optionally Bad-CSM-Option. */
export function encodeAbort(diagnostic: string, websocket: boolean, badCsmOption?: number): Buffer {
  return encodeFrame(
    {
      code: SignalCode.Abort,
      ...(badCsmOption !== undefined
        ? { options: [{ number: SignalOption.BadCsmOption, value: uintValue(badCsmOption) }] }
        : {}),
      payload: Buffer.from(diagnostic, 'utf8'),
    },
    websocket,
  );
}
