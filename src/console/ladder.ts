/**
 * The console's view of the diagnostics events `--trace` uses
 * (src/diagnostics.ts): each event that concerns a request the page made is
 * turned into one step of its ladder diagram (an arrow between the proxy and
 * the server, or a note on the proxy's line) and handed to that request's
 * watcher. One subscription per running console; a watcher follows the
 * peers its target resolves to (DNS events by host name, every other event
 * by the `address%port` key they carry, as src/trace/state.ts correlates them).
 */
import { performance } from 'node:perf_hooks';
import { CHANNEL_NAMES, type ChannelName, type ChannelPayloads, channelsByName } from '../diagnostics.js';
import type { RecordEvent } from '../dtls/diag.js';
import { ipHeaderBytes, summarizeCoap, UDP_HEADER_BYTES } from '../trace/describe.js';
import { peerKeyOf, TraceState } from '../trace/state.js';

/** One step of a ladder diagram, as sent to the page (JSON). */
export interface LadderStep {
  /** ms since the request reached the proxy. */
  t: number;
  /** The channel without `coapkit:` (`message:sent`, `dtls:record:received`, `dns:resolved`...). */
  event: string;
  /** 'out': proxy to server; 'in': server to proxy; 'note': on the proxy's line. */
  dir: 'out' | 'in' | 'note';
  /** The arrow's label (`CON GET MID 4711`, `ClientHello`, `DNS localhost -> 127.0.0.1`). */
  label: string;
  /** More text for a tooltip: options, payload preview, sizes. */
  detail?: string;
  /** Bytes on the wire (IP + UDP + DTLS + CoAP) when known. */
  bytes?: number;
  /** Kind for styling: 'coap', 'retransmit', 'dtls', 'dns', 'error', 'match'. */
  kind: string;
}

/** A request (or observation) whose steps the page wants. */
export interface LadderWatcher {
  /** The target host as written in the URI (DNS events match it). */
  host: string;
  port: number;
  /** `address%port` keys of the target (IP literal, then what DNS returned). */
  keys: Set<string>;
  /** performance.now() when the request arrived. */
  start: number;
  /**
   * coaps://: a CoAP message leaves inside a DTLS ApplicationData record, after the
   * handshake when the session is new, so its arrow is drawn when that record is sent.
   */
  secure: boolean;
  /** RFC 8323 (TCP, TLS, WebSockets): no Type, no Message ID, no UDP header on the wire. */
  reliable?: boolean;
  /** Outgoing CoAP steps waiting for their record (secure only); kept by the hub. */
  pending?: Array<Omit<LadderStep, 't'>>;
  /** Wire size of the last ApplicationData record received (secure only): the next CoAP message's. */
  inRecordBytes?: number;
  emit(step: LadderStep): void;
}

/** Subscribes to every coapkit channel and dispatches steps to the watchers. */
export class LadderHub {
  private readonly watchers = new Set<LadderWatcher>();
  private readonly state = new TraceState();
  private readonly unsubscribes: Array<() => void> = [];

  constructor() {
    for (const name of CHANNEL_NAMES) this.listen(name);
  }

  /** Starts following a target; the returned function stops. */
  watch(w: LadderWatcher): () => void {
    this.watchers.add(w);
    return () => this.watchers.delete(w);
  }

  close(): void {
    for (const u of this.unsubscribes) u();
    this.unsubscribes.length = 0;
    this.watchers.clear();
  }

  private listen<K extends ChannelName>(name: K): void {
    const fn = (ev: ChannelPayloads[K]): void => {
      if (this.watchers.size === 0) return;
      try {
        this.state.observe(name, ev);
        this.dispatch(name, ev);
      } catch {
        // Never throw into the publisher.
      }
    };
    const ch = channelsByName[name];
    ch.subscribe(fn);
    this.unsubscribes.push(() => ch.unsubscribe(fn));
  }

  private dispatch<K extends ChannelName>(name: K, ev: ChannelPayloads[K]): void {
    const now = performance.now();
    if (name === 'coapkit:dns:resolved' || name === 'coapkit:dns:failed') {
      const host = (ev as { host: string }).host;
      for (const w of this.watchers) {
        if (w.host.toLowerCase() !== String(host).toLowerCase()) continue;
        if (name === 'coapkit:dns:resolved') {
          const r = ev as ChannelPayloads['coapkit:dns:resolved'];
          w.keys.add(`${r.address}%${w.port}`);
          w.emit({
            t: now - w.start,
            event: 'dns:resolved',
            dir: 'note',
            kind: 'dns',
            label: `DNS ${r.host} → ${r.address} (${r.durationMs.toFixed(1)} ms)`,
            detail: r.addresses.map((a) => a.address).join(', '),
          });
        } else {
          const f = ev as ChannelPayloads['coapkit:dns:failed'];
          w.emit({
            t: now - w.start,
            event: 'dns:failed',
            dir: 'note',
            kind: 'error',
            label: `DNS ${f.host} failed`,
            detail: f.error.message,
          });
        }
      }
      return;
    }
    const key = peerKeyOf((ev as { peer?: unknown }).peer);
    if (key === undefined) return;
    let step: Omit<LadderStep, 't'> | undefined;
    let described = false;
    for (const w of this.watchers) {
      if (!w.keys.has(key)) continue;
      if (w.secure && name === 'coapkit:dtls:record:sent') {
        const r = ev as RecordEvent;
        if (r.type === 23 && r.role === 'client') {
          // The record that carries the oldest CoAP message waiting for it.
          const queued = w.pending?.shift();
          if (queued !== undefined) {
            w.emit({
              t: now - w.start,
              ...queued,
              bytes:
                this.state.recordWireBytes(r) +
                UDP_HEADER_BYTES +
                ipHeaderBytes(r.peer.includes(':') ? 6 : 4),
            });
          }
          continue;
        }
      }
      if (w.secure && name === 'coapkit:dtls:record:received') {
        const r = ev as RecordEvent;
        if (r.type === 23 && r.role === 'client') {
          w.inRecordBytes =
            this.state.recordWireBytes(r) + UDP_HEADER_BYTES + ipHeaderBytes(r.peer.includes(':') ? 6 : 4);
          continue;
        }
      }
      if (!described) {
        step = this.describe(name, ev);
        described = true;
      }
      if (step === undefined) continue;
      if (w.secure && step.dir === 'out' && step.kind !== 'dtls' && step.kind !== 'error') {
        w.pending ??= [];
        if (w.pending.length < 64) w.pending.push(step);
        continue;
      }
      if (w.secure && name === 'coapkit:message:received' && w.inRecordBytes !== undefined) {
        w.emit({ t: now - w.start, ...step, bytes: w.inRecordBytes });
        w.inRecordBytes = undefined;
        continue;
      }
      w.emit({ t: now - w.start, ...(w.reliable ? reliableStep(step) : step) });
    }
  }

  /** The step an event draws (undefined: nothing to draw). */
  describe<K extends ChannelName>(name: K, ev: ChannelPayloads[K]): Omit<LadderStep, 't'> | undefined {
    const event = name.slice('coapkit:'.length);
    switch (name) {
      case 'coapkit:message:sent':
      case 'coapkit:message:received': {
        const e = ev as ChannelPayloads['coapkit:message:sent'];
        // A retransmission's wire copy: message:retransmitted drew it already.
        if (name === 'coapkit:message:sent' && (e.transmission ?? 0) > 0) return undefined;
        return { event, dir: name === 'coapkit:message:sent' ? 'out' : 'in', ...this.coap(e.data, e.peer) };
      }
      case 'coapkit:message:retransmitted': {
        const e = ev as ChannelPayloads['coapkit:message:retransmitted'];
        const c = this.coap(e.data, e.peer);
        return {
          event,
          dir: 'out',
          ...c,
          kind: 'retransmit',
          label: `${c.label} (retransmission ${e.transmission})`,
          detail: `${c.detail ?? ''}\nnext timeout ${Math.round(e.nextTimeoutMs)} ms`,
        };
      }
      case 'coapkit:message:duplicate': {
        const e = ev as ChannelPayloads['coapkit:message:duplicate'];
        return { event, dir: 'note', kind: 'retransmit', label: `duplicate MID ${e.messageId} suppressed` };
      }
      case 'coapkit:message:rejected': {
        const e = ev as ChannelPayloads['coapkit:message:rejected'];
        return {
          event,
          dir: 'note',
          kind: 'error',
          label: `rejected: ${e.reason}${e.reset ? ' (RST sent)' : ''}`,
        };
      }
      case 'coapkit:message:timeout': {
        const e = ev as ChannelPayloads['coapkit:message:timeout'];
        return {
          event,
          dir: 'note',
          kind: 'error',
          label: `MID ${e.messageId} never acknowledged (${e.transmissions} transmissions)`,
        };
      }
      case 'coapkit:exchange:matched': {
        const e = ev as ChannelPayloads['coapkit:exchange:matched'];
        const how = e.piggybacked ? 'piggybacked' : 'separate response';
        return {
          event,
          dir: 'note',
          kind: 'match',
          label: `matched ${codeText(e.code)} (${how}), RTT ${e.rttMs.toFixed(1)} ms`,
        };
      }
      case 'coapkit:dtls:record:sent':
      case 'coapkit:dtls:record:received': {
        const e = ev as RecordEvent;
        if (e.role !== 'client' || e.type === 23) return undefined; // ApplicationData: the CoAP message is drawn.
        const names = (e.handshake ?? []).map((h) => h.typeName).join(' + ');
        const label =
          e.type === 22
            ? names || 'Handshake'
            : e.type === 21
              ? `Alert ${e.alert?.description ?? ''}`
              : e.typeName;
        return {
          event,
          dir: name === 'coapkit:dtls:record:sent' ? 'out' : 'in',
          kind: e.type === 21 ? 'error' : 'dtls',
          label: `DTLS ${label}`,
          detail: `epoch ${e.epoch} seq ${e.seq}, ${e.length} B plaintext`,
          bytes:
            this.state.recordWireBytes(e) + UDP_HEADER_BYTES + ipHeaderBytes(e.peer.includes(':') ? 6 : 4),
        };
      }
      case 'coapkit:dtls:handshake:start':
        return (ev as { role: string }).role === 'client'
          ? { event, dir: 'note', kind: 'dtls', label: 'DTLS handshake starts' }
          : undefined;
      case 'coapkit:dtls:handshake:done': {
        const e = ev as ChannelPayloads['coapkit:dtls:handshake:done'];
        if (e.role !== 'client') return undefined;
        return { event, dir: 'note', kind: 'dtls', label: `DTLS up: ${this.state.handshakeSuite(e) ?? '?'}` };
      }
      case 'coapkit:dtls:handshake:error': {
        const e = ev as ChannelPayloads['coapkit:dtls:handshake:error'];
        if (e.role !== 'client') return undefined;
        return { event, dir: 'note', kind: 'error', label: `DTLS failed: ${e.error.message}` };
      }
      default:
        return undefined;
    }
  }

  private coap(data: Uint8Array, peer: unknown): Pick<LadderStep, 'label' | 'detail' | 'kind' | 'bytes'> {
    const s = summarizeCoap(data);
    if (!s.ok) return { kind: 'error', label: `undecodable (${s.error})`, detail: s.hex.slice(0, 64) };
    const family = (peer as { family?: string }).family === 'IPv6' ? 6 : 4;
    const label =
      s.code === 0 ? `${s.type} MID ${s.messageId}` : `${s.type} ${s.codeText} MID ${s.messageId}`;
    const opts = s.options.map((o) => `${o.name}: ${o.value}`).join('\n');
    return {
      kind: 'coap',
      label,
      detail: `token ${s.token || '(empty)'}${opts ? `\n${opts}` : ''}${s.payloadLength > 0 ? `\npayload ${s.payloadLength} B ${s.payloadPreview}` : ''}`,
      bytes: s.sizes.total + UDP_HEADER_BYTES + ipHeaderBytes(family),
    };
  }
}

/**
 * A step of an RFC 8323 exchange: the events describe the message in its datagram form
 * (the message layer above the transport), so Type, Message ID and the UDP sizes go.
 */
function reliableStep(step: Omit<LadderStep, 't'>): Omit<LadderStep, 't'> {
  const { bytes: _bytes, ...rest } = step;
  return {
    ...rest,
    label: step.label
      .replace(/^(CON|NON|ACK|RST) /, '')
      .replace(/ MID \d+/, '')
      .replace(/ \((piggybacked|separate response)\)/, ''),
  };
}

function codeText(code: number): string {
  return `${code >> 5}.${String(code & 31).padStart(2, '0')}`;
}
