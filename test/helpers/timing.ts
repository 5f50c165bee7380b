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
