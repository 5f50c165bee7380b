/**
 * The machine-readable trace (`--trace=json`): one JSON object per event and
 * line, the channel's payload as published plus `t` (ms since the trace
 * started), `event` (the channel name without `coapkit:`), the decoded CoAP
 * message (`coap`) for message events, the decoded RFC 8323 frame (`frameSummary`) for
 * frame events and `wireLength` for DTLS records.
 */

import type { FrameEvent } from '../diagnostics.js';
import type { RecordEvent } from '../dtls/diag.js';
import { jsonSafe } from '../util/escape.js';
import { hexOf, summarizeCoap } from './describe.js';
import { summarizeFrame } from './frame.js';
import type { RendererContext, TraceRenderer } from './renderer.js';

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

/** The JSON-lines renderer: writes each event at once (nothing buffered). */
export function jsonRenderer(ctx: RendererContext): TraceRenderer {
  const { state, write } = ctx;
  const sum = state.summary;
  return {
    event(channel, payload, t) {
      // The payload as published (a malformed one is wrapped rather than dropped).
      const ev = (payload !== null && typeof payload === 'object' ? payload : { value: payload }) as Record<
        string,
        unknown
      >;
      const o: Record<string, unknown> = { t: Math.round(t * 1000) / 1000, event: channel.slice(8), ...ev };
      const data = ev.data;
      if (data instanceof Uint8Array && channel.startsWith('coapkit:message:')) {
        const s = summarizeCoap(data);
        o.coap = s;
        if (s.ok) {
          sum.coapMessages++;
          if (channel === 'coapkit:message:retransmitted') sum.retransmissions++;
        }
      }
      if (channel === 'coapkit:frame:sent' || channel === 'coapkit:frame:received') {
        // RFC 8323: the frame decoded (no Type, no Message ID), signaling named.
        const f = ev as unknown as FrameEvent;
        if (f.frame instanceof Uint8Array && typeof f.scheme === 'string') {
          const s = summarizeFrame(f.frame, f.scheme);
          o.frameSummary = s.ok ? { ...s, datagram: undefined } : s;
          sum.frames++;
          sum.frameBytes += f.frame.length;
        }
      }
      if (channel === 'coapkit:message:duplicate') sum.duplicates++;
      if (channel.startsWith('coapkit:dns:')) sum.dnsLookups++;
      if (channel === 'coapkit:dtls:record:sent' || channel === 'coapkit:dtls:record:received') {
        o.wireLength = state.recordWireBytes(ev as unknown as RecordEvent);
      }
      if (!ctx.mute?.()) write(`${jsonSafe(toJsonLine(o))}\n`);
    },
    flush() {},
    pending: false,
  };
}
