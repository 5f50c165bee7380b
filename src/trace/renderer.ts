/**
 * The seam between a trace's subscriptions and what it prints: startTrace()
 * feeds every event that passes the filter to one renderer (text, JSON;
 * `coapkit console` will add a third).
 */
import type { ChannelName, ChannelPayloads } from '../diagnostics.js';
import type { TraceState } from './state.js';

/** What a renderer gets from startTrace(). */
export interface RendererContext {
  /** Suites, totals; shared with the tracer (summary()). */
  state: TraceState;
  /** Writes to the trace output (never throws). */
  write(text: string): void;
  /** ANSI colours. */
  color: boolean;
  /** Display names for remote peers by key (`address%port`). */
  names: Record<string, string>;
  /** When it returns true an event is counted but not printed. */
  mute?: (() => boolean) | undefined;
}

/** Turns trace events into output. */
export interface TraceRenderer {
  /**
   * An event that passed the filter, `t` ms after the trace started (the
   * state has already observed it). May throw on a malformed payload: the
   * tracer reports it without disturbing the publisher.
   */
  event<K extends ChannelName>(channel: K, payload: ChannelPayloads[K], t: number): void;
  /** Writes what is buffered (at stop() and summary()). */
  flush(): void;
  /** True when events are buffered. */
  readonly pending: boolean;
}

/** Creates a renderer for one trace. */
export type TraceRendererFactory = (ctx: RendererContext) => TraceRenderer;
