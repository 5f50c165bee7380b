/**
 * DTLS handshake message framing (RFC 6347 §4.2.2-4.2.3): the 12-byte header
 *   msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
 * fragmentation to fit the path MTU, and reassembly of fragments that may be
 * duplicated, overlapping, reordered, or belong to future messages.
 */
import { Buffer } from 'node:buffer';
import { DtlsError } from '../../errors.js';
import { decodeError } from './reader.js';

export const HANDSHAKE_HEADER_LENGTH = 12;
/** Largest handshake message we are willing to reassemble. */
export const MAX_HANDSHAKE_MESSAGE = 16384;

export interface HandshakeFragment {
  msgType: number;
  length: number;
  messageSeq: number;
  fragmentOffset: number;
  fragmentLength: number;
  body: Buffer;
}

export interface HandshakeMessage {
  msgType: number;
  messageSeq: number;
  body: Buffer;
}

/** Parses all handshake fragments in one record's plaintext. */
export function parseHandshakeFragments(data: Buffer): HandshakeFragment[] {
  const out: HandshakeFragment[] = [];
  let o = 0;
  while (o < data.length) {
    if (data.length - o < HANDSHAKE_HEADER_LENGTH) throw decodeError('truncated handshake header');
    const msgType = data[o]!;
    const length = data.readUIntBE(o + 1, 3);
    const messageSeq = data.readUInt16BE(o + 4);
    const fragmentOffset = data.readUIntBE(o + 6, 3);
    const fragmentLength = data.readUIntBE(o + 9, 3);
    if (fragmentOffset + fragmentLength > length)
      throw decodeError('handshake fragment beyond message length');
    const start = o + HANDSHAKE_HEADER_LENGTH;
    if (start + fragmentLength > data.length) throw decodeError('truncated handshake fragment');
    out.push({
      msgType,
      length,
      messageSeq,
      fragmentOffset,
      fragmentLength,
      body: data.subarray(start, start + fragmentLength),
    });
    o = start + fragmentLength;
  }
  return out;
}

export function encodeFragment(
  msgType: number,
  messageSeq: number,
  body: Uint8Array,
  offset: number,
  fragLen: number,
): Buffer {
  const out = Buffer.allocUnsafe(HANDSHAKE_HEADER_LENGTH + fragLen);
  out[0] = msgType;
  out.writeUIntBE(body.length, 1, 3);
  out.writeUInt16BE(messageSeq, 4);
  out.writeUIntBE(offset, 6, 3);
  out.writeUIntBE(fragLen, 9, 3);
  out.set(body.subarray(offset, offset + fragLen), HANDSHAKE_HEADER_LENGTH);
  return out;
}

/** Splits one message in fragments whose body is at most `maxBody` bytes (each with its header). */
export function fragmentMessage(
  msgType: number,
  messageSeq: number,
  body: Uint8Array,
  maxBody: number,
): Buffer[] {
  if (maxBody < 1) throw new DtlsError('MTU too small for DTLS handshake');
  if (body.length === 0) return [encodeFragment(msgType, messageSeq, body, 0, 0)];
  const out: Buffer[] = [];
  for (let off = 0; off < body.length; off += maxBody) {
    out.push(encodeFragment(msgType, messageSeq, body, off, Math.min(maxBody, body.length - off)));
  }
  return out;
}

interface Partial {
  msgType: number;
  body: Buffer;
  have: Uint8Array;
  missing: number;
}

/**
 * Reassembles handshake messages in message_seq order. `add()` returns the
 * messages that became deliverable (in order). Fragments of already delivered
 * messages are ignored (the caller detects retransmissions via `isOld`).
 */
export class HandshakeReassembler {
  nextSeq: number;
  /** Created on the first fragment that is not delivered at once (most handshakes never need it). */
  private pending: Map<number, Partial> | undefined;

  constructor(
    nextSeq = 0,
    private readonly window = 16,
  ) {
    this.nextSeq = nextSeq;
  }

  isOld(frag: HandshakeFragment): boolean {
    return frag.messageSeq < this.nextSeq;
  }

  add(frag: HandshakeFragment): HandshakeMessage[] {
    if (frag.messageSeq < this.nextSeq || frag.messageSeq >= this.nextSeq + this.window) return [];
    if (frag.length > MAX_HANDSHAKE_MESSAGE) throw decodeError('handshake message too long');
    // Fast path: the next expected message in one unfragmented piece, nothing buffered.
    if (
      this.pending === undefined &&
      frag.messageSeq === this.nextSeq &&
      frag.fragmentOffset === 0 &&
      frag.fragmentLength === frag.length
    ) {
      this.nextSeq++;
      return [{ msgType: frag.msgType, messageSeq: frag.messageSeq, body: frag.body }];
    }
    this.pending ??= new Map();
    let p = this.pending.get(frag.messageSeq);
    if (p === undefined) {
      p = {
        msgType: frag.msgType,
        body: Buffer.alloc(frag.length),
        have: new Uint8Array(frag.length),
        missing: frag.length,
      };
      this.pending.set(frag.messageSeq, p);
    } else if (p.msgType !== frag.msgType || p.body.length !== frag.length) {
      throw decodeError('inconsistent handshake fragments');
    }
    const end = frag.fragmentOffset + frag.fragmentLength;
    for (let i = frag.fragmentOffset; i < end; i++) {
      if (p.have[i] === 0) {
        p.have[i] = 1;
        p.missing--;
        p.body[i] = frag.body[i - frag.fragmentOffset]!;
      }
    }
    const out: HandshakeMessage[] = [];
    for (;;) {
      const next = this.pending.get(this.nextSeq);
      if (next === undefined || next.missing > 0) break;
      this.pending.delete(this.nextSeq);
      out.push({ msgType: next.msgType, messageSeq: this.nextSeq, body: next.body });
      this.nextSeq++;
    }
    if (this.pending.size === 0) this.pending = undefined;
    return out;
  }

  /** Drops buffered partial messages (e.g. on handshake restart). */
  reset(nextSeq: number): void {
    this.pending = undefined;
    this.nextSeq = nextSeq;
  }
}
