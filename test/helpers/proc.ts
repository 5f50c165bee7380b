/** Process and concurrency helpers shared by the attack tests (memory of a child, bounded pools). */
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { sleep } from './timing.js';

/**
 * Resident set size (VmRSS in /proc/PID/status, Linux) of a process, in kB. For 'self'
 * without /proc, process.memoryUsage().rss.
 */
export function rssKb(pid: number | 'self'): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (e) {
    if (pid === 'self') return process.memoryUsage().rss / 1024;
    throw e;
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Resident set size of a process, in MiB. */
export function rssMiB(pid: number | 'self'): number {
  return rssKb(pid) / 1024;
}

/**
 * Waits until the RSS of `pid` is at most `limitMiB` or `ms` have passed (memory the
 * allocator gives back takes a moment); returns the last reading in MiB.
 */
export async function settleRss(pid: number, limitMiB: number, ms = 10_000): Promise<number> {
  let rss = rssMiB(pid);
  const end = performance.now() + ms;
  while (rss > limitMiB && performance.now() < end) {
    await sleep(250);
    rss = rssMiB(pid);
  }
  return rss;
}

/** Runs `job(0)`..`job(count - 1)` with at most `width` in flight. */
export async function pool(count: number, width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) await job(next++);
    }),
  );
}

/** global.gc, also when node runs without --expose-gc. */
export function gcFunction(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}
