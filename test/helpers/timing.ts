/** Small async helpers shared by tests. */
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
