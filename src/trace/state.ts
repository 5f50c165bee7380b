/**
 * What a trace knows across events, whatever it prints: the negotiated DTLS
 * suite of each session (so a record's size on the wire is known), the
 * running totals, and the correlation of the events of one turn of the event
 * loop (the DTLS record that carries a CoAP message, the wire copy of an
 * announced retransmission, a notification's Observe value, a message queued
 * until its DTLS session is up). Renderers (text, JSON, later a console) read
 * it; none of it formats anything.
 */
import { readFrameHeader } from '../codec/reliable.js';
import type { ChannelName, ChannelPayloads, FrameEvent } from '../diagnostics.js';
import type { RecordEvent } from '../dtls/diag.js';
import { CIPHER_SUITE_NAMES } from '../dtls/names.js';
import { cidOverhead } from '../dtls/record/cid.js';
import type { Peer } from '../transport/transport.js';
import { DTLS_RECORD_HEADER_BYTES, dtlsProtectionBytes, summarizeCoap } from './describe.js';
import { isWebSocketScheme } from './frame.js';

/** Running totals over everything printed so far (text and JSON). */
export interface TraceSummary {
  /** CoAP messages sent and received (retransmissions included). */
  coapMessages: number;
  /** Bytes of those messages on the wire, all layers. */
  coapWireBytes: number;
  /** Of which: IP headers. */
  ip: number;
  /** Of which: UDP headers. */
  udp: number;
  /** Of which: DTLS record header and nonce/tag. */
  dtls: number;
  /** Of which: CoAP header, token, options and payload marker. */
  coapOverhead: number;
  /** Of which: CoAP payload. */
  payload: number;
  /** DTLS handshake/CCS/alert records seen. */
  dtlsRecords: number;
  /** Their bytes (record header included). */
  dtlsRecordBytes: number;
  /** Retransmissions seen. */
  retransmissions: number;
  /** Duplicates suppressed. */
  duplicates: number;
  /** DNS lookups (resolved or failed). */
  dnsLookups: number;
  /** RFC 8323 frames (coap+tcp, coap+ws...), signaling included: not counted in `coapMessages`. */
  frames: number;
  /** Their bytes (frame header included; TCP, TLS and WebSocket framing not). */
  frameBytes: number;
}

/** A peer as events carry it: a Peer, or a DTLS "address%port" label. */
export type PeerRef = Peer | string;

/** The `address%port` key of a peer as an event carries it (tolerates malformed payloads). */
export function peerKeyOf(p: unknown): string | undefined {
  if (typeof p === 'string') return p;
  if (p !== null && typeof p === 'object') {
    const o = p as Partial<Peer>;
    if (typeof o.key === 'string') return o.key;
    if (typeof o.address === 'string') return `${o.address}%${o.port}`;
  }
  return undefined;
}

/** Session facts and totals shared by the renderers of one trace. */
export class TraceState {
  readonly summary: TraceSummary = {
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
    frames: 0,
    frameBytes: 0,
  };
  /** Negotiated suite by `${role}|${peerKey}`. */
  private readonly suites = new Map<string, string>();

  /**
   * Learns from an event before it is rendered: the suite a DTLS session
   * negotiated (from the ServerHello a record carries, or handshake:done).
   */
  observe<K extends ChannelName>(channel: K, payload: ChannelPayloads[K]): void {
    if (payload === null || typeof payload !== 'object') return;
    if (channel === 'coapkit:dtls:record:sent' || channel === 'coapkit:dtls:record:received') {
      const ev = payload as RecordEvent;
      for (const h of ev.handshake ?? [])
        if (h.chosenSuite) this.suites.set(`${ev.role}|${ev.peer}`, h.chosenSuite);
    } else if (channel === 'coapkit:dtls:handshake:done') {
      const ev = payload as ChannelPayloads['coapkit:dtls:handshake:done'];
      const suite = this.handshakeSuite(ev);
      if (suite) this.suites.set(`${ev.role}|${ev.peer}`, suite);
    }
  }

  /** The suite a handshake:done event names. */
  handshakeSuite(ev: ChannelPayloads['coapkit:dtls:handshake:done']): string | undefined {
    return ev.suite ?? (ev.suiteId !== undefined ? CIPHER_SUITE_NAMES[ev.suiteId] : undefined);
  }

  /** The suite negotiated with `peer` (when this endpoint plays `role`). */
  suiteOf(role: string, peer: string): string | undefined {
    return this.suites.get(`${role}|${peer}`);
  }

  /** AEAD nonce + tag bytes a record of this epoch carries (0 in epoch 0). */
  protectionBytes(role: string, peer: string, epoch: number): number {
    if (epoch === 0) return 0;
    return dtlsProtectionBytes(this.suites.get(`${role}|${peer}`));
  }

  /**
   * What a record adds to its plaintext on the wire: the header, with a connection ID
   * (RFC 9146) the CID and the inner content type byte, and the nonce/tag.
   */
  recordOverheadBytes(ev: RecordEvent): number {
    const cid = ev.cid === undefined ? 0 : cidOverhead(ev.cid.length / 2);
    return DTLS_RECORD_HEADER_BYTES + cid + this.protectionBytes(ev.role, ev.peer, ev.epoch);
  }

  /** A record's size on the wire: its plaintext and {@link recordOverheadBytes}. */
  recordWireBytes(ev: RecordEvent): number {
    return ev.length + this.recordOverheadBytes(ev);
  }

  /** Adds one CoAP message's wire bytes, layer by layer, to the totals. */
  countWire(ip: number, udp: number, dtls: number, overhead: number, payload: number): void {
    const sum = this.summary;
    sum.coapMessages++;
    sum.ip += ip;
    sum.udp += udp;
    sum.dtls += dtls;
    sum.coapOverhead += overhead;
    sum.payload += payload;
    sum.coapWireBytes += ip + udp + dtls + overhead + payload;
  }
}

// ---------------------------------------------------------------- one turn's events, correlated

export type Dir = 'out' | 'in';

/** A CoAP message sent or received, with what carried it. */
export interface CoapEntry {
  kind: 'coap';
  t: number;
  dir: Dir;
  peer: Peer;
  data: Uint8Array;
  retransmit?: { transmission: number; nextTimeoutMs: number };
  /** The DTLS ApplicationData record that carried it. */
  record?: RecordEvent;
  /** Sent to a DTLS peer before its session was up: the record comes later. */
  queued?: boolean;
  /** The RFC 8323 frame that carried it (coap+tcp, coap+ws...): no Type, no Message ID on the wire. */
  frame?: FrameEvent;
}

/** An RFC 8323 frame not folded into a CoAP message: signaling (7.01 CSM ... 7.05 Abort), or undecodable. */
export interface FrameEntry {
  kind: 'frame';
  t: number;
  dir: Dir;
  ev: FrameEvent;
}

/** A DTLS record not folded into a CoAP message. */
export interface RecordEntry {
  kind: 'record';
  t: number;
  dir: Dir;
  ev: RecordEvent;
  /** An ApplicationData record that carries a message queued earlier (see CoapEntry.queued). */
  carries?: CoapEntry;
}

/** Any other event, in the form the renderer chose (`view`). */
export interface NoteEntry<V> {
  kind: 'note';
  t: number;
  /** Set for DTLS handshake events: this peer's CoAP messages travel in records. */
  dtlsPeer?: string;
  view: V;
}

export type TurnEntry<V> = (CoapEntry | RecordEntry | FrameEntry | NoteEntry<V>) & { muted?: boolean };

/**
 * Buffers the events of one turn of the event loop (flushed on
 * setImmediate) and correlates them: a CoAP message and the DTLS record
 * that carries it (published separately) become one entry. `onTurn`
 * receives the entries in order.
 */
export class TurnBuffer<V> {
  private readonly queue: TurnEntry<V>[] = [];
  private scheduled = false;
  /** Set while a partly received flight holds the entries back (see turnEnded). */
  private holdTimer: ReturnType<typeof setTimeout> | undefined;
  /** Peers (keys) seen in DTLS events: their CoAP messages travel in records. */
  private readonly dtlsPeers = new Set<string>();
  /** CoAP messages sent before the DTLS session was up, by `${peerKey}|${length}`. */
  private readonly queuedMessages = new Map<string, CoapEntry>();
  /** Peers (keys) seen in RFC 8323 frame events, and their scheme (the newest 1024). */
  private readonly reliablePeers = new Map<string, string>();

  constructor(
    private readonly onTurn: (entries: TurnEntry<V>[]) => void,
    /** When it returns true at the time an event is added, the entry is marked muted. */
    private readonly mute?: () => boolean,
  ) {}

  get pending(): boolean {
    return this.queue.length > 0;
  }

  /** A datagram sent; the wire copy of a retransmission already added by `retransmitted` is dropped. */
  sent(ev: ChannelPayloads['coapkit:message:sent'], t: number): void {
    const n = ev.transmission ?? 0;
    if (n > 0) {
      // The wire copy of a retransmission already announced on message:retransmitted.
      const last = this.queue[this.queue.length - 1];
      if (
        last?.kind === 'coap' &&
        last.retransmit?.transmission === n &&
        peerKeyOf(last.peer) === peerKeyOf(ev.peer) &&
        last.data.length === ev.data.length
      ) {
        return;
      }
      this.push({
        kind: 'coap',
        t,
        dir: 'out',
        peer: ev.peer,
        data: ev.data,
        retransmit: { transmission: n, nextTimeoutMs: Number.NaN },
      });
      return;
    }
    this.push({ kind: 'coap', t, dir: 'out', peer: ev.peer, data: ev.data });
  }

  retransmitted(ev: ChannelPayloads['coapkit:message:retransmitted'], t: number): void {
    this.push({
      kind: 'coap',
      t,
      dir: 'out',
      peer: ev.peer,
      data: ev.data,
      retransmit: { transmission: ev.transmission, nextTimeoutMs: ev.nextTimeoutMs },
    });
  }

  /** A datagram received, joined with the DTLS record that carried it (published just before). */
  received(ev: ChannelPayloads['coapkit:message:received'], t: number): void {
    const key = peerKeyOf(ev.peer);
    const entry: CoapEntry = { kind: 'coap', t, dir: 'in', peer: ev.peer, data: ev.data };
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i]!;
      // RFC 8323: the frame, published just before by the transport (not a signaling one).
      if (q.kind === 'frame' && q.dir === 'in' && peerKeyOf(q.ev.peer) === key) {
        if (!isSignalFrame(q.ev)) {
          entry.frame = q.ev;
          this.queue.splice(i, 1);
        }
        break;
      }
      if (q.kind === 'record' && q.dir === 'in' && q.ev.type === 23 && q.ev.peer === key) {
        if (q.ev.length === ev.data.length) {
          entry.record = q.ev;
          this.queue.splice(i, 1);
        }
        break;
      }
    }
    this.push(entry);
  }

  /** A DTLS record; an outgoing ApplicationData record joins the CoAP message published just before. */
  record(ev: RecordEvent, dir: Dir, t: number): void {
    if (ev.type === 23 && dir === 'out') {
      for (let i = this.queue.length - 1; i >= 0; i--) {
        const q = this.queue[i]!;
        if (q.kind === 'coap' && q.dir === 'out' && peerKeyOf(q.peer) === ev.peer) {
          if (q.record === undefined && q.data.length === ev.length) {
            q.record = ev;
            return;
          }
          break;
        }
      }
    }
    this.push({ kind: 'record', t, dir, ev });
  }

  /**
   * An RFC 8323 frame. An outgoing message frame joins the CoAP message published just before
   * (message:sent, then the transport frames it), placed after the signaling that went first
   * (the CSM of a new connection); an incoming one waits for its message:received.
   */
  frame(ev: FrameEvent, dir: Dir, t: number): void {
    const key = peerKeyOf(ev.peer);
    if (key !== undefined) {
      this.reliablePeers.delete(key);
      this.reliablePeers.set(key, ev.scheme);
      if (this.reliablePeers.size > 1024) this.reliablePeers.delete(this.reliablePeers.keys().next().value!);
    }
    if (dir === 'out' && !isSignalFrame(ev)) {
      for (let i = this.queue.length - 1; i >= 0; i--) {
        const q = this.queue[i]!;
        if (q.kind === 'coap' && q.dir === 'out' && q.frame === undefined && peerKeyOf(q.peer) === key) {
          q.frame = ev;
          q.t = t;
          this.queue.splice(i, 1);
          this.queue.push(q);
          return;
        }
      }
    }
    this.push({ kind: 'frame', t, dir, ev });
  }

  /** The scheme of `peer` when it was seen on an RFC 8323 transport (coap+tcp...), else undefined. */
  reliableScheme(peer: unknown): string | undefined {
    const key = peerKeyOf(peer);
    return key === undefined ? undefined : this.reliablePeers.get(key);
  }

  /** Any other event. */
  note(t: number, view: V, dtlsPeer?: string): void {
    const e: NoteEntry<V> = { kind: 'note', t, view };
    if (dtlsPeer !== undefined) e.dtlsPeer = dtlsPeer;
    this.push(e);
  }

  /**
   * The Observe value of the message with this Message ID just received from
   * `peer` (a registration or notification being matched), if it has one.
   */
  observeValue(peer: unknown, messageId: number): number | undefined {
    const key = peerKeyOf(peer);
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const q = this.queue[i]!;
      if (q.kind !== 'coap' || q.dir !== 'in' || peerKeyOf(q.peer) !== key) continue;
      return observeOf(q.data, messageId);
    }
    return undefined;
  }

  /**
   * The end of a turn. A flight the peer sent in several datagrams can arrive
   * over several turns (a busy machine): while the newest entry is an incoming
   * handshake record that does not end a flight, the entries wait (at most
   * FLIGHT_HOLD_MS) so the flight is shown as one.
   */
  private turnEnded(): void {
    this.scheduled = false;
    if (!midFlight(this.queue[this.queue.length - 1])) {
      this.flush();
      return;
    }
    this.holdTimer ??= setTimeout(() => this.flush(), FLIGHT_HOLD_MS);
    this.holdTimer.unref?.();
  }

  /** Hands the buffered entries to `onTurn`. */
  flush(): void {
    this.scheduled = false;
    if (this.holdTimer !== undefined) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (this.queue.length === 0) return;
    const items = this.queue.splice(0);
    for (const e of items) {
      if (e.kind === 'record') this.dtlsPeers.add(e.ev.peer);
      else if (e.kind === 'note' && e.dtlsPeer !== undefined) this.dtlsPeers.add(e.dtlsPeer);
    }
    for (const e of items) {
      if (e.kind === 'coap' && e.dir === 'out' && e.record === undefined) {
        const key = peerKeyOf(e.peer);
        if (key !== undefined && this.dtlsPeers.has(key)) e.queued = true;
      }
    }
    // A queued message leaves later in an ApplicationData record of the same length.
    for (const e of items) {
      try {
        if (e.kind === 'coap' && e.queued) {
          const s = summarizeCoap(e.data);
          if (s.ok) this.queuedMessages.set(`${peerKeyOf(e.peer) ?? '?'}|${s.sizes.total}`, e);
        } else if (e.kind === 'record' && e.dir === 'out' && e.ev.type === 23) {
          const k = `${e.ev.peer}|${e.ev.length}`;
          const queued = this.queuedMessages.get(k);
          if (queued !== undefined) {
            this.queuedMessages.delete(k);
            e.carries = queued;
          }
        }
      } catch {
        // A malformed payload is reported by the renderer.
      }
    }
    this.onTurn(items);
  }

  private push(e: TurnEntry<V>): void {
    if (this.mute?.()) e.muted = true;
    this.queue.push(e);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.turnEnded());
    }
  }
}

/** How long a flight's first datagrams wait for its last one before they are shown anyway. */
const FLIGHT_HOLD_MS = 1000;

/** HandshakeTypes a flight ends with: ClientHello, HelloVerifyRequest, ServerHelloDone, Finished. */
const FLIGHT_ENDS = new Set([1, 3, 14, 20]);

/** True for an incoming handshake or ChangeCipherSpec record after which more of its flight is due. */
function midFlight(e: TurnEntry<unknown> | undefined): boolean {
  if (e?.kind !== 'record' || e.dir !== 'in') return false;
  if (e.ev.type === 20) return true;
  if (e.ev.type !== 22 || e.ev.handshake === undefined || e.ev.handshake.length === 0) return false;
  return !e.ev.handshake.some(
    (h) => FLIGHT_ENDS.has(h.type) && h.fragmentOffset + h.fragmentLength === h.length,
  );
}

/** True for a signaling frame (class 7: CSM, Ping, Pong, Release, Abort). */
function isSignalFrame(ev: FrameEvent): boolean {
  try {
    const h = readFrameHeader(ev.frame, 0, isWebSocketScheme(ev.scheme));
    return h !== undefined && h.code >> 5 === 7;
  } catch {
    return false;
  }
}

/** The Observe value of a datagram with this Message ID, if it carries one. */
function observeOf(data: Uint8Array, messageId: number): number | undefined {
  const s = summarizeCoap(data);
  if (!s.ok || s.messageId !== messageId) return undefined;
  const o = s.options.find((x) => x.number === 6);
  return o === undefined ? undefined : Number(o.value);
}
