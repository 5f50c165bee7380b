/**
 * Pure helpers for the tracer: decoding a CoAP datagram into printable
 * pieces and accounting for the bytes each layer adds on the wire.
 * Nothing here throws on malformed input.
 */

import { Buffer } from 'node:buffer';
import { type CoapMessage, decodeMessage } from '../codec/message.js';
import { formatOptionValue } from '../codec/options.js';
import { describeCode, MESSAGE_TYPE_NAMES } from '../constants/codes.js';
import { contentFormatName, isTextual } from '../constants/content-formats.js';
import { OptionNumber, optionName } from '../constants/options.js';
import { CIPHER_SUITES, recordOverhead } from '../dtls/crypto/suites.js';

/** A decoded CoAP message ready for printing. */
export interface CoapSummary {
  ok: true;
  type: string;
  code: number;
  /** "POST", "2.05 Content", "Empty". */
  codeText: string;
  messageId: number;
  token: string;
  options: Array<{ number: number; name: string; value: string }>;
  contentFormat: number | undefined;
  payloadLength: number;
  /** Short rendering of the payload according to its content format ('' when none). */
  payloadPreview: string;
  /** CoAP bytes by part: fixed header, token, options, payload marker + payload. */
  sizes: CoapSizes;
}

export interface CoapSizes {
  header: number;
  token: number;
  options: number;
  /** Payload marker (0xFF): 1 when there is a payload. */
  marker: number;
  payload: number;
  total: number;
}

export interface CoapUndecodable {
  ok: false;
  error: string;
  length: number;
  hex: string;
}

export function hexOf(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Decodes a CoAP datagram for the trace (never throws). */
export function summarizeCoap(data: Uint8Array, previewMax = 72): CoapSummary | CoapUndecodable {
  let msg: CoapMessage;
  try {
    msg = decodeMessage(data);
  } catch (err) {
    return {
      ok: false,
      error: err instanceof Error ? err.message : String(err),
      length: data.length,
      hex: hexOf(data.subarray(0, 32)),
    };
  }
  let contentFormat: number | undefined;
  const options = msg.options.map((o) => {
    if (o.number === OptionNumber.ContentFormat) {
      contentFormat = o.value.length <= 2 ? o.value.reduce((n, b) => n * 256 + b, 0) : undefined;
    }
    return { number: o.number, name: optionName(o.number), value: formatOptionValue(o.number, o.value) };
  });
  const payload = msg.payload.length;
  const marker = payload > 0 ? 1 : 0;
  const token = msg.token.length;
  const sizes: CoapSizes = {
    header: 4,
    token,
    options: data.length - 4 - token - marker - payload,
    marker,
    payload,
    total: data.length,
  };
  return {
    ok: true,
    type: MESSAGE_TYPE_NAMES[msg.type] ?? String(msg.type),
    code: msg.code,
    codeText: msg.code === 0 ? 'Empty' : describeCode(msg.code),
    messageId: msg.messageId,
    token: hexOf(msg.token),
    options,
    contentFormat,
    payloadLength: payload,
    payloadPreview: previewPayload(msg.payload, contentFormat, previewMax),
    sizes,
  };
}

/** Text (shortened, one line) for textual formats and valid UTF-8; hex otherwise. */
export function previewPayload(payload: Buffer, contentFormat: number | undefined, max = 72): string {
  if (payload.length === 0) return '';
  if (isTextual(contentFormat)) {
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(payload);
      const oneLine = text
        .replace(/\s+/g, ' ')
        .replace(/[\u0000-\u001f\u007f]/g, '.')
        .trim();
      return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
    } catch {
      // not UTF-8: fall through to hex
    }
  }
  const n = Math.min(payload.length, Math.max(4, Math.floor(max / 3)));
  return `0x${payload.subarray(0, n).toString('hex')}${payload.length > n ? '…' : ''}`;
}

export function contentFormatLabel(cf: number | undefined): string {
  if (cf === undefined) return 'no Content-Format';
  return contentFormatName(cf) ?? `format ${cf}`;
}

/** IP header bytes for an address family (no options / extension headers). */
export function ipHeaderBytes(family: string | number | undefined): number {
  return family === 'IPv6' || family === 6 ? 40 : 20;
}

export const UDP_HEADER_BYTES = 8;
export const DTLS_RECORD_HEADER_BYTES = 13;

/**
 * Per-record expansion of a protected (epoch > 0) DTLS record: explicit
 * nonce/IV plus AEAD tag or MAC (CBC padding counted at its maximum).
 */
export function dtlsProtectionBytes(suite: string | number | undefined): number {
  if (suite === undefined) return 0;
  for (const s of CIPHER_SUITES.values()) {
    if (s.name === suite || s.id === suite) return recordOverhead(s);
  }
  return 0;
}

/** Wire size of one datagram and its split by layer. */
export interface WireBreakdown {
  ip: number;
  udp: number;
  /** DTLS record header + explicit nonce + tag (0 over plain UDP). */
  dtls: number;
  coap: CoapSizes | undefined;
  /** Bytes carried above UDP/DTLS (CoAP message or handshake record body). */
  inner: number;
  total: number;
}

export function wireBreakdown(
  family: string | number | undefined,
  inner: number,
  dtls: number,
  coap?: CoapSizes,
): WireBreakdown {
  const ip = ipHeaderBytes(family);
  return { ip, udp: UDP_HEADER_BYTES, dtls, coap, inner, total: ip + UDP_HEADER_BYTES + dtls + inner };
}

/** "IPv4 20 + UDP 8 + DTLS 29 + CoAP 4 hdr + 8 token + 12 opts + 1+52 payload = 134 B". */
export function formatBreakdown(w: WireBreakdown, family: string | number | undefined): string {
  const fam = family === 'IPv6' || family === 6 ? 'IPv6' : 'IPv4';
  const parts = [`${fam} ${w.ip}`, `UDP ${w.udp}`];
  if (w.dtls > 0) parts.push(`DTLS ${w.dtls}`);
  if (w.coap) {
    const c = w.coap;
    let s = `CoAP ${c.header} hdr`;
    if (c.token > 0) s += ` + ${c.token} token`;
    if (c.options > 0) s += ` + ${c.options} opts`;
    if (c.payload > 0) s += ` + ${c.marker}+${c.payload} payload`;
    parts.push(s);
  } else parts.push(`${w.inner} data`);
  const useful = w.coap ? w.coap.payload : 0;
  const pct = w.total > 0 ? ` (payload ${((useful / w.total) * 100).toFixed(0)}%)` : '';
  return `${parts.join(' + ')} = ${w.total} B${w.coap ? pct : ''}`;
}
