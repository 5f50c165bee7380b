/**
 * The human-readable trace: one entry per step, aligned columns (time, layer
 * tag, direction, peer), details indented below, the bytes each layer adds.
 *
 * Output is buffered until the end of the current turn of the event loop
 * (see TurnBuffer) so that a CoAP message and the DTLS record that carries
 * it (published separately) print as one entry with one byte breakdown.
 */
import { Buffer } from 'node:buffer';
import { SignalCode } from '../codec/reliable.js';
import type { ChannelPayloads } from '../diagnostics.js';
import type { HandshakeInfo, RecordEvent } from '../dtls/diag.js';
import { ALERT_NAMES, EXTENSION_NAMES, GROUP_NAMES, HANDSHAKE_TYPE_NAMES } from '../dtls/names.js';
import { formatPeerKey } from '../transport/address.js';
import { escapeKeepingSgr } from '../util/escape.js';
import {
  type CoapSummary,
  type CoapUndecodable,
  contentFormatLabel,
  DTLS_RECORD_HEADER_BYTES,
  dtlsProtectionBytes,
  formatBreakdown,
  hexOf,
  ipHeaderBytes,
  summarizeCoap,
  UDP_HEADER_BYTES,
  type WireBreakdown,
  wireBreakdown,
} from './describe.js';
import { formatFrameLayout, summarizeFrame } from './frame.js';
import type { RendererContext, TraceRenderer } from './renderer.js';
import {
  type CoapEntry,
  type Dir,
  type FrameEntry,
  peerKeyOf,
  type RecordEntry,
  TurnBuffer,
  type TurnEntry,
} from './state.js';

type Style = 'dns' | 'dtls' | 'coap' | 'warn' | 'error' | 'info' | 'server';

/** A line for an event that is neither a CoAP message nor a record. */
interface LineView {
  tag: string;
  style: Style;
  dir?: Dir;
  peer?: string | undefined;
  text: string;
  details?: string[];
}

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

function familyOfKey(key: string): 'IPv4' | 'IPv6' {
  const i = key.lastIndexOf('%');
  return (i < 0 ? key : key.slice(0, i)).includes(':') ? 'IPv6' : 'IPv4';
}

/** How the handshake-done line names the peer's identity. */
const AUTH_LABEL = {
  psk: 'PSK identity',
  x509: 'peer certificate',
  rpk: 'peer raw public key',
} as const;

/** "12.3 ms", "1.50 s". */
export const ms = (n: number): string => (n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${n.toFixed(1)} ms`);

/** "no token", "token 1a2b". */
function tokenLabel(token: string): string {
  return token === '' ? 'no token' : `token ${token}`;
}

/** The first bytes of what did not decode, in hex. */
function hexLine(s: CoapUndecodable): string {
  return `0x${s.hex}${s.length > 32 ? '…' : ''}`;
}

/** A message's options, one line each, then its payload (a datagram's or a frame's). */
function messageDetails(
  s: Pick<CoapSummary, 'options' | 'payloadLength' | 'contentFormat' | 'payloadPreview'>,
): string[] {
  const details = s.options.map((o) => `${o.name}: ${o.value}`);
  if (s.payloadLength > 0)
    details.push(`payload ${s.payloadLength} B ${contentFormatLabel(s.contentFormat)}: ${s.payloadPreview}`);
  return details;
}

function hsName(h: HandshakeInfo): string {
  return HANDSHAKE_TYPE_NAMES[h.type] ?? h.typeName;
}

/** The connection IDs of a session (RFC 9146) and what they add to each record. */
function cidAgreement(cid: { send: string; receive: string }): string {
  const side = (hex: string, what: string) =>
    hex === '' ? `${what} no CID` : `${what} CID ${hex} (+${hex.length / 2} cid + 1 type per record)`;
  return `connection ID: ${side(cid.send, 'records we send carry')}; ${side(cid.receive, 'records we receive carry')}`;
}

/** ", connection ID X (+N cid + 1 type)" for a tls12_cid record (RFC 9146), else "". */
function cidNote(ev: RecordEvent): string {
  if (ev.cid === undefined) return '';
  return `, connection ID ${ev.cid || '(empty)'} (+${ev.cid.length / 2} cid + 1 type)`;
}

function recordName(ev: RecordEvent): string {
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

function extensionList(ext: number[]): string {
  return ext.map((e) => EXTENSION_NAMES[e] ?? String(e)).join(', ');
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** The text renderer (`--trace`, `--trace=text`). */
export function textRenderer(ctx: RendererContext): TraceRenderer {
  const { state, write, color, names } = ctx;
  const sum = state.summary;
  let peerWidth = 15;

  const paint = (style: keyof typeof ANSI, s: string): string => (color ? `${ANSI[style]}${s}${RESET}` : s);
  const peerName = (key: string): string => names[key] ?? formatPeerKey(key);

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

  const headline = (s: CoapSummary): string => {
    return `${paint('bold', `${s.type} ${s.codeText}`)}  MID ${s.messageId}  ${tokenLabel(s.token)}  (${s.sizes.total} B)`;
  };

  /**
   * An RFC 8323 frame (coap+tcp, coap+ws...): what is on the wire, no Type and no Message ID;
   * `e`: a CoAP message with the frame that carried it, or a signaling frame on its own.
   */
  const renderFrame = (e: CoapEntry | FrameEntry): string => {
    const ev = e.kind === 'frame' ? e.ev : e.frame!;
    const key = peerKeyOf(ev.peer) ?? '?';
    const s = summarizeFrame(ev.frame, ev.scheme);
    sum.frames++;
    sum.frameBytes += ev.frame.length;
    if (!s.ok) {
      return line(
        e.t,
        'CoAP',
        'error',
        e.dir,
        key,
        `undecodable ${ev.scheme} frame of ${s.length} B: ${s.error}`,
        [hexLine(s)],
      );
    }
    const layout = formatFrameLayout(s, ev.scheme, e.dir, ev.initiator);
    const tok = s.token === '' ? '' : `  token ${s.token}`;
    if (s.signal) {
      const opts = s.options.map((o) => (o.value === '' ? o.name : `${o.name}: ${o.value}`));
      // §5.3.1: without Max-Message-Size the peer may assume 1152.
      const none =
        s.code === SignalCode.CSM && opts.length === 0 ? ['no options (Max-Message-Size 1152, no BERT)'] : [];
      const text = `${paint('bold', s.codeText)}${tok}  ${[...opts, ...none].join(', ')}`.trimEnd();
      const details = s.payloadLength > 0 ? [`diagnostic: ${s.payloadPreview}`, layout] : [layout];
      return line(e.t, 'SIG', 'info', e.dir, key, `${text}  (${s.sizes.total} B)`, details);
    }
    const details = messageDetails(s);
    details.push(layout);
    const head = `${paint('bold', s.codeText)}  ${tokenLabel(s.token)}  (${s.sizes.total} B)`;
    return line(e.t, 'CoAP', 'coap', e.dir, key, head, details);
  };

  const renderCoap = (e: CoapEntry): string => {
    if (e.frame !== undefined) return renderFrame(e);
    // A message to or from an RFC 8323 peer that no frame carried: the message layer's view of
    // a Pong, or an ACK the transport does not send; nothing of it was on the wire.
    if (turn.reliableScheme(e.peer) !== undefined) return '';
    const key = peerKeyOf(e.peer) ?? '?';
    const s = summarizeCoap(e.data);
    const family = e.peer.family ?? familyOfKey(key);
    const dtls = e.record ? state.recordOverheadBytes(e.record) : 0;
    if (!s.ok) {
      const w = wireBreakdown(family, s.length, dtls);
      state.countWire(w.ip, w.udp, dtls, s.length, 0);
      return line(e.t, 'CoAP', 'error', e.dir, key, `undecodable ${s.length} B: ${s.error}`, [
        hexLine(s),
        formatBreakdown(w, family),
      ]);
    }
    const head = headline(s);
    const details = messageDetails(s);
    if (e.queued) {
      details.push('queued: it leaves in a DTLS ApplicationData record once the session is up');
      return line(e.t, 'CoAP', 'coap', e.dir, key, head, details);
    }
    const w = wireBreakdown(family, s.sizes.total, dtls, s.sizes);
    state.countWire(w.ip, w.udp, dtls, s.sizes.total - s.sizes.payload, s.sizes.payload);
    if (e.record) {
      const suite = state.suiteOf(e.record.role, e.record.peer);
      details.push(
        `in DTLS ApplicationData record epoch ${e.record.epoch} seq ${e.record.seq}` +
          (suite ? ` (${suite})` : '') +
          cidNote(e.record),
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

  const recordDetails = (ev: RecordEvent): string[] => {
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
      if (h.offeredSuites) d.push(`  offered suites: ${h.offeredSuites.join(', ')}`);
      if (h.chosenSuite) d.push(`  chosen suite: ${h.chosenSuite}`);
      if (h.extensions && h.extensions.length > 0) d.push(`  extensions: ${extensionList(h.extensions)}`);
      if (h.identity !== undefined) d.push(`  PSK identity: ${JSON.stringify(h.identity)}`);
      if (h.identityHint) d.push(`  PSK identity hint: ${JSON.stringify(h.identityHint)}`);
      if (h.group !== undefined) d.push(`  ECDHE group: ${GROUP_NAMES[h.group] ?? h.group}`);
      if (h.certificates !== undefined)
        d.push(
          ...(h.certificates.length === 0
            ? ['  certificate: (none)']
            : h.certificates.map((c) => `  certificate: ${c}`)),
        );
    }
    if (ev.alert) d.push(`level ${ev.alert.level === 2 ? 'fatal' : 'warning'}`);
    return d;
  };

  /** Renders consecutive handshake records of one direction as a flight. */
  const renderFlight = (group: RecordEntry[]): string => {
    const first = group[0]!;
    const ev0 = first.ev;
    const family = familyOfKey(ev0.peer);
    let bytes = 0;
    for (const g of group) bytes += state.recordWireBytes(g.ev);
    sum.dtlsRecords += group.length;
    sum.dtlsRecordBytes += bytes;
    const recordNames = group.map((g) => recordName(g.ev)).join(', ');
    // Record events carry no version: every record is shown as DTLS 1.2.
    const version = 'DTLS 1.2';
    const sender = first.dir === 'out' ? ev0.role : ev0.role === 'client' ? 'server' : 'client';
    let text = `${paint('bold', `${sender} flight`)}: ${recordNames}  (${group.length} record${group.length > 1 ? 's' : ''}, ${bytes} B + ${family} ${ipHeaderBytes(family)} + UDP ${UDP_HEADER_BYTES} per datagram)`;
    if (group.some((g) => g.ev.type === 21 && g.ev.alert?.level === 2)) text = paint('error', text);
    let s = line(first.t, 'DTLS', 'dtls', first.dir, ev0.peer, text);
    for (const g of group) {
      const ev = g.ev;
      const prot = state.protectionBytes(ev.role, ev.peer, ev.epoch);
      const cid = ev.cid === undefined ? '' : ` + ${ev.cid.length / 2} cid + 1 type`;
      const layout = `${DTLS_RECORD_HEADER_BYTES} hdr${cid} + ${ev.length}${prot > 0 ? ` + ${prot} nonce/tag` : ''} = ${state.recordWireBytes(ev)} B`;
      const outer = ev.cid === undefined ? '' : `tls12_cid(25) cid ${ev.cid || '(empty)'} carrying `;
      const head = `${version} ${outer}${ev.typeName ?? ev.type}(${ev.type}) epoch ${ev.epoch} seq ${ev.seq}: ${layout}`;
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
    const overhead = state.recordOverheadBytes(ev);
    const family = familyOfKey(ev.peer);
    const c = e.carries === undefined ? undefined : summarizeCoap(e.carries.data);
    const s = c?.ok ? c : undefined;
    const where = `epoch ${ev.epoch} seq ${ev.seq}${cidNote(ev)}`;
    let text = `${recordName(ev)} ${where}`;
    let w: WireBreakdown;
    if (s === undefined) w = wireBreakdown(family, ev.length, overhead);
    else {
      text = `ApplicationData ${where} carrying the queued ${s.type} ${s.codeText} MID ${s.messageId}`;
      w = wireBreakdown(family, s.sizes.total, overhead, s.sizes);
      state.countWire(w.ip, w.udp, w.dtls, s.sizes.total - s.sizes.payload, s.sizes.payload);
    }
    return line(e.t, 'DTLS', 'dtls', e.dir, ev.peer, text, [formatBreakdown(w, family)]);
  };

  const renderTurn = (items: TurnEntry<LineView>[]): void => {
    let text = '';
    for (let i = 0; i < items.length; i++) {
      const e = items[i]!;
      try {
        let s: string;
        if (e.kind === 'coap') s = renderCoap(e);
        else if (e.kind === 'frame') s = renderFrame(e);
        else if (e.kind === 'note') {
          const v = e.view;
          s = line(e.t, v.tag, v.style, v.dir, v.peer, v.text, v.details);
        } else if (e.ev.type === 23) s = renderRecord(e);
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
        text += `trace: cannot render an event: ${errorText(err)}\n`;
      }
    }
    write(text);
  };

  const turn = new TurnBuffer<LineView>(renderTurn, ctx.mute);
  const note = (t: number, view: LineView, dtlsPeer?: string): void => turn.note(t, view, dtlsPeer);

  const handlers: { [K in keyof ChannelPayloads]: (ev: ChannelPayloads[K], t: number) => void } = {
    'coapkit:dns:resolved': (ev, t) => {
      sum.dnsLookups++;
      const a = ev.addresses.filter((x) => x.family === 4).map((x) => x.address);
      const aaaa = ev.addresses.filter((x) => x.family === 6).map((x) => x.address);
      note(t, {
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
    'coapkit:dns:failed': (ev, t) => {
      sum.dnsLookups++;
      note(t, {
        tag: 'DNS',
        style: 'error',
        text: `${ev.host} failed after ${ms(ev.durationMs)}: ${errorText(ev.error)}`,
      });
    },
    'coapkit:dtls:handshake:start': (ev, t) => {
      note(
        t,
        {
          tag: 'DTLS',
          style: 'dtls',
          dir: ev.role === 'client' ? 'out' : 'in',
          peer: ev.peer,
          text: `handshake starts (${ev.role === 'client' ? 'we are the client' : 'we are the server'})`,
        },
        ev.peer,
      );
    },
    'coapkit:dtls:handshake:done': (ev, t) => {
      const suite = state.handshakeSuite(ev);
      note(
        t,
        {
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
            ...(ev.cid === undefined ? [] : [cidAgreement(ev.cid)]),
            `extended master secret: ${ev.extendedMasterSecret ? 'yes' : 'no'}; ${AUTH_LABEL[ev.authMode ?? 'psk']}: ${JSON.stringify(ev.identity ?? '')}`,
          ],
        },
        ev.peer,
      );
    },
    'coapkit:dtls:handshake:error': (ev, t) => {
      note(
        t,
        {
          tag: 'DTLS',
          style: 'error',
          peer: ev.peer,
          text: `handshake failed (${ev.role}): ${errorText(ev.error)}`,
        },
        ev.peer,
      );
    },
    'coapkit:dtls:record:sent': (ev, t) => turn.record(ev, 'out', t),
    'coapkit:dtls:record:received': (ev, t) => turn.record(ev, 'in', t),
    'coapkit:frame:sent': (ev, t) => turn.frame(ev, 'out', t),
    'coapkit:frame:received': (ev, t) => turn.frame(ev, 'in', t),
    'coapkit:message:sent': (ev, t) => turn.sent(ev, t),
    'coapkit:message:retransmitted': (ev, t) => turn.retransmitted(ev, t),
    'coapkit:message:received': (ev, t) => turn.received(ev, t),
    'coapkit:message:duplicate': (ev, t) => {
      sum.duplicates++;
      const s = summarizeCoap(ev.data);
      note(t, {
        tag: 'DUP',
        style: 'warn',
        dir: 'in',
        peer: peerKeyOf(ev.peer),
        text: `duplicate ${s.ok ? `${s.type} ${s.codeText} ` : ''}MID ${ev.messageId}: ${
          ev.replayed ? 'answered again with the stored reply' : 'ignored (already handled or in progress)'
        }`,
      });
    },
    'coapkit:message:rejected': (ev, t) => {
      const s = summarizeCoap(ev.data);
      const what = s.ok ? `${s.type} ${s.codeText} MID ${s.messageId}` : `${ev.data.length} B datagram`;
      note(t, {
        tag: ev.reset ? 'RST' : 'IGN',
        style: ev.reason === 'CoAP ping' ? 'info' : 'warn',
        dir: ev.reset ? 'out' : 'in',
        peer: peerKeyOf(ev.peer),
        text: `${ev.reset ? 'reset' : 'ignored'} ${what}: ${ev.reason}`,
      });
    },
    'coapkit:message:timeout': (ev, t) => {
      note(t, {
        tag: 'TIME',
        style: 'error',
        dir: 'out',
        peer: peerKeyOf(ev.peer),
        text: `no ACK for MID ${ev.messageId} after ${ev.transmissions} transmissions: giving up`,
      });
    },
    'coapkit:exchange:matched': (ev, t) => {
      // RFC 8323: no ACK and no Message ID to speak of, only the token.
      const scheme = turn.reliableScheme(ev.peer);
      let how =
        scheme !== undefined
          ? `response over ${scheme}`
          : ev.piggybacked
            ? `piggybacked on the ACK of MID ${ev.requestMessageId ?? ev.messageId}`
            : `separate response (MID ${ev.messageId}, request MID ${ev.requestMessageId ?? '?'})`;
      // An Observe option in the message just received makes it a registration or notification.
      const obs = turn.observeValue(ev.peer, ev.messageId);
      if (obs !== undefined) {
        how =
          scheme !== undefined
            ? `Observe ${obs}, ${how}`
            : ev.piggybacked
              ? `observation registered (Observe ${obs}), ${how}`
              : `notification (Observe ${obs}), ${how}`;
      }
      const s = summarizeCoap(Buffer.from([0x40, ev.code, 0, 0]));
      note(t, {
        tag: 'EXCH',
        style: 'info',
        dir: 'in',
        peer: peerKeyOf(ev.peer),
        text: `${s.ok ? s.codeText : ev.code} matched token ${hexOf(ev.token) || '(empty)'}: ${how}, RTT ${ms(ev.rttMs)}`,
      });
    },
    'coapkit:server:request': (ev, t) => {
      const who = ev.peer.identity !== undefined ? ` from identity ${JSON.stringify(ev.peer.identity)}` : '';
      note(t, {
        tag: 'SERV',
        style: 'server',
        dir: 'in',
        peer: peerKeyOf(ev.peer),
        text: `handling ${ev.method} ${ev.path}${who} (token ${hexOf(ev.token) || '(empty)'})`,
      });
    },
    'coapkit:oscore:message': (ev, t) => {
      const s = summarizeCoap(Buffer.from([0x40, ev.code, 0, 0]));
      const what = `${s.ok ? s.codeText : ev.code}${ev.path ? ` ${ev.path}` : ''}`;
      note(t, {
        tag: 'OSCO',
        style: 'info',
        dir: ev.direction,
        peer: peerKeyOf(ev.peer),
        text: `${ev.direction === 'out' ? 'protected' : 'decrypted'} inner ${what}${ev.payloadLength > 0 ? ` (${ev.payloadLength} B payload)` : ''}, kid ${ev.kid ? `0x${ev.kid}` : '(empty)'}${ev.partialIv ? `, Partial IV 0x${ev.partialIv}` : ''}`,
      });
    },
    'coapkit:server:response': (ev, t) => {
      const s = ev.code === undefined ? undefined : summarizeCoap(Buffer.from([0x40, ev.code, 0, 0]));
      note(t, {
        tag: 'SERV',
        style: 'server',
        dir: 'out',
        peer: peerKeyOf(ev.peer),
        text: `handler answered ${s?.ok ? s.codeText : 'nothing'} in ${ms(ev.durationMs)}`,
      });
    },
  };

  return {
    event(channel, payload, t) {
      handlers[channel](payload, t);
    },
    flush: () => turn.flush(),
    get pending() {
      return turn.pending;
    },
  };
}
