/**
 * dissect(): the offline "life of a CoAP message". Decodes a pcap/pcapng
 * capture layer by layer (link, IP, UDP, DNS, DTLS, CoAP) and groups the CoAP
 * messages into exchanges. Pure: takes bytes, returns a plain JSON-able object.
 */
import { type DnsMessage, decodeDns, summarizeDns } from '../capture/dns.js';
import { decodeIp, decodeLinkLayer, decodeUdp, type IpLayer, LINK_TYPE_NAMES } from '../capture/network.js';
import { type CaptureFile, parseCapture, partialCapture } from '../capture/reader.js';
import {
  type Delivered,
  decodeTcp,
  type SegmentEvent,
  TCP_RST,
  type TcpDirection,
  TcpReassembler,
  tcpFlagNames,
} from '../capture/tcp.js';
import { decodeMessage } from '../codec/message.js';
import { type CaptureFormatError, CoapError } from '../errors.js';
import type { OscoreContext } from '../oscore/context.js';
import {
  type BlockTransfer,
  type CoapExchange,
  type CoapMessageInfo,
  describeMessage,
  groupExchanges,
} from './coap.js';
import { coapByContent, dtlsByContent, NOT_COAP_BY_CONTENT } from './detect.js';
import { type DtlsRecord, type DtlsSessionSummary, DtlsTracker, looksLikeDtls, parseKeylog } from './dtls.js';
import { coapExpert, type ExpertInfo, emptyWithContent } from './expert.js';
import { dissectOscore } from './oscore.js';
import { describeTcpFrame, type StreamFrame, type StreamNote, TcpCoapReader } from './tcp.js';

export interface DissectOptions {
  /** DTLS pre-shared key (raw bytes). */
  psk?: Uint8Array;
  /** Contents of an NSS key log file (CLIENT_RANDOM lines). */
  keylog?: string;
  /**
   * UDP ports always decoded as CoAP / DTLS, whatever the content (5683 and 5684
   * always are). Other ports are decoded when their content looks like DTLS or CoAP.
   * TCP streams on 5683 and on these ports are decoded as CoAP over TCP (RFC 8323).
   */
  ports?: number[];
  /** OSCORE security contexts (either side's) to decrypt protected messages with. */
  oscore?: readonly OscoreContext[];
}

/** Bytes each layer adds to a frame. */
export interface LayerBytes {
  frame: number;
  link?: number;
  ip?: number;
  udp?: number;
  /** TCP header, options included. */
  tcp?: number;
  /** TCP payload: stream bytes (CoAP frames are counted in the message, not per segment). */
  tcpData?: number;
  /** DTLS record headers (13 bytes each). */
  dtlsHeaders?: number;
  /** DTLS protection: explicit nonce + tag (+ padding). */
  dtlsProtection?: number;
  /** DTLS handshake / CCS / alert content. */
  dtlsContent?: number;
  dns?: number;
  coapHeader?: number;
  coapPayload?: number;
  /** Bytes not decoded further (other protocols, encrypted data without key). */
  other?: number;
}

export interface FrameInfo {
  number: number;
  /** Seconds since the first frame. */
  relTime: number;
  /** ISO 8601 with nanoseconds. */
  time: string;
  capturedLength: number;
  originalLength: number;
  link?: { type: number; name: string; headerLength: number; src?: string; dst?: string; vlans?: number[] };
  ip?: Omit<IpLayer, 'truncated' | 'payload'> & {
    /** Set on the frame that completed an IP datagram: the frames of its fragments. */
    reassembledFrom?: number[];
  };
  udp?: { srcPort: number; dstPort: number; length: number };
  /** A TCP segment; `stream` is set when its connection is decoded as CoAP over TCP. */
  tcp?: TcpSegmentInfo;
  protocol: 'dns' | 'dtls' | 'coap' | 'tcp' | 'udp' | 'ip' | 'link';
  dns?: DnsMessage;
  dtls?: { session: number; fromClient: boolean; records: DtlsRecord[]; error?: string };
  /** Indices into result.coap.messages. */
  coap?: number[];
  /**
   * How the frame was recognised as DTLS / CoAP: 'port' (5683, 5684 or a --port),
   * 'content' (its bytes look like it), 'flow' (an earlier datagram between the same
   * two endpoints was recognised by content).
   */
  detectedBy?: 'port' | 'content' | 'flow';
  /** Protocol violations and oddities (Wireshark's expert info), each with its RFC section. */
  expert: ExpertInfo[];
  bytes: LayerBytes;
  summary: string;
  errors: string[];
}

/** A TCP segment of the capture. */
export interface TcpSegmentInfo {
  /** Source port. */
  srcPort: number;
  /** Destination port. */
  dstPort: number;
  /** Sequence number (absolute, as on the wire). */
  seq: number;
  /** Acknowledgment number. */
  ack: number;
  /** "SYN", "ACK", ... */
  flags: string[];
  /** TCP header bytes, options included. */
  headerLength: number;
  /** Payload bytes the IP header announces (more than captured when the snap length cut it). */
  payloadLength: number;
  /** Index in result.tcp.streams (1-based) of the direction, when decoded as CoAP over TCP. */
  stream?: number;
  /** What the reassembly made of the segment: retransmission, out of order, gap, resynchronised... */
  notes?: string[];
}

/** One direction of a TCP connection decoded as CoAP over TCP (RFC 8323). */
export interface TcpStreamInfo {
  /** 1-based, in order of first appearance (FrameInfo.tcp.stream, CoapMessageInfo.tcp.stream). */
  id: number;
  /** Sender endpoint. */
  src: string;
  /** Receiver endpoint. */
  dst: string;
  /** In-order stream bytes delivered. */
  bytes: number;
  /** RFC 8323 frames decoded. */
  coapFrames: number;
  /** False when the capture starts after the connection's SYN (the reader resynchronised). */
  sawSyn: boolean;
  /** FIN or RST seen. */
  closed: boolean;
  /** Segments wholly or partly seen before. */
  retransmissions: number;
  /** Segments held until a hole before them was filled. */
  outOfOrder: number;
  /** Holes never filled: reported, the frames across them not decoded. */
  gaps: number;
  /** Bytes missing in the gaps. */
  gapBytes: number;
  /** The capture ends inside a frame. */
  incompleteFrame?: {
    /** Bytes of it seen. */
    have: number;
    /** Its size as announced by its header, when the header was complete. */
    size?: number;
  };
}

export interface DtlsFlight {
  /** Handshake flight number (1, 2, ...); 0 for post-handshake alert datagrams. */
  number: number;
  /** 'handshake': handshake / ChangeCipherSpec records; 'alert': alerts and other non-application records. */
  kind: 'handshake' | 'alert';
  fromClient: boolean;
  frames: number[];
}

export interface DtlsSessionInfo extends DtlsSessionSummary {
  flights: DtlsFlight[];
  applicationDataRecords: number;
}

export interface DissectResult {
  capture: {
    format: 'pcap' | 'pcapng';
    byteOrder: string;
    precision?: string;
    linkTypes: { type: number; name: string }[];
    frameCount: number;
    start?: string;
  };
  frames: FrameInfo[];
  /** Frame numbers of DNS messages, in order. */
  dns: number[];
  dtls: DtlsSessionInfo[];
  coap: { messages: CoapMessageInfo[]; exchanges: CoapExchange[]; blockTransfers: BlockTransfer[] };
  /** CoAP over TCP stream directions (present when the capture has any). */
  tcp?: {
    /** Each direction of each connection on a CoAP port (5683 or a --port). */
    streams: TcpStreamInfo[];
  };
  /** Set when the capture is truncated or corrupt: everything before the fault is still in the result. */
  error?: { code: string; message: string };
  warnings: string[];
}

const DNS_PORTS = new Set([53, 5353]);

function isoTime(seconds: number, nanos: number): string {
  const d = new Date(seconds * 1000);
  if (Number.isNaN(d.getTime())) return `${seconds}.${String(nanos).padStart(9, '0')}`;
  return d.toISOString().replace(/\.\d{3}Z$/, `.${String(nanos).padStart(9, '0')}Z`);
}

const msg = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export function dissect(bytes: Uint8Array, options: DissectOptions = {}): DissectResult {
  let capture: CaptureFile;
  let error: DissectResult['error'];
  try {
    capture = parseCapture(bytes);
  } catch (e) {
    const partial = partialCapture(e);
    if (partial === undefined) throw e;
    capture = partial;
    error = { code: (e as CaptureFormatError).code, message: msg(e) };
  }
  const ports = new Set([5683, 5684, ...(options.ports ?? [])]);
  const tracker = new DtlsTracker({
    ...(options.psk !== undefined ? { psk: options.psk } : {}),
    ...(options.keylog !== undefined ? { keylog: parseKeylog(options.keylog) } : {}),
  });
  const result: DissectResult = {
    capture: {
      format: capture.format,
      byteOrder: capture.byteOrder,
      linkTypes: [...new Set(capture.interfaces.map((i) => i.linkType))].map((t) => ({
        type: t,
        name: LINK_TYPE_NAMES[t] ?? `link type ${t}`,
      })),
      frameCount: capture.frames.length,
    },
    frames: [],
    dns: [],
    dtls: [],
    coap: { messages: [], exchanges: [], blockTransfers: [] },
    warnings: [],
  };
  if (capture.precision) result.capture.precision = capture.precision;
  if (error) result.error = error;
  const first = capture.frames[0];
  if (first) result.capture.start = isoTime(first.seconds, first.nanos);
  const flights = new Map<number, DtlsFlight[]>();
  const fragments = new Map<string, FragmentState>();
  const appRecords = new Map<number, number>();
  /** Endpoint pairs recognised as plain CoAP by content. */
  const coapFlows = new Set<string>();
  const tcpPorts = new Set([5683, ...(options.ports ?? [])]);
  const tcp = new TcpCoapFlows(result);

  for (const f of capture.frames) {
    const relTime = first ? f.seconds - first.seconds + (f.nanos - first.nanos) / 1e9 : 0;
    const fi: FrameInfo = {
      number: f.number,
      relTime: Math.round(relTime * 1e9) / 1e9,
      time: isoTime(f.seconds, f.nanos),
      capturedLength: f.data.length,
      originalLength: f.originalLength,
      protocol: 'link',
      bytes: { frame: f.data.length },
      summary: '',
      errors: [],
      expert: [],
    };
    result.frames.push(fi);
    if (f.data.length < f.originalLength)
      fi.errors.push(`frame truncated by snap length (${f.data.length} of ${f.originalLength} bytes)`);
    try {
      const link = decodeLinkLayer(f.linkType, f.data);
      fi.link = { type: link.linkType, name: link.name, headerLength: link.headerLength };
      if (link.src) fi.link.src = link.src;
      if (link.dst) fi.link.dst = link.dst;
      if (link.vlans) fi.link.vlans = link.vlans;
      fi.bytes.link = link.headerLength;
      if (link.etherType !== 0x0800 && link.etherType !== 0x86dd) {
        fi.summary = `${link.name}, ethertype 0x${link.etherType.toString(16).padStart(4, '0')} (not IP)`;
        fi.bytes.other = link.payload.length;
        continue;
      }
      const ip = decodeIp(link.payload);
      fi.protocol = 'ip';
      fi.ip = {
        version: ip.version,
        src: ip.src,
        dst: ip.dst,
        protocol: ip.protocol,
        headerLength: ip.headerLength,
        totalLength: ip.totalLength,
        ttl: ip.ttl,
      };
      if (ip.optionsLength) fi.ip.optionsLength = ip.optionsLength;
      if (ip.extensionHeaders) fi.ip.extensionHeaders = ip.extensionHeaders;
      fi.bytes.ip = ip.headerLength;
      if (ip.truncated)
        fi.errors.push(`IP packet truncated (${link.payload.length} of ${ip.totalLength} bytes captured)`);
      let ipPayload = ip.payload;
      if (ip.fragment) {
        fi.ip.fragment = ip.fragment;
        const key = `${ip.version}|${ip.src}|${ip.dst}|${ip.protocol}|${ip.fragment.id}`;
        const whole = reassemble(fragments, key, ip.fragment, ip.payload, f.number);
        if (whole === undefined) {
          fi.summary = `IPv${ip.version} fragment id ${ip.fragment.id} offset ${ip.fragment.offset}${ip.fragment.moreFragments ? ' (more)' : ''} ${ip.src} → ${ip.dst}`;
          fi.bytes.other = ip.payload.length;
          continue;
        }
        fi.ip.reassembledFrom = whole.frames;
        ipPayload = whole.data;
      }
      if (ip.protocol === 6) {
        tcp.segment(fi, ip, ipPayload, tcpPorts);
        continue;
      }
      if (ip.protocol !== 17) {
        fi.summary = `IPv${ip.version} ${ip.src} → ${ip.dst} protocol ${ip.protocol} (not UDP or TCP)`;
        fi.bytes.other = ipPayload.length;
        continue;
      }
      const udp = decodeUdp(ipPayload);
      fi.protocol = 'udp';
      fi.udp = { srcPort: udp.srcPort, dstPort: udp.dstPort, length: udp.length };
      fi.bytes.udp = 8;
      if (udp.truncated) fi.errors.push('UDP datagram truncated');
      const src = endpoint(ip.src, ip.version, udp.srcPort);
      const dst = endpoint(ip.dst, ip.version, udp.dstPort);
      fi.summary = `UDP ${src} → ${dst} ${udp.payload.length} bytes`;
      const p = udp.payload;
      if (DNS_PORTS.has(udp.srcPort) || DNS_PORTS.has(udp.dstPort)) {
        fi.protocol = 'dns';
        fi.bytes.dns = p.length;
        const dns = decodeDns(p);
        fi.dns = dns;
        fi.summary = `DNS ${summarizeDns(dns)}`;
        result.dns.push(fi.number);
        continue;
      }
      let isDtls: boolean;
      if (ports.has(udp.srcPort) || ports.has(udp.dstPort)) {
        fi.detectedBy = 'port';
        isDtls = looksLikeDtls(p);
      } else {
        // Any other port: by content, as tshark's heuristics do. A flow recognised once
        // stays recognised, so that its malformed datagrams are reported, not skipped.
        const flow = src < dst ? `${src}|${dst}` : `${dst}|${src}`;
        const truncated = udp.truncated || f.data.length < f.originalLength;
        if (dtlsByContent(p, truncated)) {
          isDtls = true;
          fi.detectedBy = 'content';
        } else if (tracker.hasFlow(src, dst) && looksLikeDtls(p)) {
          isDtls = true;
          fi.detectedBy = 'flow';
        } else if (
          !NOT_COAP_BY_CONTENT.has(udp.srcPort) &&
          !NOT_COAP_BY_CONTENT.has(udp.dstPort) &&
          coapByContent(p)
        ) {
          isDtls = false;
          fi.detectedBy = 'content';
          coapFlows.add(flow);
        } else if (coapFlows.has(flow)) {
          isDtls = false;
          fi.detectedBy = 'flow';
        } else {
          fi.bytes.other = p.length;
          continue;
        }
      }
      if (isDtls) {
        fi.protocol = 'dtls';
        const r = tracker.processDatagram(src, dst, p, ports);
        fi.dtls = { session: r.session.summary.id, fromClient: r.fromClient, records: r.records };
        if (r.error) {
          fi.dtls.error = r.error;
          fi.errors.push(r.error);
        }
        let headers = 0;
        let protection = 0;
        let content = 0;
        let undecrypted = 0;
        for (const rec of r.records) {
          headers += rec.headerLength;
          if (rec.encrypted && !rec.decrypted) undecrypted += rec.length;
          else if (rec.contentType !== 23) {
            protection += rec.protectionOverhead ?? 0;
            content += rec.length - (rec.protectionOverhead ?? 0);
          } else protection += rec.protectionOverhead ?? 0;
        }
        fi.bytes.dtlsHeaders = headers;
        fi.bytes.dtlsProtection = protection;
        if (content) fi.bytes.dtlsContent = content;
        if (undecrypted) fi.bytes.other = undecrypted;
        const nonApp = r.records.filter((x) => x.contentType !== 23);
        if (nonApp.length > 0) {
          const list = flights.get(r.session.summary.id) ?? [];
          flights.set(r.session.summary.id, list);
          const kind = nonApp.some((x) => x.contentType === 20 || x.contentType === 22)
            ? 'handshake'
            : 'alert';
          const last = list[list.length - 1];
          if (last && last.fromClient === r.fromClient && last.kind === kind) last.frames.push(fi.number);
          else {
            const number = kind === 'handshake' ? list.filter((x) => x.kind === 'handshake').length + 1 : 0;
            list.push({ number, kind, fromClient: r.fromClient, frames: [fi.number] });
          }
        }
        const apps = r.records.filter((x) => x.contentType === 23).length;
        appRecords.set(r.session.summary.id, (appRecords.get(r.session.summary.id) ?? 0) + apps);
        fi.summary = `DTLS ${r.records.map(recordLabel).join(', ')}`;
        for (const a of r.applicationData) {
          fi.protocol = 'coap';
          addCoap(result, fi, a.plaintext, src, dst, 'dtls', r.session.summary.id);
        }
        continue;
      }
      addCoap(result, fi, p, src, dst, 'udp');
    } catch (e) {
      if (e instanceof CoapError) {
        fi.errors.push(msg(e));
        if (!fi.summary) fi.summary = `malformed: ${msg(e)}`;
      } else {
        // A decoder bug must not lose the rest of the capture: report it and go on.
        fi.errors.push(`internal decoder error: ${msg(e)}`);
        result.warnings.push(`frame ${fi.number}: internal decoder error: ${msg(e)}`);
      }
    }
  }
  tcp.finish();
  const grouped = groupExchanges(result.coap.messages);
  result.coap.exchanges = grouped.exchanges;
  result.coap.blockTransfers = grouped.blockTransfers;
  dissectOscore(result.coap.messages, grouped.exchanges, options.oscore ?? []);
  for (const e of coapExpert(result.coap.messages, grouped.exchanges, grouped.blockTransfers)) {
    const m = result.coap.messages[e.coapMessage ?? -1];
    result.frames[(m?.frame ?? 0) - 1]?.expert.push(e);
  }
  for (const m of result.coap.messages) {
    const fi = result.frames[m.frame - 1];
    if (fi && fi.coap?.[0] === m.index) fi.summary = `CoAP ${m.summary}`;
  }
  for (const s of tracker.sessions) {
    result.dtls.push({
      ...s.summary,
      flights: flights.get(s.summary.id) ?? [],
      applicationDataRecords: appRecords.get(s.summary.id) ?? 0,
    });
    if (s.summary.decryption.status !== 'decrypted' && s.summary.decryption.status !== 'nothing-encrypted') {
      result.warnings.push(
        `DTLS session ${s.summary.id} (${s.summary.client} → ${s.summary.server}): ${s.summary.decryption.detail}`,
      );
    }
  }
  return result;
}

function addCoap(
  result: DissectResult,
  fi: FrameInfo,
  bytes: Uint8Array,
  src: string,
  dst: string,
  transport: 'udp' | 'dtls',
  dtlsSession?: number,
): void {
  try {
    const m = decodeMessage(bytes);
    const info = describeMessage(m, bytes.length, {
      index: result.coap.messages.length,
      frame: fi.number,
      relTime: fi.relTime,
      src,
      dst,
      transport,
      ...(dtlsSession !== undefined ? { dtlsSession } : {}),
    });
    result.coap.messages.push(info);
    fi.protocol = 'coap';
    fi.coap = [...(fi.coap ?? []), info.index];
    fi.bytes.coapHeader = (fi.bytes.coapHeader ?? 0) + info.headerLength;
    fi.bytes.coapPayload = (fi.bytes.coapPayload ?? 0) + info.payload.length;
  } catch (e) {
    if (!(e instanceof CoapError)) throw e;
    fi.errors.push(`not a valid CoAP message: ${msg(e)}`);
    const x = emptyWithContent(bytes);
    if (x) fi.expert.push(x);
    fi.bytes.other = (fi.bytes.other ?? 0) + bytes.length;
  }
}

/** The CoAP-over-TCP side of dissect(): reassembles TCP streams and reads RFC 8323 frames. */
class TcpCoapFlows {
  private readonly reassembler = new TcpReassembler();
  private readonly readers = new Map<number, TcpCoapReader>();

  constructor(private readonly result: DissectResult) {}

  segment(fi: FrameInfo, ip: IpLayer, ipPayload: Uint8Array, ports: ReadonlySet<number>): void {
    const seg = decodeTcp(ipPayload);
    // What the IP header announces (the capture may hold less); reassembled datagrams are whole.
    const announced = Math.max(
      seg.payload.length,
      fi.ip?.reassembledFrom
        ? ipPayload.length - seg.headerLength
        : ip.totalLength - ip.headerLength - seg.headerLength,
    );
    fi.protocol = 'tcp';
    fi.tcp = {
      srcPort: seg.srcPort,
      dstPort: seg.dstPort,
      seq: seg.seq,
      ack: seg.ack,
      flags: tcpFlagNames(seg.flags),
      headerLength: seg.headerLength,
      payloadLength: announced,
    };
    fi.bytes.tcp = seg.headerLength;
    const coapPort = ports.has(seg.srcPort) || ports.has(seg.dstPort);
    if (seg.payload.length > 0) fi.bytes[coapPort ? 'tcpData' : 'other'] = seg.payload.length;
    const src = endpoint(ip.src, ip.version, seg.srcPort);
    const dst = endpoint(ip.dst, ip.version, seg.dstPort);
    fi.summary = `TCP ${src} → ${dst} [${fi.tcp.flags.join(', ')}] seq ${seg.seq} len ${announced}`;
    if (!coapPort) return;
    const dir = this.reassembler.direction(src, dst);
    if (dir === undefined) {
      if (this.reassembler.refused === 1)
        this.result.warnings.push(
          `too many TCP streams: from frame ${fi.number} on, new ones are not reassembled`,
        );
      return;
    }
    fi.tcp.stream = dir.id;
    if (seg.flags & TCP_RST) {
      dir.abort();
      this.reassembler.directions.get(`${dst}|${src}`)?.abort();
      return;
    }
    const r = dir.push({ seq: seg.seq, flags: seg.flags, payload: seg.payload, announced }, fi.number);
    this.note(fi, r.events);
    this.read(dir, r.delivered);
  }

  /** End of capture: open holes become gaps, incomplete frames are reported. */
  finish(): void {
    const streams: TcpStreamInfo[] = [];
    const last = this.result.frames[this.result.frames.length - 1];
    for (const dir of this.reassembler.directions.values()) {
      const r = dir.flush();
      if (last) this.note(last, r.events, dir.id);
      this.read(dir, r.delivered);
      const reader = this.readers.get(dir.id);
      const info: TcpStreamInfo = {
        id: dir.id,
        src: dir.src,
        dst: dir.dst,
        bytes: dir.bytes,
        coapFrames: reader?.frames ?? 0,
        sawSyn: dir.sawSyn,
        closed: dir.finished,
        retransmissions: dir.retransmissions,
        outOfOrder: dir.outOfOrder,
        gaps: dir.gaps,
        gapBytes: dir.gapBytes,
      };
      if (reader && reader.pendingBytes > 0) {
        const size = reader.pendingFrameSize();
        info.incompleteFrame = { have: reader.pendingBytes, ...(size !== undefined ? { size } : {}) };
        this.result.warnings.push(
          `TCP stream ${dir.id} (${dir.src} → ${dir.dst}): the capture ends inside an RFC 8323 frame (${reader.pendingBytes}${size !== undefined ? ` of ${size}` : ''} byte(s) seen)`,
        );
      }
      if (dir.gaps > 0)
        this.result.warnings.push(
          `TCP stream ${dir.id} (${dir.src} → ${dir.dst}): ${dir.gapBytes} byte(s) missing in ${dir.gaps} gap(s); frames across a gap are not decoded`,
        );
      streams.push(info);
    }
    if (streams.length > 0) this.result.tcp = { streams };
  }

  private note(fi: FrameInfo, events: SegmentEvent[], stream?: number): void {
    for (const e of events) {
      let text: string | undefined;
      let problem = false;
      switch (e.kind) {
        case 'retransmission':
          text = `retransmission: ${e.bytes} byte(s) already seen`;
          break;
        case 'overlap':
          text = `overlaps ${e.bytes} byte(s) already seen (only the new bytes are used)`;
          break;
        case 'out-of-order':
          text = `out of order: ${e.bytes} byte(s) held until the missing bytes before them arrive`;
          break;
        case 'midstream':
          text = 'first segment of a connection that started before the capture: looking for a frame start';
          break;
        case 'after-close':
          text = `${e.bytes} byte(s) after the stream's FIN or RST: ignored`;
          problem = true;
          break;
        case 'gap':
          text = `gap: ${e.bytes} byte(s) of the stream missing at seq ${e.seq} (${e.reason})`;
          problem = true;
          break;
        default:
          break;
      }
      if (text === undefined) continue;
      const prefix = stream !== undefined ? `TCP stream ${stream}: ` : '';
      addTcpNote(fi, prefix + text);
      if (problem) fi.errors.push(prefix + text);
    }
  }

  private read(dir: TcpDirection, delivered: Delivered[]): void {
    let reader = this.readers.get(dir.id);
    for (const chunk of delivered) {
      if (reader === undefined) {
        reader = new TcpCoapReader();
        this.readers.set(dir.id, reader);
      }
      const r = reader.push(chunk);
      for (const n of r.notes) this.streamNote(dir.id, n);
      for (const f of r.frames) this.frame(dir, f);
    }
  }

  private streamNote(stream: number, n: StreamNote): void {
    const fi = this.result.frames[n.frame - 1];
    if (fi === undefined) return;
    const text = `TCP stream ${stream}: ${n.text}`;
    addTcpNote(fi, text);
    if (n.problem) fi.errors.push(text);
  }

  private frame(dir: TcpDirection, f: StreamFrame): void {
    const fi = this.result.frames[f.at - 1];
    if (fi === undefined) return;
    const stream = dir.id;
    try {
      const info = describeTcpFrame(f, {
        index: this.result.coap.messages.length,
        relTime: fi.relTime,
        src: dir.src,
        dst: dir.dst,
        stream,
      });
      this.result.coap.messages.push(info);
      fi.protocol = 'coap';
      // One segment may complete thousands of frames: append, do not copy the list each time.
      if (fi.coap === undefined) fi.coap = [info.index];
      else fi.coap.push(info.index);
    } catch (e) {
      if (!(e instanceof CoapError)) throw e;
      fi.errors.push(
        `TCP stream ${stream}: ${f.bytes.length}-byte RFC 8323 frame is not a valid CoAP message: ${msg(e)}`,
      );
    }
  }
}

function addTcpNote(fi: FrameInfo, text: string): void {
  if (fi.tcp === undefined) return;
  if (fi.tcp.notes === undefined) fi.tcp.notes = [];
  fi.tcp.notes.push(text);
}

interface FragmentState {
  parts: { offset: number; data: Uint8Array; frame: number }[];
  total?: number;
}

const MAX_FRAGMENTS = 256;

/** Collects IP fragments; returns the whole payload once every byte up to the last fragment is there. */
function reassemble(
  states: Map<string, FragmentState>,
  key: string,
  frag: { offset: number; moreFragments: boolean },
  data: Uint8Array,
  frame: number,
): { data: Uint8Array; frames: number[] } | undefined {
  let st = states.get(key);
  if (st === undefined) {
    st = { parts: [] };
    states.set(key, st);
  }
  if (st.parts.length >= MAX_FRAGMENTS) return undefined;
  st.parts.push({ offset: frag.offset, data, frame });
  if (!frag.moreFragments) st.total = frag.offset + data.length;
  if (st.total === undefined || st.total > 0xffff) return undefined;
  const parts = [...st.parts].sort((a, b) => a.offset - b.offset);
  let covered = 0;
  for (const p of parts) {
    if (p.offset > covered) return undefined;
    covered = Math.max(covered, p.offset + p.data.length);
  }
  if (covered < st.total) return undefined;
  const out = new Uint8Array(st.total);
  for (const p of parts) {
    if (p.offset < st.total)
      out.set(p.data.subarray(0, Math.min(p.data.length, st.total - p.offset)), p.offset);
  }
  states.delete(key);
  return { data: out, frames: st.parts.map((p) => p.frame) };
}

function endpoint(ip: string, version: 4 | 6, port: number): string {
  return version === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function recordLabel(r: DtlsRecord): string {
  if (r.handshake && r.handshake.length > 0) return r.handshake.map((h) => h.name).join(', ');
  if (r.alert) return `Alert (${r.alert.levelName} ${r.alert.descriptionName})`;
  if (r.changeCipherSpec) return 'ChangeCipherSpec';
  if (r.contentType === 23 || r.innerContentType === 23) return 'Application Data';
  if (r.encrypted && !r.decrypted) return `Encrypted ${r.contentTypeName}`;
  return r.contentTypeName;
}
