/**
 * pcap and pcapng readers. Pure functions over a Uint8Array: no I/O.
 *
 * Any fault (truncation, bad magic, bad block length) throws a
 * CaptureFormatError whose `partial` property holds the frames decoded
 * before the fault, so callers can still show them.
 */
import { CaptureFormatError } from '../errors.js';
import { u16, u32 } from './bytes.js';

export interface CaptureInterface {
  /** LINKTYPE_* value (1 Ethernet, 113 SLL, 276 SLL2, 101 raw IP, 0 null...). */
  linkType: number;
  snapLen: number;
  /** Timestamp units per second (pcap: 1e6 or 1e9; pcapng: from if_tsresol). */
  unitsPerSecond: bigint;
  name?: string;
}

export interface RawFrame {
  /** 1-based frame number, as Wireshark counts. */
  number: number;
  interfaceId: number;
  linkType: number;
  /** Whole seconds since the epoch. */
  seconds: number;
  /** Nanoseconds within the second. */
  nanos: number;
  /** Length on the wire. */
  originalLength: number;
  /** Captured bytes (may be shorter than originalLength when snapped). */
  data: Uint8Array;
}

export interface CaptureFile {
  format: 'pcap' | 'pcapng';
  byteOrder: 'little-endian' | 'big-endian';
  /** pcap timestamps: 'micro' or 'nano'; pcapng: per interface. */
  precision?: 'micro' | 'nano';
  interfaces: CaptureInterface[];
  frames: RawFrame[];
}

/** A CaptureFormatError that carries whatever was decoded before the fault. */
export type PartialCaptureError = CaptureFormatError & { partial: CaptureFile; offset: number };

function fail(message: string, partial: CaptureFile, offset: number, cause?: unknown): never {
  const err = new CaptureFormatError(
    `${message} (at byte offset ${offset}, after ${partial.frames.length} frame(s))`,
    {
      cause,
    },
  ) as PartialCaptureError;
  err.partial = partial;
  err.offset = offset;
  throw err;
}

/** Returns the partial capture carried by an error thrown by parseCapture, if any. */
export function partialCapture(err: unknown): CaptureFile | undefined {
  if (err instanceof CaptureFormatError && 'partial' in err) return (err as PartialCaptureError).partial;
  return undefined;
}

const PCAP_MICRO = 0xa1b2c3d4;
const PCAP_NANO = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Detects pcap / pcapng and parses the whole file. */
export function parseCapture(bytes: Uint8Array): CaptureFile {
  if (bytes.length < 4) {
    fail('file too short to be a capture', emptyCapture('pcap'), 0);
  }
  const be = u32(bytes, 0, false);
  if (be === PCAPNG_SHB) return parsePcapng(bytes);
  const le = u32(bytes, 0, true);
  if (be === PCAP_MICRO || be === PCAP_NANO || le === PCAP_MICRO || le === PCAP_NANO) return parsePcap(bytes);
  fail(`not a pcap or pcapng file (magic 0x${be.toString(16).padStart(8, '0')})`, emptyCapture('pcap'), 0);
}

function emptyCapture(format: 'pcap' | 'pcapng'): CaptureFile {
  return { format, byteOrder: 'little-endian', interfaces: [], frames: [] };
}

function splitTime(ts: bigint, unitsPerSecond: bigint): { seconds: number; nanos: number } {
  const seconds = ts / unitsPerSecond;
  const rem = ts % unitsPerSecond;
  return { seconds: Number(seconds), nanos: Number((rem * 1_000_000_000n) / unitsPerSecond) };
}

export function parsePcap(bytes: Uint8Array): CaptureFile {
  const out = emptyCapture('pcap');
  if (bytes.length < 24) fail('truncated pcap file header', out, 0);
  const magicBe = u32(bytes, 0, false);
  const le = !(magicBe === PCAP_MICRO || magicBe === PCAP_NANO);
  const magic = u32(bytes, 0, le);
  if (magic !== PCAP_MICRO && magic !== PCAP_NANO) fail('bad pcap magic', out, 0);
  out.byteOrder = le ? 'little-endian' : 'big-endian';
  const nano = magic === PCAP_NANO;
  out.precision = nano ? 'nano' : 'micro';
  const snapLen = u32(bytes, 16, le);
  const linkTypeField = u32(bytes, 20, le);
  // The upper bits may hold FCS info; the link type is the low 28 bits.
  const linkType = linkTypeField & 0x0fffffff;
  const unitsPerSecond = nano ? 1_000_000_000n : 1_000_000n;
  out.interfaces.push({ linkType, snapLen, unitsPerSecond });
  let o = 24;
  while (o < bytes.length) {
    if (o + 16 > bytes.length) fail('truncated pcap record header', out, o);
    const sec = u32(bytes, o, le);
    const frac = u32(bytes, o + 4, le);
    const inclLen = u32(bytes, o + 8, le);
    const origLen = u32(bytes, o + 12, le);
    if (frac >= Number(unitsPerSecond)) fail(`bad pcap timestamp fraction ${frac}`, out, o);
    if (inclLen > 0x4000000) fail(`implausible pcap record length ${inclLen}`, out, o);
    if (o + 16 + inclLen > bytes.length) fail('truncated pcap record data', out, o);
    const data = bytes.subarray(o + 16, o + 16 + inclLen);
    out.frames.push({
      number: out.frames.length + 1,
      interfaceId: 0,
      linkType,
      seconds: sec,
      nanos: nano ? frac : frac * 1000,
      originalLength: origLen,
      data,
    });
    o += 16 + inclLen;
  }
  return out;
}

interface Section {
  le: boolean;
  interfaces: CaptureInterface[];
  /** Index of this section's first interface in out.interfaces. */
  base: number;
}

export function parsePcapng(bytes: Uint8Array): CaptureFile {
  const out = emptyCapture('pcapng');
  let section: Section | undefined;
  let o = 0;
  while (o < bytes.length) {
    if (o + 12 > bytes.length) fail('truncated pcapng block header', out, o);
    const typeBe = u32(bytes, o, false);
    if (typeBe === PCAPNG_SHB) {
      // Section Header Block: byte order from the magic.
      const bomBe = u32(bytes, o + 8, false);
      let le: boolean;
      if (bomBe === BYTE_ORDER_MAGIC) le = false;
      else if (u32(bytes, o + 8, true) === BYTE_ORDER_MAGIC) le = true;
      else fail('bad pcapng byte-order magic', out, o);
      if (out.frames.length === 0 && out.interfaces.length === 0)
        out.byteOrder = le ? 'little-endian' : 'big-endian';
      const len = u32(bytes, o + 4, le);
      checkBlockLength(bytes, o, len, le, out, 28);
      section = { le, interfaces: [], base: out.interfaces.length };
      o += len;
      continue;
    }
    if (section === undefined) fail('pcapng file does not start with a Section Header Block', out, o);
    const le = section.le;
    const type = u32(bytes, o, le);
    const len = u32(bytes, o + 4, le);
    checkBlockLength(bytes, o, len, le, out, 12);
    const body = bytes.subarray(o + 8, o + len - 4);
    switch (type) {
      case 1: {
        // Interface Description Block
        if (body.length < 8) fail('truncated Interface Description Block', out, o);
        const linkType = u16(body, 0, le);
        const snapLen = u32(body, 4, le);
        const iface: CaptureInterface = { linkType, snapLen, unitsPerSecond: 1_000_000n };
        try {
          parseIdbOptions(body.subarray(8), le, iface);
        } catch (e) {
          fail(e instanceof Error ? e.message : String(e), out, o, e);
        }
        section.interfaces.push(iface);
        out.interfaces.push(iface);
        break;
      }
      case 6: {
        // Enhanced Packet Block
        if (body.length < 20) fail('truncated Enhanced Packet Block', out, o);
        const ifId = u32(body, 0, le);
        const iface = section.interfaces[ifId];
        if (iface === undefined) fail(`Enhanced Packet Block refers to unknown interface ${ifId}`, out, o);
        const ts = (BigInt(u32(body, 4, le)) << 32n) | BigInt(u32(body, 8, le));
        const capLen = u32(body, 12, le);
        const origLen = u32(body, 16, le);
        if (20 + capLen > body.length) fail('Enhanced Packet Block captured length exceeds block', out, o);
        const { seconds, nanos } = splitTime(ts, iface.unitsPerSecond);
        out.frames.push({
          number: out.frames.length + 1,
          interfaceId: section.base + ifId,
          linkType: iface.linkType,
          seconds,
          nanos,
          originalLength: origLen,
          data: body.subarray(20, 20 + capLen),
        });
        break;
      }
      case 3: {
        // Simple Packet Block: interface 0, no timestamp.
        if (body.length < 4) fail('truncated Simple Packet Block', out, o);
        const iface = section.interfaces[0];
        if (iface === undefined) fail('Simple Packet Block without an interface', out, o);
        const origLen = u32(body, 0, le);
        const capLen = Math.min(origLen, body.length - 4, iface.snapLen || Number.MAX_SAFE_INTEGER);
        out.frames.push({
          number: out.frames.length + 1,
          interfaceId: section.base,
          linkType: iface.linkType,
          seconds: 0,
          nanos: 0,
          originalLength: origLen,
          data: body.subarray(4, 4 + capLen),
        });
        break;
      }
      default:
        // Name resolution, interface statistics, custom, decryption secrets...: skipped.
        break;
    }
    o += len;
  }
  if (section === undefined) fail('empty pcapng file', out, 0);
  return out;
}

function checkBlockLength(
  bytes: Uint8Array,
  o: number,
  len: number,
  le: boolean,
  out: CaptureFile,
  min: number,
): void {
  if (len < min || len % 4 !== 0) fail(`bad pcapng block length ${len}`, out, o);
  if (o + len > bytes.length) fail('truncated pcapng block', out, o);
  const trailer = u32(bytes, o + len - 4, le);
  if (trailer !== len) fail(`pcapng block length mismatch (${len} vs trailer ${trailer})`, out, o);
}

function parseIdbOptions(opts: Uint8Array, le: boolean, iface: CaptureInterface): void {
  let p = 0;
  while (p + 4 <= opts.length) {
    const code = u16(opts, p, le);
    const olen = u16(opts, p + 2, le);
    if (code === 0) break;
    if (p + 4 + olen > opts.length) throw new CaptureFormatError('truncated pcapng option');
    const val = opts.subarray(p + 4, p + 4 + olen);
    if (code === 9 && olen >= 1) {
      // if_tsresol: bit 7 = power of two, else power of ten.
      const v = val[0] as number;
      const exp = BigInt(v & 0x7f);
      if (exp > 60n) throw new CaptureFormatError(`unsupported if_tsresol 0x${v.toString(16)}`);
      iface.unitsPerSecond = v & 0x80 ? 1n << exp : 10n ** exp;
      if (iface.unitsPerSecond === 0n) iface.unitsPerSecond = 1n;
    } else if (code === 2) {
      iface.name = new TextDecoder().decode(val);
    }
    p += 4 + ((olen + 3) & ~3);
  }
}
