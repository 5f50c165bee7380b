/**
 * DTLS 1.2 Connection ID records (RFC 9146).
 *
 * Once a CID is negotiated for a direction (the `connection_id` extension,
 * type 54) and that CID is not empty, every record of epoch 1 sent in that
 * direction is a `tls12_cid` record (content type 25):
 *
 *   type(1)=25 version(2) epoch(2) sequence_number(6) cid(cid_length) length(2) enc_content
 *
 * The CID length is not on the wire: the receiver knows it (it chose the CID).
 * The protected content is the DTLSInnerPlaintext
 *
 *   content | real_type(1) | zeros(padding)
 *
 * and the additional data of the AEAD (or the MAC input of a block cipher,
 * RFC 9146 §5.1) is
 *
 *   seq_num_placeholder(8 x 0xff) | tls12_cid(1)=25 | cid_length(1) | tls12_cid(1)=25 |
 *   version(2) | epoch(2) | sequence_number(6) | cid | length_of_DTLSInnerPlaintext(2)
 *
 * The AEAD nonce is built as for ordinary records (epoch | sequence number).
 * Imports nothing of the handshake: the record layer owns the format, the
 * handshake (handshake/cid-ext.ts) owns the negotiation.
 */
import { Buffer } from 'node:buffer';
import { BufferView } from '../../util/view.js';
import { DtlsError } from '../errors.js';
import {
  type DtlsRecord,
  MAX_FRAGMENT_LENGTH,
  RECORD_HEADER_LENGTH,
  recordSeq,
  writeEpochSeq,
} from './record.js';

/** Content type of a record carrying a CID (RFC 9146 §4). */
export const TLS12_CID = 25;
/** The longest CID the extension can carry (`opaque cid<0..2^8-1>`). */
export const MAX_CID_LENGTH = 255;
/** Bytes a tls12_cid record adds to a record of the same content: the CID and the real type. */
export function cidOverhead(cidLength: number): number {
  return cidLength + 1;
}

/**
 * End offset of the well-formed tls12_cid record whose header starts at `o`
 * and carries a CID of `cidLength` bytes, or -1 (truncated, other type or
 * version, length beyond the datagram, oversized fragment).
 */
export function cidRecordEnd(data: Uint8Array, o: number, cidLength: number): number {
  const h = RECORD_HEADER_LENGTH + cidLength;
  if (data.length - o < h || data[o] !== TLS12_CID) return -1;
  if (data[o + 1] !== 0xfe || data[o + 2] !== 0xfd) return -1;
  const at = o + 11 + cidLength;
  const length = (data[at]! << 8) | data[at + 1]!;
  const end = o + h + length;
  if (end > data.length || length > MAX_FRAGMENT_LENGTH) return -1;
  return end;
}

/**
 * The tls12_cid record at `o..end` (as validated by `cidRecordEnd`) as a record
 * object of type 25: its fragment is the protected content (a view); the CID is
 * left out (the receiver matched it already).
 */
export function cidRecordAt(data: Buffer, o: number, end: number, cidLength: number): DtlsRecord {
  const h = RECORD_HEADER_LENGTH + cidLength;
  return {
    type: TLS12_CID,
    version: (data[o + 1]! << 8) | data[o + 2]!,
    epoch: (data[o + 3]! << 8) | data[o + 4]!,
    seq: recordSeq(data, o),
    fragment: new BufferView(data.buffer, data.byteOffset + o + h, end - o - h),
  };
}

/**
 * Writes the header of a tls12_cid record (type 25, version, epoch, seq, the
 * CID, the fragment length) at `o`; returns the offset after it.
 */
export function writeCidHeader(
  out: Uint8Array,
  o: number,
  epoch: number,
  seq: number,
  cid: Uint8Array,
  length: number,
  version = 0xfefd,
): number {
  out[o] = TLS12_CID;
  out[o + 1] = (version >>> 8) & 0xff;
  out[o + 2] = version & 0xff;
  writeEpochSeq(out, o + 3, epoch, seq);
  out.set(cid, o + 11);
  const at = o + 11 + cid.length;
  out[at] = (length >>> 8) & 0xff;
  out[at + 1] = length & 0xff;
  return at + 2;
}

// Scratch space for the additional data (used synchronously only).
const AAD_SCRATCH = Buffer.allocUnsafeSlow(23 + MAX_CID_LENGTH);

/**
 * The RFC 9146 §5 additional data for (epoch, seq, cid) and an inner plaintext
 * of `innerLength` bytes, in scratch space (valid until the next call).
 */
export function cidAdditionalData(
  epoch: number,
  seq: number,
  cid: Uint8Array,
  innerLength: number,
  version = 0xfefd,
): Buffer {
  const ad = AAD_SCRATCH;
  for (let i = 0; i < 8; i++) ad[i] = 0xff; // seq_num_placeholder
  ad[8] = TLS12_CID;
  ad[9] = cid.length;
  // Then the record's own header, with the inner plaintext's length.
  return ad.subarray(0, writeCidHeader(ad, 10, epoch, seq, cid, innerLength, version));
}

/** DTLSInnerPlaintext: content | real_type | `padding` zero bytes. */
export function encodeInnerPlaintext(content: Uint8Array, realType: number, padding = 0): Buffer {
  const out = Buffer.alloc(content.length + 1 + padding);
  out.set(content, 0);
  out[content.length] = realType;
  return out;
}

/**
 * Splits a DTLSInnerPlaintext: the real content type is the last non-zero byte,
 * the content what precedes it. Undefined when every byte is zero (no type: the
 * record is invalid and dropped) or the type is tls12_cid itself.
 */
export function decodeInnerPlaintext(inner: Buffer): { type: number; content: Buffer } | undefined {
  let i = inner.length - 1;
  while (i >= 0 && inner[i] === 0) i--;
  if (i < 0) return undefined;
  const type = inner[i]!;
  if (type === TLS12_CID) return undefined;
  return { type, content: new BufferView(inner.buffer, inner.byteOffset, i) };
}

/** A CID option checked: bytes 0..255 long. */
export function checkCid(cid: Uint8Array): Buffer {
  if (cid.length > MAX_CID_LENGTH) throw new DtlsError(`a connection ID is at most ${MAX_CID_LENGTH} bytes`);
  return Buffer.from(cid);
}
