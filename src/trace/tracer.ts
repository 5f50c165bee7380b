/**
 * `--trace`: the life of each message, layer by layer, printed as it happens.
 *
 * startTrace() subscribes to every coapkit diagnostics channel (the list is
 * derived from `ChannelPayloads`, src/diagnostics.ts) and feeds the events
 * that pass the filter to a {@link TraceState} (what the trace knows across
 * events: DTLS suites, totals) and to one renderer: text (text.ts, DNS
 * lookups, DTLS flights and records, every CoAP message decoded with the
 * bytes each layer adds, retransmissions, duplicates, rejections and how
 * responses were matched) or JSON lines (json.ts). Nothing is subscribed
 * until it is called, so the publishers' `hasSubscribers` checks keep
 * tracing free when it is off. A subscriber never throws into the code that
 * published.
 */

import { performance } from 'node:perf_hooks';
import { CHANNEL_NAMES, type ChannelName, type ChannelPayloads, channelsByName } from '../diagnostics.js';
import type { CoapSizes } from './describe.js';
import { jsonRenderer, toJsonLine } from './json.js';
import type { TraceRenderer, TraceRendererFactory } from './renderer.js';
import { peerKeyOf, TraceState, type TraceSummary } from './state.js';
import { textRenderer } from './text.js';

export type { RendererContext, TraceRenderer, TraceRendererFactory } from './renderer.js';
export { TraceState, type TraceSummary } from './state.js';
export { toJsonLine };

/** Every channel the tracer listens to, in the order of a message's life: all of coapkit's. */
export const TRACE_CHANNELS: readonly ChannelName[] = CHANNEL_NAMES;

/** A channel the tracer listens to. */
export type TraceChannel = ChannelName;

export interface TraceOptions {
  format: 'text' | 'json';
  out: NodeJS.WritableStream;
  /** ANSI colours (only for a terminal). */
  color: boolean;
  /** Display names for remote peers by key (`address%port`), e.g. `{ '127.0.0.1%5684': 'cloud' }`. */
  names?: Record<string, string>;
  /** Return false to leave an event out (e.g. to show one side of an in-process exchange). */
  filter?: <K extends TraceChannel>(channel: K, event: ChannelPayloads[K]) => boolean;
  /**
   * Called for each event that passes the filter: when it returns true the
   * event is counted in the summary but not printed (e.g. the middle blocks
   * of a long block-wise transfer).
   */
  mute?: () => boolean;
}

export interface Trace {
  /** Prints what is pending and unsubscribes. Safe to call twice. */
  stop(): void;
  summary(): TraceSummary;
}

/** The remote peer key an event concerns (undefined for DNS). */
export function eventPeerKey(event: unknown): string | undefined {
  if (event === null || typeof event !== 'object') return undefined;
  return peerKeyOf((event as { peer?: unknown }).peer);
}

const RENDERERS: Record<TraceOptions['format'], TraceRendererFactory> = {
  text: textRenderer,
  json: jsonRenderer,
};

export function startTrace(options: TraceOptions): Trace {
  const start = performance.now();
  const { out, filter } = options;
  let stopped = false;
  const state = new TraceState();

  const write = (text: string): void => {
    if (text === '') return;
    try {
      out.write(text);
    } catch {
      // A closed output must not break the traced program.
    }
  };

  const renderer: TraceRenderer = RENDERERS[options.format === 'json' ? 'json' : 'text']({
    state,
    write,
    color: options.color,
    names: options.names ?? {},
    mute: options.mute,
  });

  const unsubscribes: Array<() => void> = [];
  const listen = <K extends TraceChannel>(channel: K): void => {
    const fn = (m: ChannelPayloads[K]): void => {
      if (stopped) return;
      try {
        if (filter && !filter(channel, m)) return;
        const t = performance.now() - start;
        state.observe(channel, m);
        renderer.event(channel, m, t);
      } catch (err) {
        // Never throw into the publisher (that would crash the traced program).
        write(`trace: ${channel}: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    };
    const ch = channelsByName[channel];
    ch.subscribe(fn);
    unsubscribes.push(() => ch.unsubscribe(fn));
  };
  for (const channel of TRACE_CHANNELS) listen(channel);

  return {
    stop(): void {
      if (stopped) return;
      stopped = true;
      for (const u of unsubscribes) u();
      unsubscribes.length = 0;
      if (renderer.pending) renderer.flush();
    },
    summary(): TraceSummary {
      if (renderer.pending) renderer.flush();
      return { ...state.summary };
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
    (s.frames > 0 ? `; RFC 8323: ${s.frames} frames, ${s.frameBytes} B` : '') +
    (s.retransmissions > 0 ? `; ${s.retransmissions} retransmissions` : '') +
    (s.duplicates > 0 ? `; ${s.duplicates} duplicates` : '')
  );
}

export type { CoapSizes };
