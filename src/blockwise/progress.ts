/**
 * A one-line progress bar for block-wise transfers, for the CLI:
 *
 *   const bar = createProgressBar({ label: 'GET /big' });   // stderr, TTY only
 *   await client.get(uri, { onProgress: bar.update });
 *   bar.done();
 *
 * It shows bytes (and total when known), blocks, rate and ETA, redraws at most
 * every 100 ms, and is silent unless the stream is a terminal.
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
  let drawn = false;
  const draw = (p: BlockProgress): void => {
    const width = stream.columns || 80;
    stream.write(`\r${formatProgress(p, now() - start, width, options.label ?? '')}\x1b[K`);
    drawn = true;
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
      if (drawn) stream.write('\n');
    },
  };
}
