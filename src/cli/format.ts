/**
 * How the CLI prints messages, options, payloads and links.
 */

import { Buffer } from 'node:buffer';
import type { Link } from '../codec/link-format.js';
import { formatOptionValue } from '../codec/options.js';
import { describeCode, MESSAGE_TYPE_NAMES } from '../constants/codes.js';
import { contentFormatName, isTextual } from '../constants/content-formats.js';
import { optionName } from '../constants/options.js';
import { escapeText, jsonSafe } from './escape.js';

/**
 * "Uri-Path: \"a\"" lines, one per option, in the given order. String values
 * are JSON strings with every control character escaped (see escape.ts).
 */
export function formatOptions(options: readonly { number: number; value: Uint8Array }[]): string[] {
  return options.map((o) => `${optionName(o.number)}: ${jsonSafe(formatOptionValue(o.number, o.value))}`);
}

export function typeName(type: number): string {
  return MESSAGE_TYPE_NAMES[type] ?? `type ${type}`;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** "50 (application/json)" or "50". */
export function describeContentFormat(cf: number): string {
  const n = contentFormatName(cf);
  return n === undefined ? String(cf) : `${cf} (${n})`;
}

function validUtf8(b: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}

/** True when the payload is readable text: a textual (or absent) Content-Format and valid UTF-8. */
export function isTextPayload(payload: Buffer, contentFormat: number | undefined): boolean {
  return isTextual(contentFormat) && validUtf8(payload);
}

/**
 * The bytes to write to stdout: the payload as-is, plus a trailing newline
 * only when stdout is a terminal, the payload is text and lacks one.
 */
export function stdoutBytes(payload: Buffer, contentFormat: number | undefined, isTTY: boolean): Buffer {
  if (!isTTY || payload.length === 0) return payload;
  if (!isTextPayload(payload, contentFormat)) return payload;
  if (payload[payload.length - 1] === 0x0a) return payload;
  return Buffer.concat([payload, Buffer.from('\n')]);
}

/**
 * One-line summary of a payload for stderr: text (shortened, control
 * characters escaped) or byte count.
 */
export function summarizePayload(payload: Buffer, contentFormat: number | undefined, max = 200): string {
  if (payload.length === 0) return '';
  if (isTextPayload(payload, contentFormat)) {
    const t = payload
      .toString('utf8')
      .replace(/[ \t\r\n]+/g, ' ')
      .trim();
    return escapeText(t.length > max ? `${t.slice(0, max)}…` : t);
  }
  return `(${payload.length} bytes of ${contentFormat === undefined ? 'data' : describeContentFormat(contentFormat)})`;
}

export interface MessageView {
  type?: number;
  code: number;
  messageId?: number;
  token?: Uint8Array;
  options: readonly { number: number; value: Uint8Array }[];
  payload: Uint8Array;
}

/**
 * A message as verbose lines: "<prefix> CON GET  MID=... Token=..." then
 * options indented, then the payload size.
 */
export function formatMessage(prefix: string, m: MessageView, extra = ''): string[] {
  const head = [m.type === undefined ? undefined : typeName(m.type), describeCode(m.code)];
  if (m.messageId !== undefined) head.push(`MID=${m.messageId}`);
  if (m.token !== undefined) head.push(`Token=${m.token.length === 0 ? '(empty)' : `0x${hex(m.token)}`}`);
  const lines = [`${prefix} ${head.filter((x) => x !== undefined).join(' ')}${extra}`];
  for (const l of formatOptions(m.options)) lines.push(`${prefix}   ${l}`);
  lines.push(`${prefix}   payload: ${m.payload.length} bytes`);
  return lines;
}

/** A link as one line: "</path>  ct=0 sz=12 title=\"x\" obs" (control characters escaped). */
export function formatLink(link: Link): string {
  const attrs = link.attributes.map(([n, v]) => {
    const name = escapeText(n);
    if (v === true) return name;
    return /^[A-Za-z0-9._-]+$/.test(v) && n !== 'title'
      ? `${name}=${v}`
      : `${name}=${jsonSafe(JSON.stringify(v))}`;
  });
  const target = escapeText(link.target);
  return attrs.length === 0 ? `<${target}>` : `<${target}>  ${attrs.join(' ')}`;
}

/** JSON form of a link: { href, <attr>: value | true | [values when repeated] }. */
export function linkToJson(link: Link): Record<string, unknown> {
  const out: Record<string, unknown> = { href: link.target };
  for (const [n, v] of link.attributes) {
    const key = n === 'href' ? 'href-attr' : n;
    const prev = out[key];
    if (prev === undefined) out[key] = v;
    else out[key] = Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}
