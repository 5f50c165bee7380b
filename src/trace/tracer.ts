/**
 * `--trace`: the life of each message, layer by layer, printed as it happens.
 *
 * startTrace() subscribes to the `coapkit:*` node:diagnostics_channel
 * channels (see src/diagnostics.ts and src/dtls/diag.ts) and prints DNS
 * lookups, DTLS flights and records, every CoAP message sent or received
 * (decoded, with the bytes each layer adds), retransmissions, duplicates,
 * rejections and how responses were matched. Nothing is subscribed until
 * it is called, so the publishers' `hasSubscribers` checks keep tracing free
 * when it is off. A subscriber never throws into the code that published.
 *
 * Text output is buffered until the end of the current turn of the event
 * loop (setImmediate) so that a CoAP message and the DTLS record that
 * carries it (published separately) print as one entry with one byte
 * breakdown.
 */

import { Buffer } from 'node:buffer';
import dc from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { escapeKeepingSgr, jsonSafe } from '../cli/escape.js';
import {
  ALERT_NAMES,
  CIPHER_SUITE_NAMES,
  EXTENSION_NAMES,
  GROUP_NAMES,
  HANDSHAKE_TYPE_NAMES,
} from '../dissect/dtls-names.js';
import type { HandshakeInfo } from '../dtls/diag.js';
import { formatPeerKey } from '../transport/address.js';
import {
  type CoapSizes,
  type CoapSummary,
  contentFormatLabel,
  DTLS_RECORD_HEADER_BYTES,
  dtlsProtectionBytes,
  formatBreakdown,
  hexOf,
  ipHeaderBytes,
  summarizeCoap,
  UDP_HEADER_BYTES,
  wireBreakdown,
} from './describe.js';

/** Every channel the tracer listens to, in the order of a message's life. */
export const TRACE_CHANNELS = [
  'coapkit:dns:resolved',
  'coapkit:dns:failed',
  'coapkit:dtls:handshake:start',
  'coapkit:dtls:record:sent',
  'coapkit:dtls:record:received',
  'coapkit:dtls:handshake:done',
  'coapkit:dtls:handshake:error',
  'coapkit:message:sent',
  'coapkit:message:retransmitted',
  'coapkit:message:received',
  'coapkit:message:duplicate',
  'coapkit:message:rejected',
  'coapkit:message:timeout',
  'coapkit:exchange:matched',
  'coapkit:server:request',
  'coapkit:server:response',
] as const;

export type TraceChannel = (typeof TRACE_CHANNELS)[number];

export interface TraceOptions {
  format: 'text' | 'json';
  out: NodeJS.WritableStream;
  /** ANSI colours (only for a terminal). */
  color: boolean;
  /** Display names for remote peers by key (`address%port`), e.g. `{ '127.0.0.1%5684': 'cloud' }`. */
  names?: Record<string, string>;
  /** Return false to leave an event out (e.g. to show one side of an in-process exchange). */
  filter?: (channel: TraceChannel, event: unknown) => boolean;
  /**
   * Called for each event that passes the filter: when it returns true the
   * event is counted in the summary but not printed (e.g. the middle blocks
   * of a long block-wise transfer).
   */
  mute?: () => boolean;
}

/** Running totals over everything printed so far (text and JSON). */
export interface TraceSummary {
  /** CoAP messages sent and received (retransmissions included). */
  coapMessages: number;
  /** Bytes of those messages on the wire, all layers. */
  coapWireBytes: number;
  /** Of which: IP, UDP, DTLS record overhead, CoAP header+token+options(+marker), payload. */
  ip: number;
  udp: number;
  dtls: number;
  coapOverhead: number;
  payload: number;
  /** DTLS handshake/CCS/alert records seen and their bytes (record header included). */
  dtlsRecords: number;
  dtlsRecordBytes: number;
  retransmissions: number;
  duplicates: number;
  dnsLookups: number;
}

export interface Trace {
  /** Prints what is pending and unsubscribes. Safe to call twice. */
  stop(): void;
  summary(): TraceSummary;
}

// ---------------------------------------------------------------- event shapes

interface PeerLike {
  address: string;
  port: number;
  family?: string;
  identity?: string;
  key?: string;
}

interface RecordEv {
  peer: string;
  role: 'client' | 'server';
  type: number;
  typeName?: string;
  epoch: number;
  seq: number;
  length: number;
  version?: number;
  handshake?: HandshakeInfo[];
  alert?: { level: number; description: number };
}

type Dir = 'out' | 'in';

interface CoapEntry {
  kind: 'coap';
  t: number;
  dir: Dir;
  peer: PeerLike;
  data: Uint8Array;
  retransmit?: { transmission: number; nextTimeoutMs: number };
  record?: RecordEv;
  /** Sent to a DTLS peer before its session was up: the record comes later. */
  queued?: boolean;
}

interface RecordEntry {
  kind: 'record';
  t: number;
  dir: Dir;
  ev: RecordEv;
}

interface LineEntry {
  kind: 'line';
  t: number;
  tag: string;
  style: Style;
  dir?: Dir;
  peer?: string;
  text: string;
  details?: string[];
}

type Entry = (CoapEntry | RecordEntry | LineEntry) & { muted?: boolean };

type Style = 'dns' | 'dtls' | 'coap' | 'warn' | 'error' | 'info' | 'server';

const ANSI: Record<Style | 'dim' | 'bold', string> = {
  dns: '\x1b[36m',
  dtls: '\x1b[35m',
  coap: '\x1b[32m',
  warn: '\x1b[33m',
  error: '\x1b[31m',
  info: '\x1b[34m',
  server: '\x1b[94m',
  dim: '\x1b[2m',
  bold: '\x1b[1m',
};
const RESET = '\x1b[0m';

const TIME_WIDTH = 11;
const TAG_WIDTH = 5;

// ---------------------------------------------------------------- helpers

function peerKeyOf(p: unknown): string | undefined {
  if (typeof p === 'string') return p;
  if (p !== null && typeof p === 'object') {
    const o = p as PeerLike;
    if (typeof o.key === 'string') return o.key;
    if (typeof o.address === 'string') return `${o.address}%${o.port}`;
  }
  return undefined;
}

/** The remote peer key an event concerns (undefined for DNS). */
export function eventPeerKey(event: unknown): string | undefined {
  if (event === null || typeof event !== 'object') return undefined;
  return peerKeyOf((event as { peer?: unknown }).peer);
}

function addressPort(key: string): string {
  return formatPeerKey(key);
}

function familyOfKey(key: string): 'IPv4' | 'IPv6' {
  const i = key.lastIndexOf('%');
  return (i < 0 ? key : key.slice(0, i)).includes(':') ? 'IPv6' : 'IPv4';
}

const ms = (n: number): string => (n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${n.toFixed(1)} ms`);

function errorJson(e: unknown): unknown {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, message: e.message, ...(code !== undefined ? { code } : {}) };
  }
  return String(e);
}

/** JSON.stringify with Buffers / Uint8Arrays as hex, Errors as {name, message, code}. */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(value, function (this: unknown, key: string, v: unknown) {
    const raw = (this as Record<string, unknown>)[key];
    if (raw instanceof Uint8Array) return hexOf(raw);
    if (raw instanceof Error) return errorJson(raw);
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}

function hsName(h: HandshakeInfo): string {
  return HANDSHAKE_TYPE_NAMES[h.type] ?? h.typeName;
}

function recordName(ev: RecordEv): string {
  switch (ev.type) {
    case 20:
      return 'ChangeCipherSpec';
    case 21: {
      const d = ev.alert ? (ALERT_NAMES[ev.alert.description] ?? `alert ${ev.alert.description}`) : '?';
      return `Alert ${d}`;
    }
    case 22: {
      const hs = ev.handshake ?? [];
      if (hs.length === 0) return ev.epoch > 0 ? 'Handshake (encrypted)' : 'Handshake';
      return hs.map(hsName).join(' + ');
    }
    case 23:
      return 'ApplicationData';
    default:
      return ev.typeName ?? `record type ${ev.type}`;
  }
}

const suiteLabel = (s: string): string => s;

/** The Observe value of a datagram with this Message ID, if it carries one. */
function observeOf(data: Uint8Array, messageId: number): number | undefined {
  const s = summarizeCoap(data);
  if (!s.ok || s.messageId !== messageId) return undefined;
  const o = s.options.find((x) => x.number === 6);
  return o === undefined ? undefined : Number(o.value);
}

function extensionList(ext: number[]): string {
  return ext.map((e) => EXTENSION_NAMES[e] ?? String(e)).join(', ');
}

// ---------------------------------------------------------------- tracer

export function startTrace(options: TraceOptions): Trace {
  const start = performance.now();
  const { out, color, format } = options;
  const names = options.names ?? {};
  const filter = options.filter;
  const subs: Array<[string, (m: unknown, name: string | symbol) => void]> = [];
  const queue: Entry[] = [];
  let scheduled = false;
  let stopped = false;
  let peerWidth = 15;
  /** Negotiated suite by `${role}|${peerKey}`. */
  const suites = new Map<string, string>();
  /** Peers (keys) seen in DTLS events: their CoAP messages travel in records. */
  const dtlsPeers = new Set<string>();
  /** CoAP messages sent before the DTLS session was up, by `${peerKey}|${length}`. */
  const queuedMessages = new Map<string, CoapEntry>();
  const sum: TraceSummary = {
    coapMessages: 0,
    coapWireBytes: 0,
    ip: 0,
    udp: 0,
    dtls: 0,
    coapOverhead: 0,
    payload: 0,
    dtlsRecords: 0,
    dtlsRecordBytes: 0,
    retransmissions: 0,
    duplicates: 0,
    dnsLookups: 0,
  };

  const paint = (style: keyof typeof ANSI, s: string): string => (color ? `${ANSI[style]}${s}${RESET}` : s);

  const write = (text: string): void => {
    if (text === '') return;
    try {
      out.write(text);
    } catch {
      // A closed output must not break the traced program.
    }
  };

  const now = (): number => performance.now() - start;

  const peerName = (key: string): string => names[key] ?? addressPort(key);

  // ---------------------------------------------------------- text rendering

  const line = (
    t: number,
    tag: string,
    style: Style,
    dir: Dir | undefined,
    peer: string | undefined,
    text: string,
    details: string[] = [],
  ): string => {
    const time = `+${ms(t)}`.padStart(TIME_WIDTH);
    const arrow = dir === 'out' ? '→' : dir === 'in' ? '←' : ' ';
    let who = '';
    if (peer !== undefined) {
      const n = peerName(peer);
      if (n.length > peerWidth) peerWidth = Math.min(n.length, 40);
      who = n.padEnd(peerWidth);
    } else who = ''.padEnd(peerWidth);
    // Text and details hold what peers sent (paths, identities, payloads): control
    // characters escaped so they cannot forge a trace line (our own colours are kept).
    const head = `${paint('dim', time)}  ${paint(style, tag.padEnd(TAG_WIDTH))} ${paint(style, arrow)} ${escapeKeepingSgr(who)}  ${escapeKeepingSgr(text)}`;
    const indent = ' '.repeat(TIME_WIDTH + 2 + TAG_WIDTH + 3 + peerWidth + 2);
    return `${[head, ...details.map((d) => `${indent}${paint('dim', escapeKeepingSgr(d))}`)].join('\n')}\n`;
  };

  const protectionFor = (role: string, peer: string, epoch: number): number => {
    if (epoch === 0) return 0;
    return dtlsProtectionBytes(suites.get(`${role}|${peer}`));
  };

  const renderCoap = (e: CoapEntry): string => {
    const key = peerKeyOf(e.peer) ?? '?';
    const s = summarizeCoap(e.data);
    const family = e.peer.family ?? familyOfKey(key);
    const dtls = e.record
      ? DTLS_RECORD_HEADER_BYTES + protectionFor(e.record.role, e.record.peer, e.record.epoch)
      : 0;
    if (!s.ok) {
      const w = wireBreakdown(family, s.length, dtls);
      countWire(w.ip, w.udp, dtls, s.length, 0);
      return line(e.t, 'CoAP', 'error', e.dir, key, `undecodable ${s.length} B: ${s.error}`, [
        `0x${s.hex}${s.length > 32 ? '…' : ''}`,
        formatBreakdown(w, family),
      ]);
    }
    const head = headline(s);
    const details: string[] = [];
    for (const o of s.options) details.push(`${o.name}: ${o.value}`);
    if (s.payloadLength > 0) {
      details.push(
        `payload ${s.payloadLength} B ${contentFormatLabel(s.contentFormat)}: ${s.payloadPreview}`,
      );
    }
    if (e.queued) {
      queuedMessages.set(`${key}|${s.sizes.total}`, e);
      details.push('queued: it leaves in a DTLS ApplicationData record once the session is up');
      return line(e.t, 'CoAP', 'coap', e.dir, key, head, details);
    }
    const w = wireBreakdown(family, s.sizes.total, dtls, s.sizes);
    countWire(w.ip, w.udp, dtls, s.sizes.total - s.sizes.payload, s.sizes.payload);
    if (e.record) {
      details.push(
        `in DTLS ApplicationData record epoch ${e.record.epoch} seq ${e.record.seq}` +
          (suites.get(`${e.record.role}|${e.record.peer}`)
            ? ` (${suites.get(`${e.record.role}|${e.record.peer}`)})`
            : ''),
      );
    }
    details.push(formatBreakdown(w, family));
    if (e.retransmit) {
      sum.retransmissions++;
      return line(
        e.t,
        'RETX',
        'warn',
        e.dir,
        key,
        `${head}  retransmission #${e.retransmit.transmission}${
          Number.isFinite(e.retransmit.nextTimeoutMs)
            ? `, next timeout ${ms(e.retransmit.nextTimeoutMs)}`
            : ''
        }`,
        details,
      );
    }
    return line(e.t, 'CoAP', e.dir === 'out' ? 'coap' : 'info', e.dir, key, head, details);
  };

  const headline = (s: CoapSummary): string => {
    const tok = s.token === '' ? 'no token' : `token ${s.token}`;
    return `${paint('bold', `${s.type} ${s.codeText}`)}  MID ${s.messageId}  ${tok}  (${s.sizes.total} B)`;
  };

  const countWire = (ip: number, udp: number, dtls: number, overhead: number, payload: number): void => {
    sum.coapMessages++;
    sum.ip += ip;
    sum.udp += udp;
    sum.dtls += dtls;
    sum.coapOverhead += overhead;
    sum.payload += payload;
    sum.coapWireBytes += ip + udp + dtls + overhead + payload;
  };

  const recordDetails = (ev: RecordEv): string[] => {
    const d: string[] = [];
    for (const h of ev.handshake ?? []) {
      const frag =
        h.fragmentOffset === 0 && h.fragmentLength === h.length
          ? `${h.length} B`
          : `fragment ${h.fragmentOffset}..${h.fragmentOffset + h.fragmentLength} of ${h.length} B`;
      d.push(`${hsName(h)}: message_seq ${h.messageSeq}, ${frag}`);
      if (h.cookie !== undefined) {
        d.push(
          h.cookie === ''
            ? '  cookie: (empty)'
            : `  cookie: ${h.cookie.slice(0, 16)}${h.cookie.length > 16 ? '…' : ''} (${h.cookie.length / 2} B)`,
        );
      }
      if (h.offeredSuites) d.push(`  offered suites: ${h.offeredSuites.map(suiteLabel).join(', ')}`);
      if (h.chosenSuite) d.push(`  chosen suite: ${h.chosenSuite}`);
      if (h.extensions && h.extensions.length > 0) d.push(`  extensions: ${extensionList(h.extensions)}`);
      if (h.identity !== undefined) d.push(`  PSK identity: ${JSON.stringify(h.identity)}`);
      if (h.identityHint) d.push(`  PSK identity hint: ${JSON.stringify(h.identityHint)}`);
      if (h.group !== undefined) d.push(`  ECDHE group: ${GROUP_NAMES[h.group] ?? h.group}`);
    }
    if (ev.alert) d.push(`level ${ev.alert.level === 2 ? 'fatal' : 'warning'}`);
    return d;
  };

  const recordBytes = (ev: RecordEv): number =>
    DTLS_RECORD_HEADER_BYTES + ev.length + protectionFor(ev.role, ev.peer, ev.epoch);

  /** Renders consecutive handshake records of one direction as a flight. */
  const renderFlight = (group: RecordEntry[]): string => {
    const first = group[0]!;
    const ev0 = first.ev;
    const family = familyOfKey(ev0.peer);
    let bytes = 0;
    for (const g of group) bytes += recordBytes(g.ev);
    sum.dtlsRecords += group.length;
    sum.dtlsRecordBytes += bytes;
    const recordNames = group.map((g) => recordName(g.ev)).join(', ');
    const version = ev0.version === 0xfeff ? 'DTLS 1.0' : 'DTLS 1.2';
    const sender = first.dir === 'out' ? ev0.role : ev0.role === 'client' ? 'server' : 'client';
    let text = `${paint('bold', `${sender} flight`)}: ${recordNames}  (${group.length} record${group.length > 1 ? 's' : ''}, ${bytes} B + ${family} ${ipHeaderBytes(family)} + UDP ${UDP_HEADER_BYTES} per datagram)`;
    if (group.some((g) => g.ev.type === 21 && g.ev.alert?.level === 2)) text = paint('error', text);
    let s = line(first.t, 'DTLS', 'dtls', first.dir, ev0.peer, text);
    for (const g of group) {
      const ev = g.ev;
      const prot = protectionFor(ev.role, ev.peer, ev.epoch);
      const layout = `${DTLS_RECORD_HEADER_BYTES} hdr + ${ev.length}${prot > 0 ? ` + ${prot} nonce/tag` : ''} = ${recordBytes(ev)} B`;
      const head = `${version} ${ev.typeName ?? ev.type}(${ev.type}) epoch ${ev.epoch} seq ${ev.seq}: ${layout}`;
      s += line(
        g.t,
        '',
        'dtls',
        undefined,
        undefined,
        `  ${head}`,
        recordDetails(ev).map((x) => `    ${x}`),
      );
    }
    return s;
  };

  const renderRecord = (e: RecordEntry): string => {
    // An application data record not matched to a CoAP message (e.g. a replayed reply).
    const ev = e.ev;
    const prot = protectionFor(ev.role, ev.peer, ev.epoch);
    const family = familyOfKey(ev.peer);
    const queued = e.dir === 'out' ? queuedMessages.get(`${ev.peer}|${ev.length}`) : undefined;
    if (queued !== undefined) {
      queuedMessages.delete(`${ev.peer}|${ev.length}`);
      const s = summarizeCoap(queued.data);
      if (s.ok) {
        const w = wireBreakdown(family, s.sizes.total, DTLS_RECORD_HEADER_BYTES + prot, s.sizes);
        countWire(w.ip, w.udp, w.dtls, s.sizes.total - s.sizes.payload, s.sizes.payload);
        return line(
          e.t,
          'DTLS',
          'dtls',
          e.dir,
          ev.peer,
          `ApplicationData epoch ${ev.epoch} seq ${ev.seq} carrying the queued ${s.type} ${s.codeText} MID ${s.messageId}`,
          [formatBreakdown(w, family)],
        );
      }
    }
    const w = wireBreakdown(family, ev.length, DTLS_RECORD_HEADER_BYTES + prot);
    return line(e.t, 'DTLS', 'dtls', e.dir, ev.peer, `${recordName(ev)} epoch ${ev.epoch} seq ${ev.seq}`, [
      formatBreakdown(w, family),
    ]);
  };

  const flush = (): void => {
    scheduled = false;
    let text = '';
    const items = queue.splice(0);
    for (const e of items) {
      if (e.kind === 'record') dtlsPeers.add(e.ev.peer);
      else if (e.kind === 'line' && e.tag === 'DTLS' && e.peer !== undefined) dtlsPeers.add(e.peer);
    }
    for (const e of items) {
      if (e.kind === 'coap' && e.dir === 'out' && e.record === undefined) {
        const key = peerKeyOf(e.peer);
        if (key !== undefined && dtlsPeers.has(key)) e.queued = true;
      }
    }
    for (let i = 0; i < items.length; i++) {
      const e = items[i]!;
      try {
        let s: string;
        if (e.kind === 'coap') s = renderCoap(e);
        else if (e.kind === 'line') s = line(e.t, e.tag, e.style, e.dir, e.peer, e.text, e.details);
        else if (e.ev.type === 23) s = renderRecord(e);
        else {
          const group: RecordEntry[] = [e];
          while (i + 1 < items.length) {
            const n = items[i + 1]!;
            if (
              n.kind !== 'record' ||
              n.ev.type === 23 ||
              n.dir !== e.dir ||
              n.ev.role !== e.ev.role ||
              n.ev.peer !== e.ev.peer
            ) {
              break;
            }
            group.push(n);
            i++;
          }
          s = renderFlight(group);
        }
        if (!e.muted) text += s;
      } catch (err) {
        text += `trace: cannot render an event: ${err instanceof Error ? err.message : String(err)}\n`;
      }
    }
    write(text);
  };

  const push = (e: Entry): void => {
    if (options.mute?.()) e.muted = true;
    queue.push(e);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };

  // ---------------------------------------------------------- text handlers

  const text: Record<TraceChannel, (m: unknown, t: number) => void> = {
    'coapkit:dns:resolved': (m, t) => {
      const ev = m as {
        host: string;
        address: string;
        family: number;
        addresses: Array<{ address: string; family: number }>;
        durationMs: number;
      };
      sum.dnsLookups++;
      const a = ev.addresses.filter((x) => x.family === 4).map((x) => x.address);
      const aaaa = ev.addresses.filter((x) => x.family === 6).map((x) => x.address);
      push({
        kind: 'line',
        t,
        tag: 'DNS',
        style: 'dns',
        text: `${paint('bold', ev.host)} resolved in ${ms(ev.durationMs)} → ${ev.address} (IPv${ev.family})`,
        details: [
          `A    ${a.length > 0 ? a.join(', ') : '(none)'}`,
          `AAAA ${aaaa.length > 0 ? aaaa.join(', ') : '(none)'}`,
          `(getaddrinfo, AF_UNSPEC: one A and one AAAA query; resolver order kept)`,
        ],
      });
    },
    'coapkit:dns:failed': (m, t) => {
      const ev = m as { host: string; error: unknown; durationMs: number };
      sum.dnsLookups++;
      push({
        kind: 'line',
        t,
        tag: 'DNS',
        style: 'error',
        text: `${ev.host} failed after ${ms(ev.durationMs)}: ${ev.error instanceof Error ? ev.error.message : String(ev.error)}`,
      });
    },
    'coapkit:dtls:handshake:start': (m, t) => {
      const ev = m as { peer: string; role: string };
      push({
        kind: 'line',
        t,
        tag: 'DTLS',
        style: 'dtls',
        dir: ev.role === 'client' ? 'out' : 'in',
        peer: ev.peer,
        text: `handshake starts (${ev.role === 'client' ? 'we are the client' : 'we are the server'})`,
      });
    },
    'coapkit:dtls:handshake:done': (m, t) => {
      const ev = m as {
        peer: string;
        role: string;
        suite?: string;
        suiteId?: number;
        extendedMasterSecret?: boolean;
        identity?: string;
        durationMs?: number;
      };
      const suite = ev.suite ?? (ev.suiteId !== undefined ? CIPHER_SUITE_NAMES[ev.suiteId] : undefined);
      if (suite) suites.set(`${ev.role}|${ev.peer}`, suite);
      push({
        kind: 'line',
        t,
        tag: 'DTLS',
        style: 'dtls',
        dir: ev.role === 'client' ? 'out' : 'in',
        peer: ev.peer,
        text: paint(
          'bold',
          `handshake done in ${ev.durationMs !== undefined ? ms(ev.durationMs) : '?'}: secure channel up`,
        ),
        details: [
          `suite ${suite ?? '?'}; +${DTLS_RECORD_HEADER_BYTES} hdr + ${dtlsProtectionBytes(suite)} nonce/tag per record`,
          `extended master secret: ${ev.extendedMasterSecret ? 'yes' : 'no'}; PSK identity: ${JSON.stringify(ev.identity ?? '')}`,
        ],
      });
    },
    'coapkit:dtls:handshake:error': (m, t) => {
      const ev = m as { peer: string; role: string; error: unknown };
      push({
        kind: 'line',
        t,
        tag: 'DTLS',
        style: 'error',
        peer: ev.peer,
        text: `handshake failed (${ev.role}): ${ev.error instanceof Error ? ev.error.message : String(ev.error)}`,
      });
    },
    'coapkit:dtls:record:sent': (m, t) => onRecord(m as RecordEv, 'out', t),
    'coapkit:dtls:record:received': (m, t) => onRecord(m as RecordEv, 'in', t),
    'coapkit:message:sent': (m, t) => {
      const ev = m as { peer: PeerLike; data: Uint8Array; transmission?: number };
      const n = ev.transmission ?? 0;
      if (n > 0) {
        // The wire copy of a retransmission already announced on message:retransmitted.
        const last = queue[queue.length - 1];
        if (
          last?.kind === 'coap' &&
          last.retransmit?.transmission === n &&
          peerKeyOf(last.peer) === peerKeyOf(ev.peer) &&
          last.data.length === ev.data.length
        ) {
          return;
        }
        push({
          kind: 'coap',
          t,
          dir: 'out',
          peer: ev.peer,
          data: ev.data,
          retransmit: { transmission: n, nextTimeoutMs: Number.NaN },
        });
        return;
      }
      push({ kind: 'coap', t, dir: 'out', peer: ev.peer, data: ev.data });
    },
    'coapkit:message:retransmitted': (m, t) => {
      const ev = m as { peer: PeerLike; data: Uint8Array; transmission: number; nextTimeoutMs: number };
      push({
        kind: 'coap',
        t,
        dir: 'out',
        peer: ev.peer,
        data: ev.data,
        retransmit: { transmission: ev.transmission, nextTimeoutMs: ev.nextTimeoutMs },
      });
    },
    'coapkit:message:received': (m, t) => {
      const ev = m as { peer: PeerLike; data: Uint8Array };
      const key = peerKeyOf(ev.peer);
      const entry: CoapEntry = { kind: 'coap', t, dir: 'in', peer: ev.peer, data: ev.data };
      // The DTLS record that carried it was published just before.
      for (let i = queue.length - 1; i >= 0; i--) {
        const q = queue[i]!;
        if (q.kind === 'record' && q.dir === 'in' && q.ev.type === 23 && q.ev.peer === key) {
          if (q.ev.length === ev.data.length) {
            entry.record = q.ev;
            queue.splice(i, 1);
          }
          break;
        }
      }
      push(entry);
    },
    'coapkit:message:duplicate': (m, t) => {
      const ev = m as { peer: PeerLike; data: Uint8Array; messageId: number; replayed: boolean };
      sum.duplicates++;
      const s = summarizeCoap(ev.data);
      push({
        kind: 'line',
        t,
        tag: 'DUP',
        style: 'warn',
        dir: 'in',
        peer: peerKeyOf(ev.peer),
        text: `duplicate ${s.ok ? `${s.type} ${s.codeText} ` : ''}MID ${ev.messageId}: ${
          ev.replayed ? 'answered again with the stored reply' : 'ignored (already handled or in progress)'
        }`,
      });
    },
    'coapkit:message:rejected': (m, t) => {
      const ev = m as { peer: PeerLike; data: Uint8Array; reason: string; reset?: boolean };
      const s = summarizeCoap(ev.data);
      const what = s.ok ? `${s.type} ${s.codeText} MID ${s.messageId}` : `${ev.data.length} B datagram`;
      push({
        kind: 'line',
        t,
        tag: ev.reset ? 'RST' : 'IGN',
        style: ev.reason === 'CoAP ping' ? 'info' : 'warn',
        dir: ev.reset ? 'out' : 'in',
        peer: peerKeyOf(ev.peer),
        text: `${ev.reset ? 'reset' : 'ignored'} ${what}: ${ev.reason}`,
      });
    },
    'coapkit:message:timeout': (m, t) => {
      const ev = m as { peer: PeerLike; messageId: number; transmissions: number };
      push({
        kind: 'line',
        t,
        tag: 'TIME',
        style: 'error',
        dir: 'out',
        peer: peerKeyOf(ev.peer),
        text: `no ACK for MID ${ev.messageId} after ${ev.transmissions} transmissions: giving up`,
      });
    },
    'coapkit:exchange:matched': (m, t) => {
      const ev = m as {
        peer: PeerLike;
        token: Uint8Array;
        messageId: number;
        requestMessageId?: number;
        code: number;
        piggybacked: boolean;
        rttMs: number;
      };
      let how = ev.piggybacked
        ? `piggybacked on the ACK of MID ${ev.requestMessageId ?? ev.messageId}`
        : `separate response (MID ${ev.messageId}, request MID ${ev.requestMessageId ?? '?'})`;
      // An Observe option in the message just received makes it a registration or notification.
      const key = peerKeyOf(ev.peer);
      for (let i = queue.length - 1; i >= 0; i--) {
        const q = queue[i]!;
        if (q.kind !== 'coap' || q.dir !== 'in' || peerKeyOf(q.peer) !== key) continue;
        const obs = observeOf(q.data, ev.messageId);
        if (obs !== undefined) {
          how = ev.piggybacked
            ? `observation registered (Observe ${obs}), ${how}`
            : `notification (Observe ${obs}), ${how}`;
        }
        break;
      }
      const s = summarizeCoap(Buffer.from([0x40, ev.code, 0, 0]));
      push({
        kind: 'line',
        t,
        tag: 'EXCH',
        style: 'info',
        dir: 'in',
        peer: peerKeyOf(ev.peer),
        text: `${s.ok ? s.codeText : ev.code} matched token ${hexOf(ev.token) || '(empty)'}: ${how}, RTT ${ms(ev.rttMs)}`,
      });
    },
    'coapkit:server:request': (m, t) => {
      const ev = m as { peer: PeerLike; token: Uint8Array; method: string; path: string; messageId?: number };
      const who = ev.peer.identity !== undefined ? ` from identity ${JSON.stringify(ev.peer.identity)}` : '';
      push({
        kind: 'line',
        t,
        tag: 'SERV',
        style: 'server',
        dir: 'in',
        peer: peerKeyOf(ev.peer),
        text: `handling ${ev.method} ${ev.path}${who} (token ${hexOf(ev.token) || '(empty)'})`,
      });
    },
    'coapkit:server:response': (m, t) => {
      const ev = m as { peer: PeerLike; token: Uint8Array; code: number | undefined; durationMs: number };
      const s = ev.code === undefined ? undefined : summarizeCoap(Buffer.from([0x40, ev.code, 0, 0]));
      push({
        kind: 'line',
        t,
        tag: 'SERV',
        style: 'server',
        dir: 'out',
        peer: peerKeyOf(ev.peer),
        text: `handler answered ${s?.ok ? s.codeText : 'nothing'} in ${ms(ev.durationMs)}`,
      });
    },
  };

  function onRecord(ev: RecordEv, dir: Dir, t: number): void {
    for (const h of ev.handshake ?? []) {
      if (h.chosenSuite) suites.set(`${ev.role}|${ev.peer}`, h.chosenSuite);
    }
    if (ev.type === 23 && dir === 'out') {
      // Attach to the CoAP message (or retransmission) published just before.
      for (let i = queue.length - 1; i >= 0; i--) {
        const q = queue[i]!;
        if (q.kind === 'coap' && q.dir === 'out' && peerKeyOf(q.peer) === ev.peer) {
          if (q.record === undefined && q.data.length === ev.length) {
            q.record = ev;
            return;
          }
          break;
        }
      }
    }
    push({ kind: 'record', t, dir, ev });
  }

  // ---------------------------------------------------------- JSON

  const json = (channel: TraceChannel, m: unknown, t: number): void => {
    const ev = (m !== null && typeof m === 'object' ? m : { value: m }) as Record<string, unknown>;
    const o: Record<string, unknown> = { t: Math.round(t * 1000) / 1000, event: channel.slice(8), ...ev };
    const data = ev.data;
    if (
      data instanceof Uint8Array &&
      (channel.startsWith('coapkit:message:') || channel === 'coapkit:message:duplicate')
    ) {
      const s = summarizeCoap(data);
      o.coap = s;
      if (s.ok) {
        sum.coapMessages++;
        if (channel === 'coapkit:message:retransmitted') sum.retransmissions++;
      }
    }
    if (channel === 'coapkit:message:duplicate') sum.duplicates++;
    if (channel.startsWith('coapkit:dns:')) sum.dnsLookups++;
    if (channel.startsWith('coapkit:dtls:record:')) {
      const r = ev as unknown as RecordEv;
      for (const h of r.handshake ?? []) if (h.chosenSuite) suites.set(`${r.role}|${r.peer}`, h.chosenSuite);
      o.wireLength = recordBytes(r);
    }
    if (!options.mute?.()) write(`${jsonSafe(toJsonLine(o))}\n`);
  };

  // ---------------------------------------------------------- subscribe

  for (const channel of TRACE_CHANNELS) {
    const fn = (m: unknown): void => {
      if (stopped) return;
      try {
        if (filter && !filter(channel, m)) return;
        const t = now();
        if (format === 'json') json(channel, m, t);
        else text[channel](m, t);
      } catch (err) {
        // Never throw into the publisher (that would crash the traced program).
        write(`trace: ${channel}: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    };
    dc.subscribe(channel, fn);
    subs.push([channel, fn]);
  }

  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      for (const [channel, fn] of subs) dc.unsubscribe(channel, fn);
      subs.length = 0;
      if (queue.length > 0) flush();
    },
    summary(): TraceSummary {
      if (queue.length > 0) flush();
      return { ...sum };
    },
  };
}

/** "1234 B on the wire: IP 20% UDP 8% ..." for the end of a trace. */
export function formatSummary(s: TraceSummary): string {
  const pct = (n: number) => (s.coapWireBytes > 0 ? `${((n / s.coapWireBytes) * 100).toFixed(0)}%` : '0%');
  return (
    `${s.coapMessages} CoAP messages, ${s.coapWireBytes} B on the wire: ` +
    `IP ${s.ip} (${pct(s.ip)}), UDP ${s.udp} (${pct(s.udp)}), DTLS ${s.dtls} (${pct(s.dtls)}), ` +
    `CoAP header/token/options ${s.coapOverhead} (${pct(s.coapOverhead)}), payload ${s.payload} (${pct(s.payload)})` +
    (s.dtlsRecords > 0 ? `; DTLS handshake: ${s.dtlsRecords} records, ${s.dtlsRecordBytes} B` : '') +
    (s.retransmissions > 0 ? `; ${s.retransmissions} retransmissions` : '') +
    (s.duplicates > 0 ? `; ${s.duplicates} duplicates` : '')
  );
}

export type { CoapSizes };
