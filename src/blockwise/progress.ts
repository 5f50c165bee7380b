/**
 * A one-line progress bar for block-wise transfers, for the CLI:
 *
 *   const bar = createProgressBar({ label: 'GET /big' });   // stderr, TTY only
 *   await client.get(uri, { onProgress: bar.update });
 *   bar.done();
 *
 * It shows bytes (and total when known), blocks, rate and ETA, redraws at most
 * every 100 ms, and is silent unless the stream is a terminal.
 *
 * The bar owns the bottom line of its stream (claimStatusLine): anything else
 * written to the same stream while it is shown (a trace line, -v output, an
 * error) first erases the bar, so the two never share a line; the bar comes
 * back at the next update, below that output.
 */

// The global `performance` is an accessor: every use would call a getter; the module binding does not.
import { performance } from 'node:perf_hooks';
import type { BlockProgress } from './common.js';

export interface ProgressBarOptions {
  /** Where to draw (default process.stderr). Nothing is drawn unless `isTTY` is true or `force` is set. */
  stream?: { isTTY?: boolean; columns?: number; write(s: string): unknown };
  /** Text before the bar, e.g. the method and path. */
  label?: string;
  /** Draw even when the stream is not a TTY (tests). */
  force?: boolean;
  /** Minimum time between redraws in ms (default 100). */
  minIntervalMs?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export interface ProgressBar {
  /** True when the bar draws anything. */
  readonly enabled: boolean;
  /** Pass as `onProgress`. */
  update: (p: BlockProgress) => void;
  /** Draws the final state and ends the line (only if anything was drawn). */
  done: () => void;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB'];

/** "1.5 MiB" */
export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[i]}`;
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.max(0, Math.round(s));
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * One line of progress text (no control characters), fitted to `width` columns:
 * `label [#####-----]  45%  450.0 KiB/1.0 MiB  450 blocks  120.3 KiB/s  ETA 4s`.
 */
export function formatProgress(p: BlockProgress, elapsedMs: number, width = 80, label = ''): string {
  const rate = elapsedMs > 0 ? (p.bytes * 1000) / elapsedMs : 0;
  const arrow = p.direction === 'upload' ? '↑' : '↓';
  const parts: string[] = [];
  const known = p.totalBytes !== undefined && p.totalBytes > 0;
  const frac = known ? Math.min(1, p.bytes / p.totalBytes!) : 0;
  parts.push(known ? `${formatBytes(p.bytes)}/${formatBytes(p.totalBytes!)}` : formatBytes(p.bytes));
  parts.push(`${p.blocks} block${p.blocks === 1 ? '' : 's'}`);
  parts.push(`${formatBytes(Math.round(rate))}/s`);
  if (known && rate > 0) parts.push(`ETA ${formatDuration((p.totalBytes! - p.bytes) / rate)}`);
  const tail = `${known ? `${String(Math.floor(frac * 100)).padStart(3)}%  ` : ''}${parts.join('  ')}`;
  const head = `${label ? `${label} ` : ''}${arrow} `;
  const room = width - head.length - tail.length - 4;
  if (known && room >= 10) {
    const barWidth = Math.min(30, room);
    const filled = Math.round(frac * barWidth);
    return `${head}[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${tail}`;
  }
  return `${head}${tail}`.slice(0, Math.max(10, width - 1));
}

/** A progress bar drawing on a terminal (stderr by default); a no-op elsewhere. */
export function createProgressBar(options: ProgressBarOptions = {}): ProgressBar {
  const stream = options.stream ?? process.stderr;
  const enabled = options.force === true || stream.isTTY === true;
  const now = options.now ?? (() => performance.now());
  const minInterval = options.minIntervalMs ?? 100;
  const start = now();
  let lastDraw = -Infinity;
  let last: BlockProgress | undefined;
  let line: StatusLine | undefined;
  const draw = (p: BlockProgress): void => {
    const width = stream.columns || 80;
    line ??= claimStatusLine(stream);
    line.show(formatProgress(p, now() - start, width, options.label ?? ''));
    lastDraw = now();
  };
  return {
    enabled,
    update: (p: BlockProgress) => {
      last = p;
      if (!enabled) return;
      if (now() - lastDraw >= minInterval) draw(p);
    },
    done: () => {
      if (!enabled || last === undefined) return;
      draw(last);
      line?.end(true);
      line = undefined;
    },
  };
}

/** A stream the status line can be drawn on (process.stderr, a TTY WriteStream, a test double). */
export interface StatusLineStream {
  write(s: string): unknown;
}

/** The bottom line of a terminal stream, owned by one live status (a progress bar). */
export interface StatusLine {
  /** Shows `text` (one line, no control characters) on the status line, replacing what it showed. */
  show(text: string): void;
  /** True while the status is on screen (other output erases it until the next show). */
  readonly shown: boolean;
  /**
   * Gives the line back: with `keep` the last text stays on screen (drawn again if
   * other output erased it; a newline ends it), otherwise it is erased. Writes to
   * the stream go straight through again.
   */
  end(keep?: boolean): void;
}

/**
 * Takes ownership of the bottom line of `stream`: every other write to the
 * stream while the status is shown first erases it (`\r` + erase to end of
 * line), so a status and other output never share a line. The status is
 * drawn again by the next `show()`, on a line of its own (after a newline
 * when the other output ended mid-line). The stream's `write` is wrapped
 * until `end()`.
 */
export function claimStatusLine(stream: StatusLineStream): StatusLine {
  const original = stream.write;
  const ownWrite = Object.hasOwn(stream, 'write');
  const raw = (s: string): unknown => original.call(stream, s);
  let shown = false;
  let lastText: string | undefined;
  let ended = false;
  /** The other output's last write did not end its line. */
  let midLine = false;
  const wrapper = function (this: unknown, chunk: unknown, ...rest: unknown[]): unknown {
    if (!ended) {
      if (shown) {
        raw('\r\x1b[K');
        shown = false;
      }
      const len = typeof chunk === 'string' ? chunk.length : (chunk as Uint8Array | undefined)?.length;
      if (len !== undefined && len > 0) {
        const lastChar =
          typeof chunk === 'string' ? chunk.charCodeAt(len - 1) : (chunk as Uint8Array)[len - 1];
        midLine = lastChar !== 10;
      }
    }
    return (original as (...a: unknown[]) => unknown).call(stream, chunk, ...rest);
  };
  stream.write = wrapper as StatusLineStream['write'];
  return {
    get shown() {
      return shown;
    },
    show(text: string) {
      if (ended) return;
      if (midLine) {
        raw('\n');
        midLine = false;
      }
      raw(`\r${text}\x1b[K`);
      shown = true;
      lastText = text;
    },
    end(keep = false) {
      if (ended) return;
      if (keep && !shown && lastText !== undefined) this.show(lastText);
      ended = true;
      if (shown) raw(keep ? '\n' : '\r\x1b[K');
      shown = false;
      // Someone wrapped write after us: leave theirs in place (ours is now transparent).
      if (stream.write === wrapper) {
        if (ownWrite) stream.write = original;
        else delete (stream as { write?: unknown }).write;
      }
    },
  };
}
