/**
 * A minimal pcap writer (LINKTYPE_RAW = 101, IPv4 + UDP headers synthesized
 * with correct lengths and IP header checksum) for handing our datagrams to
 * tshark without capture privileges.
 */
import { writeFileSync } from 'node:fs';

export interface PcapPacket {
  src: { address: string; port: number };
  dst: { address: string; port: number };
  data: Uint8Array;
  /** Timestamp in ms (performance.now() or Date.now()). */
  timeMs: number;
}

/** The 4 bytes of a dotted IPv4 address (an IPv4-mapped IPv6 one too). */
export function ipv4(address: string): Buffer {
  const parts = address
    .replace(/^::ffff:/, '')
    .split('.')
    .map(Number);
  if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) throw new Error(`not IPv4: ${address}`);
  return Buffer.from(parts);
}

/** The Internet checksum (RFC 1071) of `buf`. */
export function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i += 2) sum += (buf[i]! << 8) | (buf[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A 20-byte IPv4 header (DF set, TTL 64, checksum filled in) before `payloadLength` bytes of `protocol`. */
export function ipv4Header(
  src: Buffer,
  dst: Buffer,
  protocol: number,
  payloadLength: number,
  id: number,
): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + payloadLength, 2);
  ip.writeUInt16BE(id & 0xffff, 4);
  ip.writeUInt16BE(0x4000, 6); // don't fragment
  ip[8] = 64;
  ip[9] = protocol;
  src.copy(ip, 12);
  dst.copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return ip;
}

/** One raw IPv4 packet carrying a UDP datagram. */
export function ipUdp(p: PcapPacket, id: number): Buffer {
  const udpLen = 8 + p.data.length;
  const ip = ipv4Header(ipv4(p.src.address), ipv4(p.dst.address), 17, udpLen, id);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(p.src.port, 0);
  udp.writeUInt16BE(p.dst.port, 2);
  udp.writeUInt16BE(udpLen, 4);
  udp.writeUInt16BE(0, 6); // no checksum (allowed for UDP over IPv4)
  return Buffer.concat([ip, udp, Buffer.from(p.data)]);
}

/** One record of a capture: an IP packet, when it was seen, and how much of it was captured. */
export interface RawRecord {
  frame: Uint8Array;
  /** Microseconds since the epoch. */
  timeUs: number;
  /** Bytes captured (default: all; fewer: a snap length cut the packet). */
  captured?: number;
}

/** A classic pcap file, LINKTYPE_RAW (101): every record is an IPv4 or IPv6 packet. */
export function rawPcap(records: readonly RawRecord[], snaplen = 65535): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(snaplen, 16);
  header.writeUInt32LE(101, 20);
  const out: Buffer[] = [header];
  for (const r of records) {
    const incl = Math.min(r.frame.length, r.captured ?? r.frame.length);
    const rec = Buffer.alloc(16);
    const us = Math.round(r.timeUs);
    rec.writeUInt32LE(Math.floor(us / 1e6), 0);
    rec.writeUInt32LE(us % 1e6, 4);
    rec.writeUInt32LE(incl, 8);
    rec.writeUInt32LE(r.frame.length, 12);
    out.push(rec, Buffer.from(r.frame.buffer, r.frame.byteOffset, incl));
  }
  return Buffer.concat(out);
}

export function pcapBytes(packets: readonly PcapPacket[]): Buffer {
  return rawPcap(packets.map((p, i) => ({ frame: ipUdp(p, i + 1), timeUs: p.timeMs * 1000 })));
}

export function writePcap(path: string, packets: readonly PcapPacket[]): void {
  writeFileSync(path, pcapBytes(packets));
}
