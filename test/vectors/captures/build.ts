/** Helpers for tests: build pcap / pcapng files and link/IP/UDP frames from bytes. */

function u16be(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export function u32(n: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(n >>> 0);
  else b.writeUInt32BE(n >>> 0);
  return b;
}

function u16(n: number, le: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (le) b.writeUInt16LE(n);
  else b.writeUInt16BE(n);
  return b;
}

export interface FrameSpec {
  data: Uint8Array;
  /** Seconds since the epoch (default 1700000000). */
  sec?: number;
  /** Fraction in the file's unit (micro or nano). */
  frac?: number;
  originalLength?: number;
}

export function pcap(frames: FrameSpec[], opts: { linkType: number; le?: boolean; nano?: boolean }): Buffer {
  const le = opts.le ?? true;
  const magic = opts.nano ? 0xa1b23c4d : 0xa1b2c3d4;
  const parts: Buffer[] = [
    u32(magic, le),
    u16(2, le),
    u16(4, le),
    u32(0, le),
    u32(0, le),
    u32(65535, le),
    u32(opts.linkType, le),
  ];
  for (const f of frames) {
    parts.push(
      u32(f.sec ?? 1_700_000_000, le),
      u32(f.frac ?? 0, le),
      u32(f.data.length, le),
      u32(f.originalLength ?? f.data.length, le),
      Buffer.from(f.data),
    );
  }
  return Buffer.concat(parts);
}

function block(type: number, body: Buffer, le: boolean): Buffer {
  const pad = (4 - (body.length % 4)) % 4;
  const len = 12 + body.length + pad;
  return Buffer.concat([u32(type, le), u32(len, le), body, Buffer.alloc(pad), u32(len, le)]);
}

export function shb(le: boolean): Buffer {
  const body = Buffer.concat([u32(0x1a2b3c4d, le), u16(1, le), u16(0, le), Buffer.alloc(8, 0xff)]);
  // The SHB type is palindromic: same bytes in both orders.
  return block(0x0a0d0d0a, body, le);
}

export function idb(linkType: number, le: boolean, tsresol?: number): Buffer {
  const opts: Buffer[] = [];
  if (tsresol !== undefined) opts.push(u16(9, le), u16(1, le), Buffer.from([tsresol, 0, 0, 0]));
  opts.push(u16(0, le), u16(0, le));
  return block(1, Buffer.concat([u16(linkType, le), u16(0, le), u32(0, le), ...opts]), le);
}

export function epb(
  ifId: number,
  ts: bigint,
  data: Uint8Array,
  le: boolean,
  originalLength?: number,
): Buffer {
  return block(
    6,
    Buffer.concat([
      u32(ifId, le),
      u32(Number(ts >> 32n), le),
      u32(Number(ts & 0xffffffffn), le),
      u32(data.length, le),
      u32(originalLength ?? data.length, le),
      Buffer.from(data),
    ]),
    le,
  );
}

export function spb(data: Uint8Array, le: boolean): Buffer {
  return block(3, Buffer.concat([u32(data.length, le), Buffer.from(data)]), le);
}

export function unknownBlock(type: number, le: boolean): Buffer {
  return block(type, Buffer.from('some custom block data'), le);
}

export function ipv4Bytes(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

export function udp(srcPort: number, dstPort: number, payload: Uint8Array): Buffer {
  return Buffer.concat([
    u16be(srcPort),
    u16be(dstPort),
    u16be(8 + payload.length),
    u16be(0),
    Buffer.from(payload),
  ]);
}

export function ipv4(
  src: string,
  dst: string,
  payload: Uint8Array,
  opts: { protocol?: number; options?: Buffer; id?: number; fragOffset?: number; more?: boolean } = {},
): Buffer {
  const options = opts.options ?? Buffer.alloc(0);
  const ihl = 20 + options.length;
  const h = Buffer.alloc(20);
  h[0] = 0x40 | (ihl / 4);
  h.writeUInt16BE(ihl + payload.length, 2);
  h.writeUInt16BE(opts.id ?? 1, 4);
  h.writeUInt16BE(((opts.more ? 1 : 0) << 13) | ((opts.fragOffset ?? 0) / 8), 6);
  h[8] = 64;
  h[9] = opts.protocol ?? 17;
  ipv4Bytes(src).copy(h, 12);
  ipv4Bytes(dst).copy(h, 16);
  return Buffer.concat([h, options, Buffer.from(payload)]);
}

export function ipv6(
  src: Buffer,
  dst: Buffer,
  payload: Uint8Array,
  ext: { type: number; body: Buffer }[] = [],
  protocol = 17,
): Buffer {
  // ext bodies are complete headers minus the first (next header) byte.
  const exts: Buffer[] = [];
  for (let i = 0; i < ext.length; i++) {
    const next = i + 1 < ext.length ? (ext[i + 1] as { type: number }).type : protocol;
    exts.push(Buffer.concat([Buffer.from([next]), (ext[i] as { body: Buffer }).body]));
  }
  const extBuf = Buffer.concat(exts);
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(extBuf.length + payload.length, 4);
  h[6] = ext.length > 0 ? (ext[0] as { type: number }).type : protocol;
  h[7] = 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, extBuf, Buffer.from(payload)]);
}

/** Ethernet frame with optional 802.1Q tags: dst, src, [0x8100 TCI]*, type, payload. */
export function ether(payload: Uint8Array, etherType = 0x0800, vlans: number[] = []): Buffer {
  const parts: Buffer[] = [Buffer.from([2, 0, 0, 0, 0, 2]), Buffer.from([2, 0, 0, 0, 0, 1])];
  for (const v of vlans) parts.push(u16be(0x8100), u16be(v));
  parts.push(u16be(etherType), Buffer.from(payload));
  return Buffer.concat(parts);
}

/** Linux cooked v1 header + payload. */
export function sll(payload: Uint8Array, etherType = 0x0800): Buffer {
  return Buffer.concat([
    u16be(4),
    u16be(1),
    u16be(6),
    Buffer.from([2, 0, 0, 0, 0, 1, 0, 0]),
    u16be(etherType),
    Buffer.from(payload),
  ]);
}

/** Linux cooked v2 header + payload. */
export function sll2(payload: Uint8Array, etherType = 0x0800): Buffer {
  return Buffer.concat([
    u16be(etherType),
    u16be(0),
    u32(3, false),
    u16be(1),
    Buffer.from([0, 6]),
    Buffer.from([2, 0, 0, 0, 0, 1, 0, 0]),
    Buffer.from(payload),
  ]);
}

/** A UDP/IPv4/Ethernet frame. */
export function udpFrame(
  src: string,
  sport: number,
  dst: string,
  dport: number,
  payload: Uint8Array,
): Buffer {
  return ether(ipv4(src, dst, udp(sport, dport, payload)));
}
