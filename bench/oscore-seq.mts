/**
 * OSCORE sender sequence numbers: the cost of taking one (in memory, with a synchronous
 * SequenceStore, with reserved ranges from a SequenceSource: the hot path is one comparison
 * in each), and the latency of one durable range reservation (reserveSequence) on SQLite
 * and, when PostgreSQL 15 binaries are installed, on a throwaway PostgreSQL cluster.
 * Run: node --import tsx bench/oscore-seq.mts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { OscoreContext } from '../src/oscore/context.js';
import { MemoryStore } from '../src/store/memory.js';
import { PostgresStore } from '../src/store/postgres.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { startPostgres } from './lib/postgres.mjs';

const base = { masterSecret: Buffer.alloc(16, 1), senderId: Buffer.from([1]), recipientId: Buffer.from([2]) };

async function take(name: string, c: OscoreContext): Promise<void> {
  await c.ready();
  const N = 20_000_000;
  let sum = 0;
  const t0 = performance.now();
  for (let i = 0; i < N; i += 20_000) {
    for (let j = 0; j < 20_000; j++) sum += c.nextSequenceNumber();
    // Lets a reservation in flight commit, as a server's event loop does between datagrams.
    await new Promise((r) => setImmediate(r));
  }
  const ns = ((performance.now() - t0) * 1e6) / N;
  if (sum < 0) throw new Error('unreachable: keeps the loop from being optimised away');
  console.log(`nextSequenceNumber, ${name}: ${ns.toFixed(1)} ns`);
}

const mem = new MemoryStore();
await take('in memory', new OscoreContext(base));
await take(
  'sync SequenceStore (K_SSN 65536)',
  new OscoreContext({
    ...base,
    sequenceMargin: 65_536,
    sequenceStore: { load: () => undefined, save: () => {} },
  }),
);
await take(
  'SequenceSource (ranges of 65536)',
  new OscoreContext({
    ...base,
    sequenceMargin: 65_536,
    sequenceSource: { reserve: (n) => mem.reserveSequence('x', n) },
  }),
);

async function reserve(name: string, store: SqliteStore | PostgresStore, n: number): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await store.reserveSequence('bench', 256);
  console.log(
    `reserveSequence, ${name}: ${((performance.now() - t0) / n).toFixed(2)} ms each (${n} in a row)`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'coapkit-bench-seq-'));
try {
  const q = await SqliteStore.open(dir);
  await reserve(`SQLite ${q.binding}, synchronous=FULL`, q, 500);
  await q.close();
} catch (err) {
  console.log(`reserveSequence, SQLite: not measured (${(err as Error).message})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const pg = await startPostgres();
if (typeof pg === 'string') console.log(`reserveSequence, PostgreSQL: not measured (${pg})`);
else {
  try {
    const s = await PostgresStore.open(pg.url);
    await reserve('PostgreSQL 15, one connection', s, 2000);
    await s.close();
  } finally {
    await pg.stop();
  }
}
