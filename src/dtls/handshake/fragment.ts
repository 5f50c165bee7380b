/**
 * DTLS handshake message framing (RFC 6347 §4.2.2-4.2.3): the 12-byte header
 *   msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
 * fragmentation to fit the path MTU, and reassembly of fragments that may be
 * duplicated, overlapping, reordered, or belong to future messages.
 */
import { Buffer } from 'node:buffer';
import { alertError, DtlsError } from '../errors.js';
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

/**
 * The handshake fragment whose 12-byte header starts at `o` (the caller checks
 * that the header is there). The body is cut at the end of `data`, so a body
 * shorter than `fragmentLength` means a truncated fragment; nothing else is
 * checked. Shared by `parseHandshakeFragments` and the passive decoder.
 */
export function handshakeFragmentAt(data: Buffer, o: number): HandshakeFragment {
  const fragmentLength = data.readUIntBE(o + 9, 3);
  const start = o + HANDSHAKE_HEADER_LENGTH;
  return {
    msgType: data[o]!,
    length: data.readUIntBE(o + 1, 3),
    messageSeq: data.readUInt16BE(o + 4),
    fragmentOffset: data.readUIntBE(o + 6, 3),
    fragmentLength,
    body: data.subarray(start, start + fragmentLength),
  };
}

/** Parses all handshake fragments in one record's plaintext. */
export function parseHandshakeFragments(data: Buffer): HandshakeFragment[] {
  const out: HandshakeFragment[] = [];
  let o = 0;
  while (o < data.length) {
    if (data.length - o < HANDSHAKE_HEADER_LENGTH) throw decodeError('truncated handshake header');
    const f = handshakeFragmentAt(data, o);
    if (f.fragmentOffset + f.fragmentLength > f.length)
      throw decodeError('handshake fragment beyond message length');
    if (f.body.length < f.fragmentLength) throw decodeError('truncated handshake fragment');
    out.push(f);
    o += HANDSHAKE_HEADER_LENGTH + f.fragmentLength;
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

/**
 * A byte budget shared by the reassemblers of one endpoint (all its
 * handshakes): `used` is what their partial messages hold right now.
 */
export class ReassemblyBudget {
  used = 0;
  constructor(
    /** Bytes all partial messages together may hold. */
    readonly limit: number,
  ) {}
}

export interface ReassemblyLimits {
  /** Largest handshake message (its claimed `length`) accepted; a longer one is a fatal error. */
  maxMessageBytes: number;
  /**
   * Bytes this reassembler may hold in partial messages (received bytes plus
   * CHUNK_OVERHEAD per stored piece); a fragment that would exceed it is a fatal error.
   */
  maxBufferedBytes: number;
  /** Budget shared with other reassemblers; a fragment that does not fit is dropped (the peer retransmits). */
  shared?: ReassemblyBudget | undefined;
}

/** Accounting cost of one stored piece besides its bytes (object, Buffer and its backing store). */
export const CHUNK_OVERHEAD = 96;

/**
 * Limits when none are given (client connections, passive decoders): 16 KB
 * messages, 256 KiB held (16 messages' worth, the default window).
 */
export const DEFAULT_REASSEMBLY_LIMITS: ReassemblyLimits = {
  maxMessageBytes: MAX_HANDSHAKE_MESSAGE,
  maxBufferedBytes: 16 * MAX_HANDSHAKE_MESSAGE,
};

interface Chunk {
  start: number;
  data: Buffer;
}

interface Partial {
  msgType: number;
  length: number;
  /** Received pieces, sorted by start, not overlapping (copies: they pin no datagram). */
  chunks: Chunk[];
  /** Bytes of the message received so far. */
  have: number;
  /** What this partial message is charged (bytes + CHUNK_OVERHEAD per piece). */
  cost: number;
}

function illegalParameter(message: string): DtlsError {
  return alertError(47, message);
}

/**
 * Reassembles handshake messages in message_seq order. `add()` returns the
 * messages that became deliverable (in order). Fragments of already delivered
 * messages are ignored (the caller detects retransmissions via `isOld`).
 *
 * Memory follows the bytes actually received, never the length a fragment
 * claims: a partial message keeps copies of the received pieces only and is
 * assembled into one buffer when complete. `limits` bound the claimed length
 * of a message, the bytes held by this reassembler and (shared) by all of an
 * endpoint's reassemblers; `release()` gives everything back.
 */
export class HandshakeReassembler {
  nextSeq: number;
  /** Created on the first fragment that is not delivered at once (most handshakes never need it). */
  private pending: Map<number, Partial> | undefined;
  /** Bytes charged for the partial messages held now. */
  private held = 0;
  /** Bytes charged through hold() (the owner's other buffers, e.g. early records). */
  private extra = 0;

  constructor(
    nextSeq = 0,
    private readonly window = 16,
    private readonly limits: ReassemblyLimits = DEFAULT_REASSEMBLY_LIMITS,
  ) {
    this.nextSeq = nextSeq;
  }

  /** Bytes (plus per-piece overhead) held in partial messages now. */
  get bufferedBytes(): number {
    return this.held + this.extra;
  }

  /**
   * Charges `bytes` the owner buffers for this handshake to the same budgets;
   * false (nothing charged) when they do not fit. Give them back with unhold().
   */
  hold(bytes: number): boolean {
    if (this.held + this.extra + bytes > this.limits.maxBufferedBytes) return false;
    const shared = this.limits.shared;
    if (shared !== undefined) {
      if (shared.used + bytes > shared.limit) return false;
      shared.used += bytes;
    }
    this.extra += bytes;
    return true;
  }

  unhold(bytes: number): void {
    this.extra -= bytes;
    const shared = this.limits.shared;
    if (shared !== undefined) shared.used -= bytes;
  }

  isOld(frag: HandshakeFragment): boolean {
    return frag.messageSeq < this.nextSeq;
  }

  add(frag: HandshakeFragment): HandshakeMessage[] {
    if (frag.messageSeq < this.nextSeq || frag.messageSeq >= this.nextSeq + this.window) return [];
    if (frag.length > this.limits.maxMessageBytes)
      throw illegalParameter(
        `handshake message too long (${frag.length} bytes, limit ${this.limits.maxMessageBytes})`,
      );
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
    let p = this.pending?.get(frag.messageSeq);
    if (p !== undefined && (p.msgType !== frag.msgType || p.length !== frag.length)) {
      throw decodeError('inconsistent handshake fragments');
    }
    // The parts of [offset, end) not received yet.
    const start = frag.fragmentOffset;
    const end = start + frag.fragmentLength;
    const gaps: number[] = [];
    let cost = 0;
    let pos = start;
    if (p !== undefined) {
      for (const c of p.chunks) {
        const cEnd = c.start + c.data.length;
        if (cEnd <= pos) continue;
        if (c.start >= end) break;
        if (c.start > pos) {
          gaps.push(pos, c.start);
          cost += c.start - pos + CHUNK_OVERHEAD;
        }
        pos = cEnd;
        if (pos >= end) break;
      }
    }
    if (pos < end) {
      gaps.push(pos, end);
      cost += end - pos + CHUNK_OVERHEAD;
    }
    if (p === undefined) cost += CHUNK_OVERHEAD; // the partial message itself
    if (cost > 0) {
      if (this.held + this.extra + cost > this.limits.maxBufferedBytes)
        throw illegalParameter(
          `handshake fragments exceed the reassembly budget (${this.limits.maxBufferedBytes} bytes)`,
        );
      const shared = this.limits.shared;
      if (shared !== undefined) {
        // Over the endpoint's budget: drop the fragment; a live peer retransmits it.
        if (shared.used + cost > shared.limit) return [];
        shared.used += cost;
      }
      this.held += cost;
    }
    if (p === undefined) {
      p = { msgType: frag.msgType, length: frag.length, chunks: [], have: 0, cost: 0 };
      this.pending ??= new Map();
      this.pending.set(frag.messageSeq, p);
    }
    p.cost += cost;
    if (gaps.length > 0) {
      for (let i = 0; i < gaps.length; i += 2) {
        const s = gaps[i]!;
        const e = gaps[i + 1]!;
        // Unpooled copy: a pooled one could keep a whole 8 KB pool slab alive.
        const data = Buffer.allocUnsafeSlow(e - s);
        frag.body.copy(data, 0, s - start, e - start);
        p.chunks.push({ start: s, data });
        p.have += e - s;
      }
      p.chunks.sort((a, b) => a.start - b.start);
    }
    const out: HandshakeMessage[] = [];
    const pending = this.pending!;
    for (;;) {
      const next = pending.get(this.nextSeq);
      if (next === undefined || next.have < next.length) break;
      pending.delete(this.nextSeq);
      this.give(next.cost);
      const body = Buffer.allocUnsafe(next.length);
      for (const c of next.chunks) c.data.copy(body, c.start);
      out.push({ msgType: next.msgType, messageSeq: this.nextSeq, body });
      this.nextSeq++;
    }
    if (pending.size === 0) this.pending = undefined;
    return out;
  }

  private give(cost: number): void {
    this.held -= cost;
    const shared = this.limits.shared;
    if (shared !== undefined) shared.used -= cost;
  }

  /** Drops buffered partial messages (e.g. on handshake restart). */
  reset(nextSeq: number): void {
    this.release();
    this.nextSeq = nextSeq;
  }

  /** Drops buffered partial messages and gives their bytes back to the budgets (not what hold() took). */
  release(): void {
    if (this.held !== 0) this.give(this.held);
    this.pending = undefined;
  }
}
