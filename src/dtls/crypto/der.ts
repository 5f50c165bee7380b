/**
 * Minimal ASN.1 DER (X.690) encoding and walking: enough to build a small
 * X.509 certificate (x509-gen.ts) and to read the one certificate extension
 * node:crypto's X509Certificate does not expose (keyUsage). No cryptography
 * here: signatures come from node:crypto.
 */
import { Buffer } from 'node:buffer';

/** One TLV: tag byte + DER length + content. */
export function tlv(tag: number, content: Uint8Array): Buffer {
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, content]);
}

export const seq = (...items: Uint8Array[]): Buffer => tlv(0x30, Buffer.concat(items));
export const set = (...items: Uint8Array[]): Buffer => tlv(0x31, Buffer.concat(items));
export const explicit = (n: number, inner: Uint8Array): Buffer => tlv(0xa0 + n, inner);
export const octetString = (b: Uint8Array): Buffer => tlv(0x04, b);
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const ia5String = (s: string, tag = 0x16): Buffer => tlv(tag, Buffer.from(s, 'ascii'));
export const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));

/** BIT STRING with `unused` trailing bits in the last byte. */
export function bitString(b: Uint8Array, unused = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
}

/** INTEGER from unsigned big-endian bytes (or a small number). */
export function integer(v: number | Uint8Array): Buffer {
  let b: Buffer;
  if (typeof v === 'number') {
    const hex = v.toString(16);
    b = Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex');
  } else b = Buffer.from(v);
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  b = b.subarray(i);
  if ((b[0]! & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

/** OBJECT IDENTIFIER from dotted form. */
export function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const bytes = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) bytes.unshift(0x80 | (v & 0x7f));
    out.push(...bytes);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from then on (RFC 5280 §4.1.2.5). */
export function time(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '');
  const year = d.getUTCFullYear();
  if (year >= 1950 && year < 2050) return tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'ascii'));
  return tlv(0x18, Buffer.from(`${digits}Z`, 'ascii'));
}

// ---- walking

export interface DerNode {
  tag: number;
  /** Content bytes (a view). */
  content: Buffer;
  /** Offset just past this TLV in the buffer it was read from. */
  end: number;
}

/** Reads the TLV at `offset`; undefined when it is malformed or runs past the buffer. */
export function readTlv(buf: Buffer, offset = 0): DerNode | undefined {
  if (offset + 2 > buf.length) return undefined;
  const tag = buf[offset]!;
  let len = buf[offset + 1]!;
  let o = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || o + n > buf.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[o + i]!;
    o += n;
  }
  if (o + len > buf.length) return undefined;
  return { tag, content: buf.subarray(o, o + len), end: o + len };
}

/** The children of a constructed node's content. Undefined when malformed. */
export function children(content: Buffer): DerNode[] | undefined {
  const out: DerNode[] = [];
  for (let o = 0; o < content.length; ) {
    const n = readTlv(content, o);
    if (n === undefined) return undefined;
    out.push(n);
    o = n.end;
  }
  return out;
}

/** The DER subject Name of a certificate (a CertificateRequest's certificate_authorities entry), or undefined. */
export function certificateSubject(certDer: Buffer): Buffer | undefined {
  const cert = readTlv(certDer);
  const tbs = cert && children(cert.content)?.[0];
  const fields = tbs && children(tbs.content);
  if (fields === undefined) return undefined;
  // [0] version, serial, signature, issuer, validity, subject (RFC 5280 §4.1)
  const subject = fields[fields[0]?.tag === 0xa0 ? 5 : 4];
  if (subject === undefined || subject.tag !== 0x30) return undefined;
  return tlv(0x30, subject.content); // DER: re-encoding gives back the same bytes
}

/**
 * The value (OCTET STRING content) of the certificate extension `oidDotted`,
 * or undefined when the certificate has none (or cannot be walked).
 */
export function certificateExtension(certDer: Buffer, oidDotted: string): Buffer | undefined {
  const want = oid(oidDotted);
  const cert = readTlv(certDer);
  const tbs = cert && children(cert.content)?.[0];
  const fields = tbs && children(tbs.content);
  const extsWrap = fields?.find((f) => f.tag === 0xa3);
  const exts = extsWrap && readTlv(extsWrap.content);
  if (exts === undefined) return undefined;
  for (const e of children(exts.content) ?? []) {
    const parts = children(e.content);
    if (parts === undefined || parts.length < 2) continue;
    const id = parts[0]!;
    if (id.tag !== 0x06 || !want.subarray(2).equals(id.content)) continue;
    const value = parts[parts.length - 1]!;
    return value.tag === 0x04 ? value.content : undefined;
  }
  return undefined;
}
