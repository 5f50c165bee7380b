/**
 * TCP segment decoding (RFC 9293 §3.1) and per-direction stream reassembly by
 * sequence number. Pure, no I/O. A capture is untrusted input: every buffer
 * here has a bound (see TCP_LIMITS), and a segment is never trusted to say
 * more than it carries.
 */
import { CaptureFormatError } from '../errors.js';
import { need, u16be, u32be } from './bytes.js';

/** A decoded TCP header and the payload it carries. */
export interface TcpLayer {
  /** Source port. */
  srcPort: number;
  /** Destination port. */
  dstPort: number;
  /** Sequence number of the first payload byte (of the SYN, with SYN set). */
  seq: number;
  /** Acknowledgment number. */
  ack: number;
  /** Header length in bytes (data offset × 4), options included. */
  headerLength: number;
  /** Flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80). */
  flags: number;
  /** Receive window (unscaled). */
  window: number;
  /** Checksum as captured (not verified: loopback captures carry offloaded ones). */
  checksum: number;
  /** Captured payload bytes. */
  payload: Uint8Array;
}

/** FIN flag bit. */
export const TCP_FIN = 0x01;
/** SYN flag bit. */
export const TCP_SYN = 0x02;
/** RST flag bit. */
export const TCP_RST = 0x04;

const FLAG_NAMES: [number, string][] = [
  [0x02, 'SYN'],
  [0x01, 'FIN'],
  [0x04, 'RST'],
  [0x08, 'PSH'],
  [0x10, 'ACK'],
  [0x20, 'URG'],
  [0x40, 'ECE'],
  [0x80, 'CWR'],
];

/** "SYN, ACK", as Wireshark lists them. */
export function tcpFlagNames(flags: number): string[] {
  return FLAG_NAMES.filter(([bit]) => flags & bit).map(([, name]) => name);
}

/**
 * Decodes a TCP header. A header shorter than 20 bytes, a data offset below 5
 * or a data offset past the captured bytes throws CaptureFormatError.
 */
export function decodeTcp(data: Uint8Array): TcpLayer {
  need(data, 0, 20, 'TCP header');
  const headerLength = ((data[12] as number) >> 4) * 4;
  if (headerLength < 20) throw new CaptureFormatError(`bad TCP data offset ${headerLength / 4} (minimum 5)`);
  need(data, 0, headerLength, 'TCP options');
  return {
    srcPort: u16be(data, 0),
    dstPort: u16be(data, 2),
    seq: u32be(data, 4),
    ack: u32be(data, 8),
    headerLength,
    flags: data[13] as number,
    window: u16be(data, 14),
    checksum: u16be(data, 16),
    payload: data.subarray(headerLength),
  };
}

/** The bounds of the reassembler (every one of them is a fixed number). */
export const TCP_LIMITS = {
  /** Stream directions tracked (a connection is two); later ones are reported, not reassembled. */
  maxDirections: 4096,
  /** Out-of-order segments held per direction; one more and the hole is declared a gap. */
  maxPendingSegments: 64,
  /** Out-of-order bytes held per direction. */
  maxPendingBytes: 256 * 1024,
  /** Out-of-order bytes held by all directions together. */
  maxPendingBytesTotal: 8 * 1024 * 1024,
} as const;

/** What happened to a segment's bytes. */
export type SegmentEvent =
  | {
      /** data: bytes delivered in order; retransmission: all already seen; overlap: the first `bytes` already seen; out-of-order: held; after-close: after FIN/RST, ignored. */
      kind: 'data' | 'retransmission' | 'overlap' | 'out-of-order' | 'after-close';
      /** How many bytes. */
      bytes: number;
    }
  | {
      /** Bytes of the stream that never made it into the capture. */
      kind: 'gap';
      /** How many bytes are missing. */
      bytes: number;
      /** Sequence number of the first missing byte. */
      seq: number;
      /** Why the hole is given up on. */
      reason: string;
    }
  | {
      /** The first segment of a stream whose SYN is not in the capture. */
      kind: 'midstream';
      /** Its sequence number (taken as the start of the stream). */
      seq: number;
    };

/** In-order bytes a segment delivered, with the frame that carried each chunk. */
export interface Delivered {
  /** The bytes (a view into the capture, not a copy). */
  data: Uint8Array;
  /** The capture frame that carried these bytes. */
  frame: number;
  /** The capture frame whose arrival put them in order (later than `frame` when held out of order). */
  at: number;
  /** True when a gap precedes this chunk: the reader above must resynchronise. */
  afterGap: boolean;
  /** True on the first bytes after a SYN (a new connection, maybe on a reused port pair): the reader above starts afresh. */
  fresh?: boolean;
}

/** What one segment (or the end of the capture) produced. */
export interface SegmentResult {
  /** Bytes now in order. */
  delivered: Delivered[];
  /** What happened, in order. */
  events: SegmentEvent[];
}

interface Pending {
  seq: number;
  data: Uint8Array;
  /** Bytes the segment had on the wire after `data` that the capture cut off. */
  missing: number;
  frame: number;
  fin: boolean;
}

/** One direction of a TCP connection. */
export class TcpDirection {
  /** Next expected sequence number (undefined before the first segment). */
  next: number | undefined;
  /** The direction was first seen with a SYN (false: it started before the capture). */
  sawSyn = false;
  /** FIN or RST seen: later bytes are ignored (until a new SYN). */
  finished = false;
  /** In-order bytes delivered. */
  bytes = 0;
  /** Holes given up on. */
  gaps = 0;
  /** Bytes missing in them. */
  gapBytes = 0;
  /** Segments wholly or partly seen before. */
  retransmissions = 0;
  /** Segments that arrived ahead of a hole. */
  outOfOrder = 0;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private gapPending = false;
  private fresh = false;

  constructor(
    /** 1-based, in order of first appearance. */
    readonly id: number,
    /** Sender, "10.0.0.1:40000" or "[::1]:40000". */
    readonly src: string,
    /** Receiver. */
    readonly dst: string,
    private readonly shared: { pendingBytes: number },
  ) {}

  /** Out-of-order bytes held right now. */
  get held(): number {
    return this.pendingBytes;
  }

  /** Out-of-order segments held right now. */
  get heldSegments(): number {
    return this.pending.length;
  }

  /**
   * Feeds one segment. `announced` is the payload length the IP header
   * announces (more than `payload.length` when the capture cut the frame): the
   * missing bytes are a gap. Returns the bytes now in order, and what happened.
   */
  push(
    seg: { seq: number; flags: number; payload: Uint8Array; announced: number },
    frame: number,
  ): SegmentResult {
    const delivered: Delivered[] = [];
    const events: SegmentEvent[] = [];
    const syn = (seg.flags & TCP_SYN) !== 0;
    const fin = (seg.flags & TCP_FIN) !== 0;
    let seq = seg.seq;
    if (syn) {
      const isn = (seq + 1) >>> 0;
      // A SYN starts the stream (again, on port reuse after a close); a retransmitted SYN does not.
      if (
        this.next === undefined ||
        this.finished ||
        !this.sawSyn ||
        (this.bytes === 0 && this.next !== isn)
      ) {
        this.reset();
        this.fresh = true;
        this.sawSyn = true;
        this.next = isn;
      }
      seq = isn;
    } else if (this.next === undefined) {
      if (seg.announced === 0) return { delivered, events };
      // Joined mid-stream: take this segment as the start; the reader resynchronises.
      this.next = seq;
      this.gapPending = true;
      events.push({ kind: 'midstream', seq });
    }
    if (seg.announced === 0 && !fin) return { delivered, events };
    if (this.finished) {
      if (seg.announced > 0) events.push({ kind: 'after-close', bytes: seg.announced });
      return { delivered, events };
    }
    this.insert(
      { seq, data: seg.payload, missing: Math.max(0, seg.announced - seg.payload.length), frame, fin },
      events,
    );
    this.drain(delivered, events, frame);
    while (
      this.pending.length > 0 &&
      (this.pending.length > TCP_LIMITS.maxPendingSegments ||
        this.pendingBytes > TCP_LIMITS.maxPendingBytes ||
        this.shared.pendingBytes > TCP_LIMITS.maxPendingBytesTotal)
    ) {
      this.skipToFirstPending(delivered, events, 'out-of-order buffer full while waiting for them', frame);
    }
    return { delivered, events };
  }

  /**
   * At the end of the capture: the holes still open are gaps, and the bytes
   * held after them are delivered (attributed to the frames that carried them).
   */
  flush(): SegmentResult {
    const delivered: Delivered[] = [];
    const events: SegmentEvent[] = [];
    while (this.pending.length > 0)
      this.skipToFirstPending(delivered, events, 'the capture ends before they were seen');
    return { delivered, events };
  }

  /** A RST: the connection is gone; later data (without a new SYN) is ignored. */
  abort(): void {
    this.dropPending();
    this.finished = true;
  }

  /** Gives back the out-of-order segments held (to the shared bound too). */
  private dropPending(): void {
    this.shared.pendingBytes -= this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
  }

  private reset(): void {
    this.dropPending();
    this.finished = false;
    this.gapPending = false;
    this.next = undefined;
  }

  private insert(p: Pending, events: SegmentEvent[]): void {
    const next = this.next as number;
    const wire = p.data.length + p.missing;
    const end = (p.seq + wire) >>> 0;
    if (wire > 0 && seqLe(end, next)) {
      // Everything already seen (a retransmission or a keep-alive probe).
      this.retransmissions++;
      events.push({ kind: 'retransmission', bytes: wire });
      if (p.fin && end === next) this.close();
      return;
    }
    if (seqLt(p.seq, next)) {
      const skip = (next - p.seq) >>> 0;
      this.retransmissions++;
      events.push({ kind: 'overlap', bytes: skip });
      const fromData = Math.min(skip, p.data.length);
      p = { ...p, seq: next, data: p.data.subarray(fromData), missing: p.missing - (skip - fromData) };
    } else if (p.seq !== next) {
      this.outOfOrder++;
      events.push({ kind: 'out-of-order', bytes: wire });
    }
    // Kept in sequence order (a stable insertion: the first copy of a sequence number wins).
    const rel = (x: number): number => (x - next) >>> 0;
    let i = this.pending.length;
    while (i > 0 && rel((this.pending[i - 1] as Pending).seq) > rel(p.seq)) i--;
    this.pending.splice(i, 0, p);
    this.pendingBytes += p.data.length;
    this.shared.pendingBytes += p.data.length;
  }

  /** `at`: the frame being processed (undefined at the end of the capture: each chunk's own). */
  private drain(delivered: Delivered[], events: SegmentEvent[], at?: number): void {
    for (;;) {
      const first = this.pending[0];
      if (first === undefined || this.finished) return;
      const next = this.next as number;
      if (seqLt(next, first.seq)) return;
      this.pending.shift();
      this.pendingBytes -= first.data.length;
      this.shared.pendingBytes -= first.data.length;
      const dataEnd = (first.seq + first.data.length) >>> 0;
      const end = (dataEnd + first.missing) >>> 0;
      if (seqLt(next, dataEnd)) {
        const data = first.data.subarray((next - first.seq) >>> 0);
        delivered.push({
          data,
          frame: first.frame,
          at: at ?? first.frame,
          afterGap: this.gapPending,
          ...(this.fresh ? { fresh: true } : {}),
        });
        this.gapPending = false;
        this.fresh = false;
        this.bytes += data.length;
        events.push({ kind: 'data', bytes: data.length });
        this.next = dataEnd;
      }
      if (seqLt(this.next as number, end)) {
        const from = this.next as number;
        this.recordGap(events, from, (end - from) >>> 0, 'segment cut short by the capture (snap length)');
        this.next = end;
      }
      if (first.fin && this.next === end) this.close();
    }
  }

  private close(): void {
    this.next = ((this.next as number) + 1) >>> 0;
    this.finished = true;
    this.dropPending();
  }

  /** Declares the hole before the first held segment a gap and delivers from there. */
  private skipToFirstPending(
    delivered: Delivered[],
    events: SegmentEvent[],
    reason: string,
    at?: number,
  ): void {
    const first = this.pending[0] as Pending;
    const next = this.next as number;
    if (seqLt(next, first.seq)) {
      this.recordGap(events, next, (first.seq - next) >>> 0, reason);
      this.next = first.seq;
    }
    this.drain(delivered, events, at);
  }

  private recordGap(events: SegmentEvent[], seq: number, bytes: number, reason: string): void {
    this.gaps++;
    this.gapBytes += bytes;
    this.gapPending = true;
    events.push({ kind: 'gap', bytes, seq, reason });
  }
}

/** a < b in sequence space (RFC 9293 §3.4, modulo 2^32). */
function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

/** All the TCP stream directions of a capture, created only for segments that are worth it. */
export class TcpReassembler {
  /** The directions by "src|dst". */
  readonly directions = new Map<string, TcpDirection>();
  /** Directions refused because TCP_LIMITS.maxDirections was reached. */
  refused = 0;
  private readonly shared = { pendingBytes: 0 };

  /** The direction src → dst, created on first use; undefined when the bound is reached. */
  direction(src: string, dst: string): TcpDirection | undefined {
    const key = `${src}|${dst}`;
    let d = this.directions.get(key);
    if (d === undefined) {
      if (this.directions.size >= TCP_LIMITS.maxDirections) {
        this.refused++;
        return undefined;
      }
      d = new TcpDirection(this.directions.size + 1, src, dst, this.shared);
      this.directions.set(key, d);
    }
    return d;
  }

  /** Out-of-order bytes held by every direction. */
  get held(): number {
    return this.shared.pendingBytes;
  }
}
