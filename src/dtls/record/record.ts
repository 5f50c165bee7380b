/**
 * DTLS 1.2 record header codec (RFC 6347 §4.1):
 *   type(1) version(2) epoch(2) sequence_number(6) length(2) fragment(length)
 * Several records may share one datagram; a record never spans datagrams.
 */
import { Buffer } from 'node:buffer';
import { BufferView } from '../../util/view.js';
import { DtlsError } from '../errors.js';

export const ContentType = {
  changeCipherSpec: 20,
  alert: 21,
  handshake: 22,
  applicationData: 23,
} as const;

export const RECORD_HEADER_LENGTH = 13;
/** Largest record fragment we accept (2^14 plaintext + 2048 expansion, RFC 5246 §6.2.3). */
export const MAX_FRAGMENT_LENGTH = 16384 + 2048;

export interface DtlsRecord {
  type: number;
  version: number;
  epoch: number;
  /** 48-bit sequence number (safe as a JS number). */
  seq: number;
  fragment: Buffer;
}

/**
 * End offset of the well-formed record whose header starts at `o`, or -1 if
 * what starts there is not one (truncated header, length beyond the datagram,
 * unknown content type or version, oversized fragment): the caller stops there.
 */
export function recordEnd(data: Uint8Array, o: number): number {
  if (data.length - o < RECORD_HEADER_LENGTH) return -1;
  const type = data[o]!;
  if (type < 20 || type > 23) return -1;
  // DTLS 1.2 (0xFEFD) or DTLS 1.0 (0xFEFF, e.g. OpenSSL's HelloVerifyRequest).
  if (data[o + 1] !== 0xfe) return -1;
  const v = data[o + 2]!;
  if (v !== 0xfd && v !== 0xff) return -1;
  const length = (data[o + 11]! << 8) | data[o + 12]!;
  const end = o + RECORD_HEADER_LENGTH + length;
  if (end > data.length || length > MAX_FRAGMENT_LENGTH) return -1;
  return end;
}

/** The 48-bit sequence number of the record header at `o` (a plain number). */
export function recordSeq(data: Uint8Array, o: number): number {
  const lo = ((data[o + 7]! << 24) | (data[o + 8]! << 16) | (data[o + 9]! << 8) | data[o + 10]!) >>> 0;
  return ((data[o + 5]! << 8) | data[o + 6]!) * 0x100000000 + lo;
}

/** Writes epoch(2) + 48-bit seq(6) at `o`, byte by byte (no writeUIntBE range checks). */
export function writeEpochSeq(b: Uint8Array, o: number, epoch: number, seq: number): void {
  const hi = (seq / 0x100000000) >>> 0; // top 16 bits of the 48-bit number
  const lo = seq >>> 0; // low 32 bits
  b[o] = (epoch >>> 8) & 0xff;
  b[o + 1] = epoch & 0xff;
  b[o + 2] = (hi >>> 8) & 0xff;
  b[o + 3] = hi & 0xff;
  b[o + 4] = lo >>> 24;
  b[o + 5] = (lo >>> 16) & 0xff;
  b[o + 6] = (lo >>> 8) & 0xff;
  b[o + 7] = lo & 0xff;
}

/** The record at `o..end` (as validated by `recordEnd`) as an object; the fragment is a view. */
export function recordAt(data: Buffer, o: number, end: number): DtlsRecord {
  return {
    type: data[o]!,
    version: (data[o + 1]! << 8) | data[o + 2]!,
    epoch: (data[o + 3]! << 8) | data[o + 4]!,
    seq: recordSeq(data, o),
    fragment: new BufferView(
      data.buffer,
      data.byteOffset + o + RECORD_HEADER_LENGTH,
      end - o - RECORD_HEADER_LENGTH,
    ),
  };
}

/**
 * Splits a datagram into records. A malformed trailing part (truncated header,
 * length beyond the datagram, unknown content type or version) is dropped,
 * together with everything after it, as RFC 6347 §4.1.2.7 allows.
 */
export function parseDatagram(data: Buffer): DtlsRecord[] {
  const out: DtlsRecord[] = [];
  let o = 0;
  for (let end = recordEnd(data, o); end >= 0; end = recordEnd(data, o)) {
    out.push(recordAt(data, o, end));
    o = end;
  }
  return out;
}

/** Strict single-record parser: throws DtlsError on anything malformed. */
export function parseRecord(data: Uint8Array): { record: DtlsRecord; rest: Buffer } {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length < RECORD_HEADER_LENGTH) throw new DtlsError('truncated DTLS record header');
  const recs = parseDatagram(b.subarray(0, RECORD_HEADER_LENGTH + b.readUInt16BE(11)));
  const record = recs[0];
  if (record === undefined) throw new DtlsError('malformed DTLS record');
  return { record, rest: b.subarray(RECORD_HEADER_LENGTH + record.fragment.length) };
}

export function encodeRecord(
  type: number,
  epoch: number,
  seq: number,
  fragment: Uint8Array,
  version = 0xfefd,
): Buffer {
  if (fragment.length > MAX_FRAGMENT_LENGTH) throw new DtlsError('DTLS record too long');
  const out = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + fragment.length);
  out[0] = type;
  out.writeUInt16BE(version, 1);
  out.writeUInt16BE(epoch, 3);
  out.writeUIntBE(seq, 5, 6);
  out.writeUInt16BE(fragment.length, 11);
  out.set(fragment, RECORD_HEADER_LENGTH);
  return out;
}
