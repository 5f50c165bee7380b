/**
 * CoAP message description and exchange grouping for the dissector.
 * Decoding itself is src/codec/message.ts; this file names and formats.
 */

import { Buffer } from 'node:buffer';
import { toHex } from '../capture/bytes.js';
import type { CoapMessage } from '../codec/message.js';
import { SignalCode } from '../codec/reliable.js';
import {
  describeCode,
  formatCode,
  isRequestCode,
  isResponseCode,
  MESSAGE_TYPE_NAMES,
} from '../constants/codes.js';
import { contentFormatName, isTextual } from '../constants/content-formats.js';
import { optionDefinition, optionName } from '../constants/options.js';

export interface BlockValue {
  num: number;
  more: boolean;
  szx: number;
  size: number;
}

export interface CoapOptionInfo {
  number: number;
  name: string;
  format: 'empty' | 'opaque' | 'uint' | 'string' | 'unknown';
  /** Decoded value: number (uint), string (string), hex (opaque/unknown), null (empty). */
  value: number | string | null;
  /** Raw value bytes in hex. */
  raw: string;
  /** Human-readable value (content-format names, block num/m/szx...). */
  display: string;
  block?: BlockValue;
}

export interface CoapPayloadInfo {
  length: number;
  hex: string;
  /** Text when the payload is textual (by Content-Format or valid printable UTF-8). */
  text?: string;
  /** Short one-line rendering for the narrative. */
  preview: string;
  /** What the preview was decoded as. */
  kind: 'json' | 'text' | 'binary' | 'none';
}

/** The OSCORE side of a message in the dissection. */
export interface OscoreMessageInfo {
  /** kid (hex), when present. */
  kid?: string;
  /** kid context (hex), when present. */
  kidContext?: string;
  /** Partial IV (hex), when present. */
  partialIv?: string;
  /** The decrypted inner message, when a context was given and it verified. */
  inner?: {
    /** "GET", "2.05 Content". */
    codeName: string;
    /** The inner Uri-Path ("" when none). */
    uriPath: string;
    /** The inner Uri-Query, joined with "&". */
    uriQuery?: string;
    /** The inner options. */
    options: CoapOptionInfo[];
    /** The inner payload. */
    payload: CoapPayloadInfo;
    /** One line, as for an outer message. */
    summary: string;
  };
  /** Why the message was not decrypted (no context given, decryption failed...). */
  note?: string;
}

export interface CoapMessageInfo {
  index: number;
  frame: number;
  relTime: number;
  src: string;
  dst: string;
  transport: 'udp' | 'dtls' | 'tcp';
  dtlsSession?: number;
  /** Message type (0 CON, 1 NON, 2 ACK, 3 RST); -1 for an RFC 8323 frame, which has none. */
  type: number;
  /** "CON"...; "TCP" for an RFC 8323 frame. */
  typeName: string;
  /** Message ID; -1 for an RFC 8323 frame, which has none. */
  messageId: number;
  token: string;
  code: number;
  /** "0.02", "2.05". */
  codeText: string;
  /** "POST", "2.03 Valid", "0.00 Empty". */
  codeName: string;
  /** 'signaling': an RFC 8323 signaling message (7.01 CSM ... 7.05 Abort), on TCP only. */
  kind: 'request' | 'response' | 'empty' | 'signaling' | 'other';
  /** "/logs" built from Uri-Path options ("" when none). */
  uriPath: string;
  uriQuery?: string;
  /** For responses: the path of the matched request. */
  requestUriPath?: string;
  options: CoapOptionInfo[];
  contentFormat?: { id: number; name: string };
  observe?: number;
  block1?: BlockValue;
  block2?: BlockValue;
  payload: CoapPayloadInfo;
  /** Bytes of header (4; on TCP the frame header: 2-6) + token + options (+ payload marker). */
  headerLength: number;
  tokenLength: number;
  optionsLength: number;
  exchange?: number;
  role?: string;
  /** OSCORE (RFC 8613): the option's fields and, with a context, the decrypted inner message. */
  oscore?: OscoreMessageInfo;
  /** CoAP over TCP (RFC 8323): the frame, and the TCP segments that carried it. */
  tcp?: {
    /** Index of the stream direction in result.tcp.streams (1-based). */
    stream: number;
    /** Whole frame (Len/TKL, Extended Length, Code, Token, options, payload), as tshark's coap.length. */
    frameLength: number;
    /** Len/TKL byte + Extended Length + Code. */
    frameHeaderLength: number;
    /** Capture frames that carried the frame's bytes; the last one completed it. */
    segments: number[];
  };
  /** Wireshark-like one-line summary. */
  summary: string;
}

export function decodeBlockValue(raw: Uint8Array): BlockValue | undefined {
  if (raw.length > 3) return undefined;
  let n = 0;
  for (const b of raw) n = n * 256 + b;
  const szx = n & 7;
  return { num: n >>> 4, more: (n & 8) !== 0, szx, size: szx === 7 ? 1024 : 1 << (szx + 4) };
}

function describeOption(number: number, value: Uint8Array): CoapOptionInfo {
  const def = optionDefinition(number);
  const raw = toHex(value);
  const info: CoapOptionInfo = {
    number,
    name: optionName(number),
    format: def?.format ?? 'unknown',
    value: raw,
    raw,
    display: raw === '' ? '(empty)' : `0x${raw}`,
  };
  switch (def?.format) {
    case 'empty':
      info.value = null;
      info.display = '(empty)';
      break;
    case 'string':
      info.value = Buffer.from(value).toString('utf8');
      info.display = JSON.stringify(info.value);
      break;
    case 'uint': {
      if (value.length > 4) break;
      let n = 0;
      for (const b of value) n = n * 256 + b;
      info.value = n;
      info.display = String(n);
      if (number === 12 || number === 17) {
        const name = contentFormatName(n);
        if (name) info.display = `${n} (${name})`;
      } else if (number === 23 || number === 27 || number === 19 || number === 31) {
        const blk = decodeBlockValue(value);
        if (blk) {
          info.block = blk;
          info.display = `num=${blk.num} m=${blk.more ? 1 : 0} szx=${blk.szx} (${blk.szx === 7 ? 'BERT' : `${blk.size} B`})`;
        }
      } else if (number === 6) {
        info.display = n === 0 ? '0 (register)' : n === 1 ? '1 (deregister)' : String(n);
      }
      break;
    }
    default:
      break;
  }
  return info;
}

const MAX_PREVIEW = 160;

function isPrintableUtf8(b: Uint8Array): string | undefined {
  const s = Buffer.from(b).toString('utf8');
  if (s.includes('\uFFFD')) return undefined;
  if (/[\u0000-\u0008\u000e-\u001f\u007f]/.test(s)) return undefined;
  return s;
}

function describePayload(payload: Uint8Array, contentFormat: number | undefined): CoapPayloadInfo {
  if (payload.length === 0) return { length: 0, hex: '', preview: '', kind: 'none' };
  const hex = toHex(payload);
  const textual = contentFormat === undefined ? true : isTextual(contentFormat);
  const text = textual ? isPrintableUtf8(payload) : undefined;
  const clip = (s: string): string => (s.length > MAX_PREVIEW ? `${s.slice(0, MAX_PREVIEW)}…` : s);
  if (text !== undefined) {
    const oneLine = text.replace(/\s*\n\s*/g, ' ');
    if (contentFormat !== undefined && contentFormatName(contentFormat)?.includes('json')) {
      try {
        JSON.parse(text);
        return { length: payload.length, hex, text, preview: clip(oneLine), kind: 'json' };
      } catch {
        return {
          length: payload.length,
          hex,
          text,
          preview: clip(`${oneLine} (invalid JSON)`),
          kind: 'text',
        };
      }
    }
    return { length: payload.length, hex, text, preview: clip(oneLine), kind: 'text' };
  }
  const shown = hex.length > 64 ? `${hex.slice(0, 64)}…` : hex;
  return { length: payload.length, hex, preview: `0x${shown}`, kind: 'binary' };
}

/** Builds the description of one decoded message (grouping fields are filled later). */
export function describeMessage(
  msg: CoapMessage,
  wireLength: number,
  ctx: Pick<CoapMessageInfo, 'index' | 'frame' | 'relTime' | 'src' | 'dst' | 'transport' | 'dtlsSession'>,
): CoapMessageInfo {
  const options = msg.options.map((o) => describeOption(o.number, o.value));
  const path = options.filter((o) => o.number === 11).map((o) => String(o.value));
  const query = options.filter((o) => o.number === 15).map((o) => String(o.value));
  const cfOpt = options.find((o) => o.number === 12);
  const cf = typeof cfOpt?.value === 'number' ? cfOpt.value : undefined;
  const kind = isRequestCode(msg.code)
    ? 'request'
    : isResponseCode(msg.code)
      ? 'response'
      : msg.code === 0
        ? 'empty'
        : 'other';
  const headerLength = wireLength - msg.payload.length;
  const info: CoapMessageInfo = {
    ...ctx,
    type: msg.type,
    typeName: MESSAGE_TYPE_NAMES[msg.type] ?? String(msg.type),
    messageId: msg.messageId,
    token: toHex(msg.token),
    code: msg.code,
    codeText: formatCode(msg.code),
    codeName: msg.code === 0 ? '0.00 Empty' : describeCode(msg.code),
    kind,
    uriPath: path.length > 0 ? `/${path.join('/')}` : '',
    options,
    payload: describePayload(msg.payload, cf),
    headerLength,
    tokenLength: msg.token.length,
    optionsLength: headerLength - 4 - msg.token.length - (msg.payload.length > 0 ? 1 : 0),
    summary: '',
  };
  if (query.length > 0) info.uriQuery = query.join('&');
  if (cf !== undefined) info.contentFormat = { id: cf, name: contentFormatName(cf) ?? `format ${cf}` };
  const obs = options.find((o) => o.number === 6);
  if (obs && typeof obs.value === 'number') info.observe = obs.value;
  const b1 = options.find((o) => o.number === 27)?.block;
  if (b1) info.block1 = b1;
  const b2 = options.find((o) => o.number === 23)?.block;
  if (b2) info.block2 = b2;
  info.summary = summarize(info);
  return info;
}

/** One line, as in Wireshark's packet list. */
export function summarize(m: CoapMessageInfo): string {
  const parts = m.tcp ? [`TCP len=${m.tcp.frameLength}`] : [m.typeName, `MID=${m.messageId}`];
  if (m.token !== '') parts.push(`TKN=${m.token}`);
  parts.push(m.codeName);
  const path = m.uriPath || m.requestUriPath || '';
  if (path) parts.push(m.uriQuery ? `${path}?${m.uriQuery}` : path);
  if (m.observe !== undefined) parts.push(`Observe=${m.observe}`);
  if (m.block1) parts.push(`Block1=${m.block1.num}/${m.block1.more ? 1 : 0}/${m.block1.size}`);
  if (m.block2) parts.push(`Block2=${m.block2.num}/${m.block2.more ? 1 : 0}/${m.block2.size}`);
  if (m.contentFormat) parts.push(`(${m.contentFormat.name})`);
  return parts.join(' ');
}

export interface CoapExchange {
  id: number;
  client: string;
  server: string;
  transport: 'udp' | 'dtls' | 'tcp';
  token: string;
  /** Request method ("GET"), or undefined when the request is not in the capture. */
  method?: string;
  uriPath: string;
  /** piggybacked | separate | non | observe | ping | unmatched; on TCP: request | observe | signaling | empty */
  kind: string;
  messages: { index: number; role: string }[];
  blockTransfer?: number;
}

export interface BlockTransfer {
  id: number;
  option: 'Block1' | 'Block2';
  client: string;
  server: string;
  method: string;
  uriPath: string;
  exchanges: number[];
  blocks: number;
  blockSize: number;
  /** Sum of the payload bytes carried by the blocks. */
  bytes: number;
  complete: boolean;
}

/** TCP signaling (a Pong joins its Ping by token) and Empty messages (RFC 8323 §3.4, §5). */
function groupTcpOther(
  m: CoapMessageInfo,
  newExchange: (m: CoapMessageInfo, client: string, server: string, kind: string) => CoapExchange,
  add: (ex: CoapExchange, m: CoapMessageInfo, role: string) => void,
  pings: Map<string, CoapExchange>,
): void {
  if (m.code === SignalCode.Pong) {
    const key = `${m.dst}|${m.src}|${m.token}`;
    const ping = pings.get(key);
    if (ping !== undefined) {
      pings.delete(key);
      add(ping, m, 'Pong (answers the Ping)');
      return;
    }
  }
  const kind = m.kind === 'signaling' ? 'signaling' : m.kind === 'empty' ? 'empty' : 'unmatched';
  const ex = newExchange(m, m.src, m.dst, kind);
  ex.method = m.codeName;
  const role =
    m.kind === 'signaling'
      ? (m.codeName.split(' ')[1] ?? m.codeName)
      : m.kind === 'empty'
        ? 'Empty message (ignored by the receiver, RFC 8323 §3.4)'
        : 'message with reserved code';
  add(ex, m, m.code === SignalCode.Pong ? 'Pong (no matching Ping)' : role);
  if (m.code === SignalCode.Ping) pings.set(`${m.src}|${m.dst}|${m.token}`, ex);
}

/** Groups messages into exchanges (token / MID matching) and block-wise transfers. */
export function groupExchanges(messages: CoapMessageInfo[]): {
  exchanges: CoapExchange[];
  blockTransfers: BlockTransfer[];
} {
  const exchanges: CoapExchange[] = [];
  const byToken = new Map<string, CoapExchange>();
  const byMid = new Map<string, { ex: CoapExchange; msg: CoapMessageInfo }>();
  const lastRequestMid = new Map<string, CoapExchange>();
  const responsesSeen = new Map<number, Set<string>>();
  const pings = new Map<string, CoapExchange>();
  const add = (ex: CoapExchange, m: CoapMessageInfo, role: string): void => {
    ex.messages.push({ index: m.index, role });
    m.exchange = ex.id;
    m.role = role;
  };
  const newExchange = (m: CoapMessageInfo, client: string, server: string, kind: string): CoapExchange => {
    const ex: CoapExchange = {
      id: exchanges.length + 1,
      client,
      server,
      transport: m.transport,
      token: m.token,
      uriPath: m.uriPath,
      kind,
      messages: [],
    };
    exchanges.push(ex);
    return ex;
  };
  for (const m of messages) {
    if (m.transport === 'tcp' && m.kind !== 'request' && m.kind !== 'response') {
      groupTcpOther(m, newExchange, add, pings);
      continue;
    }
    if (m.kind === 'request') {
      const retrans = lastRequestMid.get(`${m.src}|${m.dst}|${m.messageId}`);
      if (retrans !== undefined && retrans.token === m.token && m.transport !== 'tcp') {
        add(retrans, m, 'retransmission');
        continue;
      }
      const ex = newExchange(
        m,
        m.src,
        m.dst,
        m.transport === 'tcp' ? 'request' : m.type === 1 ? 'non' : 'piggybacked',
      );
      ex.method = m.codeName;
      if (m.observe === 0) ex.kind = 'observe';
      add(
        ex,
        m,
        m.observe === 0
          ? 'request (observe register)'
          : m.observe === 1
            ? 'request (observe deregister)'
            : 'request',
      );
      byToken.set(`${m.src}|${m.dst}|${m.token}`, ex);
      byMid.set(`${m.src}|${m.messageId}`, { ex, msg: m });
      lastRequestMid.set(`${m.src}|${m.dst}|${m.messageId}`, ex);
    } else if (m.kind === 'response') {
      const ex = byToken.get(`${m.dst}|${m.src}|${m.token}`);
      if (ex === undefined) {
        const orphan = newExchange(m, m.dst, m.src, 'unmatched');
        add(orphan, m, 'response without request');
        if (m.type === 0) byMid.set(`${m.src}|${m.messageId}`, { ex: orphan, msg: m });
        continue;
      }
      m.requestUriPath = ex.uriPath;
      m.summary = summarize(m);
      const req = messages[ex.messages[0]?.index ?? -1];
      // Per-exchange index of the responses seen so far (kept out of the exported shape).
      let seen = responsesSeen.get(ex.id);
      if (seen === undefined) {
        seen = new Set<string>();
        responsesSeen.set(ex.id, seen);
      }
      const midKey = `${m.src}|${m.messageId}`;
      const isRetrans = seen.has(midKey);
      const hadResponse = seen.size > 0;
      seen.add(midKey);
      let role: string;
      if (m.transport === 'tcp')
        role =
          m.observe !== undefined && hadResponse
            ? `notification (Observe=${m.observe})`
            : m.observe !== undefined
              ? `response (Observe=${m.observe})`
              : 'response';
      else if (isRetrans) role = 'retransmission';
      else if (m.observe !== undefined && hadResponse) role = `notification (Observe=${m.observe})`;
      else if (m.type === 2 && req !== undefined && req.messageId === m.messageId)
        role = 'piggybacked response';
      else if (req?.type === 1 && ex.kind === 'non')
        role = m.observe !== undefined ? `response (Observe=${m.observe})` : 'response';
      else {
        role = m.observe !== undefined ? `separate response (Observe=${m.observe})` : 'separate response';
        if (ex.kind === 'piggybacked') ex.kind = 'separate';
      }
      add(ex, m, role);
      if (m.type === 0) byMid.set(`${m.src}|${m.messageId}`, { ex, msg: m });
    } else if (m.kind === 'empty') {
      const target = byMid.get(`${m.dst}|${m.messageId}`);
      if (m.type === 0 && target === undefined) {
        const ex = newExchange(m, m.src, m.dst, 'ping');
        add(ex, m, 'CoAP ping');
        byMid.set(`${m.src}|${m.messageId}`, { ex, msg: m });
        continue;
      }
      if (target === undefined) {
        const ex = newExchange(m, m.dst, m.src, 'unmatched');
        add(ex, m, m.type === 3 ? 'reset (no matching message)' : 'ACK (no matching message)');
        continue;
      }
      let role: string;
      if (m.type === 3)
        role = target.msg.kind === 'empty' ? 'pong (reset to ping)' : `reset of ${target.msg.kind}`;
      else if (target.msg.kind === 'request') {
        // A separate response already seen means the datagrams were reordered (RFC 7252 §5.2.2).
        const late = target.ex.messages.some((x) => x.role.startsWith('separate response'));
        role = late
          ? 'empty ACK (after the separate response: reordered)'
          : 'empty ACK (response will follow separately)';
        if (target.ex.kind === 'piggybacked') target.ex.kind = 'separate';
      } else role = `ACK of ${target.msg.role ?? target.msg.kind}`;
      add(target.ex, m, role);
    } else {
      const ex = newExchange(m, m.src, m.dst, 'unmatched');
      add(ex, m, 'message with reserved code');
    }
  }
  // Block-wise transfers: consecutive exchanges for the same resource that carry Block1/Block2.
  const blockTransfers: BlockTransfer[] = [];
  const open = new Map<string, BlockTransfer>();
  for (const ex of exchanges) {
    const req = ex.messages[0] ? messages[ex.messages[0].index] : undefined;
    if (req === undefined || req.kind !== 'request') continue;
    const responses = ex.messages.map((x) => messages[x.index]).filter((x) => x?.kind === 'response');
    const b2 = responses.find((r) => r?.block2)?.block2;
    const b1 = req.block1;
    const option = b1 ? 'Block1' : b2 ? 'Block2' : undefined;
    if (option === undefined) continue;
    const blk = (b1 ?? b2) as BlockValue;
    const key = `${ex.client}|${ex.server}|${req.codeName}|${req.uriPath}|${option}`;
    let bt = open.get(key);
    if (bt === undefined || blk.num === 0) {
      bt = {
        id: blockTransfers.length + 1,
        option,
        client: ex.client,
        server: ex.server,
        method: req.codeName,
        uriPath: req.uriPath,
        exchanges: [],
        blocks: 0,
        blockSize: blk.size,
        bytes: 0,
        complete: false,
      };
      blockTransfers.push(bt);
      open.set(key, bt);
    }
    bt.exchanges.push(ex.id);
    bt.blocks++;
    ex.blockTransfer = bt.id;
    if (option === 'Block1') bt.bytes += req.payload.length;
    else bt.bytes += responses.find((r) => r?.block2)?.payload.length ?? 0;
    if (!blk.more) {
      bt.complete = true;
      open.delete(key);
    }
  }
  return { exchanges, blockTransfers };
}
