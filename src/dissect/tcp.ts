/**
 * CoAP over TCP (RFC 8323 §3) in the dissector: splits a reassembled TCP
 * stream direction into frames, resynchronises after a gap or a stream that
 * started before the capture, and describes each frame's message (signaling
 * options by name). The framing codec is src/codec/reliable.ts; this file only
 * follows a stream. Pure, no I/O.
 */
import { Buffer } from 'node:buffer';
import { toHex } from '../capture/bytes.js';
import type { Delivered } from '../capture/tcp.js';
import { decodeMessage } from '../codec/message.js';
import { frameToDatagram, readFrameHeader, readUint, SIGNAL_OPTIONS } from '../codec/reliable.js';
import { signalingName } from '../trace/frame.js';
import { type CoapMessageInfo, type CoapOptionInfo, describeMessage, summarize } from './coap.js';

/**
 * The largest frame the dissector reassembles. A header announcing more (RFC 8323
 * allows 4 GiB) is reported and its bytes skipped, never buffered.
 */
export const MAX_TCP_COAP_FRAME = 8 * 1024 * 1024;

/** A complete frame read from a stream, and the capture frames that carried its bytes. */
export interface StreamFrame {
  bytes: Uint8Array;
  /** Capture frame whose arrival completed the frame in stream order (tshark shows the message there). */
  at: number;
  /** Capture frame numbers, in order (the last one completed the frame). */
  segments: number[];
}

/** Something the stream reader reports (attached to the capture frame that revealed it). */
export interface StreamNote {
  frame: number;
  text: string;
  /** Something lost or refused (an error of the frame), not just information. */
  problem: boolean;
}

function describeSignalingOption(code: number, number: number, value: Uint8Array): CoapOptionInfo {
  const def = SIGNAL_OPTIONS[code]?.[number];
  const raw = toHex(value);
  if (def === undefined) {
    return {
      number,
      name: `Unknown signaling option ${number}${number & 1 ? ' (critical)' : ''}`,
      format: 'unknown',
      value: raw,
      raw,
      display: raw === '' ? '(empty)' : `0x${raw}`,
    };
  }
  const { name, format } = def;
  if (format === 'empty' || (format === 'uint' && value.length > 4))
    return {
      number,
      name,
      format,
      value: format === 'empty' ? null : raw,
      raw,
      display: raw === '' ? '(empty)' : `0x${raw}`,
    };
  if (format === 'string') {
    const s = Buffer.from(value).toString('utf8');
    return { number, name, format, value: s, raw, display: JSON.stringify(s) };
  }
  const n = readUint(value);
  const unit = name === 'Hold-Off' ? ' s' : name === 'Max-Message-Size' ? ' B' : '';
  return { number, name, format, value: n, raw, display: `${n}${unit}` };
}

/**
 * Describes one complete RFC 8323 frame as a CoAP message of the dissection.
 * Throws a CoapError (MessageFormatError) when the frame does not decode.
 */
export function describeTcpFrame(
  frame: StreamFrame,
  ctx: { index: number; relTime: number; src: string; dst: string; stream: number },
): CoapMessageInfo {
  const datagram = frameToDatagram(frame.bytes, false);
  const m = decodeMessage(datagram);
  const info = describeMessage(m, datagram.length, {
    index: ctx.index,
    frame: frame.at,
    relTime: ctx.relTime,
    src: ctx.src,
    dst: ctx.dst,
    transport: 'tcp',
  });
  // Len/TKL, Extended Length and Code: the datagram has 4 bytes in their place.
  const headerBytes = frame.bytes.length - datagram.length + 4;
  info.type = -1;
  info.typeName = 'TCP';
  info.messageId = -1;
  info.headerLength = frame.bytes.length - m.payload.length;
  info.optionsLength = info.headerLength - headerBytes - m.token.length - (m.payload.length > 0 ? 1 : 0);
  info.tcp = {
    stream: ctx.stream,
    frameLength: frame.bytes.length,
    frameHeaderLength: headerBytes,
    segments: [...new Set(frame.segments)],
  };
  const sig = signalingName(m.code);
  if (sig !== undefined) {
    info.kind = 'signaling';
    info.codeName = sig;
    info.options = m.options.map((o) => describeSignalingOption(m.code, o.number, o.value));
    info.uriPath = '';
    delete info.uriQuery;
    delete info.contentFormat;
    delete info.observe;
    delete info.block1;
    delete info.block2;
  }
  info.summary = summarize(info);
  return info;
}

/** Codes registered for CoAP (RFC 7252, 7959, 8132, 8323, 8516...): resynchronisation accepts only these. */
const REGISTERED_CODES = new Set([
  // requests 0.01-0.07
  1, 2, 3, 4, 5, 6, 7,
  // 2.01-2.05, 2.31
  65, 66, 67, 68, 69, 95,
  // 4.00-4.06, 4.08, 4.12, 4.13, 4.15, 4.22, 4.29
  128, 129, 130, 131, 132, 133, 134, 136, 140, 141, 143, 150, 157,
  // 5.00-5.05, 5.08
  160, 161, 162, 163, 164, 165, 168,
  // 7.01-7.05
  225, 226, 227, 228, 229,
]);

/**
 * Does this segment start with a frame, as a sender writes them? After a gap or
 * a mid-stream start, a segment is taken as a frame boundary only when it is a
 * chain of whole frames that covers it exactly, each with a token of 0-8 bytes,
 * a registered code (not Empty) and options that decode. Payload bytes rarely
 * pass; when they cannot be told apart, nothing is decoded until one that does.
 */
function framesCoverSegment(chunk: Uint8Array): boolean {
  let o = 0;
  while (o < chunk.length) {
    let h: ReturnType<typeof readFrameHeader>;
    try {
      h = readFrameHeader(chunk, o, false);
    } catch {
      return false;
    }
    if (h === undefined || h.tkl > 8 || !REGISTERED_CODES.has(h.code) || o + h.size > chunk.length)
      return false;
    try {
      decodeMessage(frameToDatagram(chunk.subarray(o, o + h.size), false));
    } catch {
      return false;
    }
    o += h.size;
  }
  return o > 0;
}

/**
 * Follows one direction of a CoAP-over-TCP connection. Holds at most one
 * incomplete frame (≤ MAX_TCP_COAP_FRAME bytes, as chunks of the capture, copied
 * once when complete); a larger frame is skipped without being held.
 */
export class TcpCoapReader {
  private chunks: Delivered[] = [];
  private held = 0;
  /** Bytes of an oversized frame still to skip. */
  private skipping = 0;
  /** Waiting for a segment that starts with a frame (after a gap, or joined mid-stream). */
  private lost = false;
  /** Bytes dropped while resynchronising (reported once sync is found again). */
  private dropped = 0;
  frames = 0;

  /** Feeds in-order stream bytes; returns the frames completed and what went wrong. */
  push(chunk: Delivered): { frames: StreamFrame[]; notes: StreamNote[] } {
    const frames: StreamFrame[] = [];
    const notes: StreamNote[] = [];
    if (chunk.fresh) {
      if (this.held > 0 || this.skipping > 0)
        notes.push({
          frame: chunk.frame,
          text: `incomplete RFC 8323 frame (${this.held} byte(s) of it seen) dropped: its connection ended and a new one starts here`,
          problem: true,
        });
      this.discard();
      this.lost = false;
      this.dropped = 0;
    }
    if (chunk.afterGap) {
      if (this.held > 0)
        notes.push({
          frame: chunk.frame,
          text: `incomplete RFC 8323 frame (${this.held} byte(s) of it seen) dropped: bytes of the stream are missing after it`,
          problem: true,
        });
      this.discard();
      this.lost = true;
    }
    let data = chunk.data;
    if (this.skipping > 0) {
      const n = Math.min(this.skipping, data.length);
      this.skipping -= n;
      data = data.subarray(n);
      if (data.length === 0) return { frames, notes };
    }
    if (this.lost) {
      if (!framesCoverSegment(data)) {
        this.dropped += data.length;
        return { frames, notes };
      }
      this.lost = false;
      notes.push({
        frame: chunk.frame,
        text: `resynchronised: this segment holds whole frames${this.dropped > 0 ? ` (${this.dropped} byte(s) skipped before it)` : ''}`,
        problem: false,
      });
      this.dropped = 0;
    }
    this.chunks.push({ data, frame: chunk.frame, at: chunk.at, afterGap: false });
    this.held += data.length;
    for (;;) {
      if (this.held === 0) break;
      const head = this.peek(6);
      let h: ReturnType<typeof readFrameHeader>;
      try {
        h = readFrameHeader(head, 0, false);
      } catch {
        h = undefined;
      }
      if (h === undefined) break;
      if (h.size > MAX_TCP_COAP_FRAME) {
        notes.push({
          frame: chunk.frame,
          text: `RFC 8323 frame announces ${h.size} bytes, more than the dissector's bound of ${MAX_TCP_COAP_FRAME}: skipped`,
          problem: true,
        });
        const rest = h.size - this.held;
        this.discard();
        this.skipping = rest;
        break;
      }
      if (this.held < h.size) break;
      frames.push({ ...this.take(h.size), at: chunk.at });
      this.frames++;
    }
    return { frames, notes };
  }

  /** Bytes of an incomplete frame held at the end of the capture (0: none). */
  get pendingBytes(): number {
    return this.held;
  }

  /** The announced size of the incomplete frame held, when its header is complete. */
  pendingFrameSize(): number | undefined {
    if (this.held === 0) return undefined;
    try {
      return readFrameHeader(this.peek(6), 0, false)?.size;
    } catch {
      return undefined;
    }
  }

  /** Forgets the incomplete frame held, and an oversized one being skipped. */
  private discard(): void {
    this.chunks = [];
    this.held = 0;
    this.skipping = 0;
  }

  private peek(n: number): Uint8Array {
    const first = this.chunks[0] as Delivered;
    if (first.data.length >= n || this.chunks.length === 1) return first.data.subarray(0, n);
    const out: number[] = [];
    for (const c of this.chunks) {
      for (let i = 0; i < c.data.length && out.length < n; i++) out.push(c.data[i] as number);
      if (out.length >= n) break;
    }
    return Uint8Array.from(out);
  }

  private take(size: number): Omit<StreamFrame, 'at'> {
    const segments: number[] = [];
    const first = this.chunks[0] as Delivered;
    if (first.data.length >= size) {
      const bytes = first.data.subarray(0, size);
      segments.push(first.frame);
      if (first.data.length === size) this.chunks.shift();
      else this.chunks[0] = { ...first, data: first.data.subarray(size) };
      this.held -= size;
      return { bytes, segments };
    }
    const bytes = new Uint8Array(size);
    let o = 0;
    while (o < size) {
      const c = this.chunks[0] as Delivered;
      const n = Math.min(size - o, c.data.length);
      bytes.set(c.data.subarray(0, n), o);
      segments.push(c.frame);
      o += n;
      if (n === c.data.length) this.chunks.shift();
      else this.chunks[0] = { ...c, data: c.data.subarray(n) };
    }
    this.held -= size;
    return { bytes, segments };
  }
}
