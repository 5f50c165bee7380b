/** Small async helpers shared by tests. */
import type { VirtualClock } from '../../src/util/clock.js';

export { setTimeout as sleep } from 'node:timers/promises';

/** Rejects with "timeout: <what>" unless `p` settles within `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms);
    }),
  ]);
}

/**
 * Resolves once `cond()` is true, checking every few ms; rejects with
 * "timeout: <what>" after `ms` (a generous safety net, not a timing
 * assertion: under load the condition simply takes longer).
 */
export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timeout: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Runs `p` on `clock`: lets real I/O happen (the datagrams are real) and moves virtual time to
 * the next timer only when nothing else is left to do, until `p` settles. Returns the virtual
 * milliseconds it took.
 */
export async function onVirtualTime(clock: VirtualClock, p: Promise<unknown>): Promise<number> {
  const t0 = clock.now();
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 10_000 && !settled; i++) {
    await new Promise((r) => setTimeout(r, 1));
    const due = clock.nextDue;
    if (!settled && due !== undefined) await clock.advance(Math.max(0, due - clock.now()));
  }
  if (!settled) throw new Error('timeout: the promise did not settle on virtual time');
  return clock.now() - t0;
}
