/**
 * Crafted TCP captures (LINKTYPE_RAW, IPv4): segments with chosen sequence
 * numbers, so that tests can replay split frames, retransmissions, overlaps,
 * out-of-order delivery and cut segments to dissect() and to tshark.
 */
import { writeFileSync } from 'node:fs';
import { checksum, ipv4, ipv4Header, rawPcap } from './pcap.js';

export interface TcpSegment {
  /** "127.0.0.1:40000" */
  src: string;
  dst: string;
  seq: number;
  ack?: number;
  /** 'S' SYN, 'A' ACK, 'P' PSH, 'F' FIN, 'R' RST (default 'PA' with data, 'A' without). */
  flags?: string;
  data?: Uint8Array;
  /** Bytes of the IPv4 packet captured (default: all): a shorter record has a snap-length cut. */
  capture?: number;
}

function addr(s: string): { ip: Buffer; port: number } {
  const [ip, port] = s.split(':') as [string, string];
  return { ip: ipv4(ip), port: Number(port) };
}

const FLAG_BITS: Record<string, number> = { F: 0x01, S: 0x02, R: 0x04, P: 0x08, A: 0x10 };

/** One IPv4 packet carrying a TCP segment (with correct IP and TCP checksums). */
export function ipTcp(s: TcpSegment, id: number): Buffer {
  const data = Buffer.from(s.data ?? new Uint8Array(0));
  const src = addr(s.src);
  const dst = addr(s.dst);
  const tcp = Buffer.alloc(20 + data.length);
  tcp.writeUInt16BE(src.port, 0);
  tcp.writeUInt16BE(dst.port, 2);
  tcp.writeUInt32BE(s.seq >>> 0, 4);
  tcp.writeUInt32BE((s.ack ?? 0) >>> 0, 8);
  tcp[12] = 5 << 4;
  let flags = 0;
  for (const ch of s.flags ?? (data.length > 0 ? 'PA' : 'A')) flags |= FLAG_BITS[ch] ?? 0;
  tcp[13] = flags;
  tcp.writeUInt16BE(65535, 14);
  data.copy(tcp, 20);
  const pseudo = Buffer.concat([
    src.ip,
    dst.ip,
    Buffer.from([0, 6, tcp.length >> 8, tcp.length & 0xff]),
    tcp,
  ]);
  tcp.writeUInt16BE(checksum(pseudo), 16);
  return Buffer.concat([ipv4Header(src.ip, dst.ip, 6, tcp.length, id), tcp]);
}

/** A pcap file (raw IPv4) of the segments, 1 ms apart. */
export function tcpPcap(segments: readonly TcpSegment[]): Buffer {
  return rawPcap(
    segments.map((s, i) => ({
      frame: ipTcp(s, i + 1),
      timeUs: 1_700_000_000e6 + i * 1000,
      ...(s.capture !== undefined ? { captured: s.capture } : {}),
    })),
    262144,
  );
}

export function writeTcpPcap(path: string, segments: readonly TcpSegment[]): void {
  writeFileSync(path, tcpPcap(segments));
}

/**
 * A connection's segments, written as a conversation: `c(data)` client → server,
 * `s(data)` server → client, with sequence numbers kept per side.
 */
export class TcpConversation {
  readonly segments: TcpSegment[] = [];
  private seqC: number;
  private seqS: number;

  constructor(
    readonly client: string,
    readonly server: string,
    isnC = 1000,
    isnS = 5000,
  ) {
    this.seqC = isnC;
    this.seqS = isnS;
  }

  handshake(): this {
    this.segments.push({ src: this.client, dst: this.server, seq: this.seqC, flags: 'S' });
    this.segments.push({
      src: this.server,
      dst: this.client,
      seq: this.seqS,
      ack: this.seqC + 1,
      flags: 'SA',
    });
    this.seqC = (this.seqC + 1) >>> 0;
    this.seqS = (this.seqS + 1) >>> 0;
    this.segments.push({ src: this.client, dst: this.server, seq: this.seqC, ack: this.seqS, flags: 'A' });
    return this;
  }

  /** The next client → server segment (not yet pushed): sequence numbers advance. */
  cSeg(data: Uint8Array, extra: Partial<TcpSegment> = {}): TcpSegment {
    const s: TcpSegment = {
      src: this.client,
      dst: this.server,
      seq: this.seqC,
      ack: this.seqS,
      data,
      ...extra,
    };
    this.seqC = (this.seqC + data.length) >>> 0;
    return s;
  }

  sSeg(data: Uint8Array, extra: Partial<TcpSegment> = {}): TcpSegment {
    const s: TcpSegment = {
      src: this.server,
      dst: this.client,
      seq: this.seqS,
      ack: this.seqC,
      data,
      ...extra,
    };
    this.seqS = (this.seqS + data.length) >>> 0;
    return s;
  }

  c(data: Uint8Array, extra: Partial<TcpSegment> = {}): this {
    this.segments.push(this.cSeg(data, extra));
    return this;
  }

  s(data: Uint8Array, extra: Partial<TcpSegment> = {}): this {
    this.segments.push(this.sSeg(data, extra));
    return this;
  }

  push(...s: TcpSegment[]): this {
    this.segments.push(...s);
    return this;
  }

  close(): this {
    this.segments.push({ src: this.client, dst: this.server, seq: this.seqC, ack: this.seqS, flags: 'FA' });
    this.segments.push({
      src: this.server,
      dst: this.client,
      seq: this.seqS,
      ack: this.seqC + 1,
      flags: 'FA',
    });
    this.seqC = (this.seqC + 1) >>> 0;
    this.seqS = (this.seqS + 1) >>> 0;
    this.segments.push({ src: this.client, dst: this.server, seq: this.seqC, ack: this.seqS, flags: 'A' });
    return this;
  }
}
