/**
 * OSCORE sender sequence numbers in reserved ranges (RFC 8613 §7.5): a context
 * with a SequenceSource takes numbers only from ranges the source committed,
 * asks for the next range when the current one is half used, and fails one
 * message with OscoreSequenceUnavailableError (never waits, never reuses) when
 * a range runs out first. The store operation behind it, reserveSequence, on
 * the memory and SQLite stores (PostgreSQL: test/integration/oscore-seq-store.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  InvalidArgumentError,
  OscoreSequenceError,
  OscoreSequenceUnavailableError,
} from '../../src/errors.js';
import { OscoreContext, type SequenceSource } from '../../src/oscore/context.js';
import { StoreFormatError } from '../../src/store/errors.js';
import { MemoryStore } from '../../src/store/memory.js';
import { hasNodeSqlite, SqliteStore } from '../../src/store/sqlite.js';

const SECRET = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');

function ctx(source: SequenceSource, margin = 8): OscoreContext {
  return new OscoreContext({
    masterSecret: SECRET,
    senderId: Buffer.from([1]),
    recipientId: Buffer.from([2]),
    sequenceSource: source,
    sequenceMargin: margin,
  });
}

/** A source whose reservations are answered by hand: `calls` lists the counts asked for. */
class HandSource implements SequenceSource {
  next = 0;
  calls: Array<{ count: number; resolve: () => void; reject: (e: Error) => void }> = [];
  reserve(count: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.calls.push({
        count,
        resolve: () => {
          const first = this.next;
          this.next += count;
          resolve(first);
        },
        reject,
      });
    });
  }
  /** Answers the oldest open call and lets its continuation run. */
  async answer(): Promise<void> {
    const c = this.calls.shift();
    assert.ok(c, 'a reservation is pending');
    c.resolve();
    await new Promise((r) => setImmediate(r));
  }
}

/** A context on a HandSource that has answered its first reservation. */
async function readyCtx(margin: number): Promise<{ src: HandSource; c: OscoreContext }> {
  const src = new HandSource();
  const c = ctx(src, margin);
  const ready = c.ready();
  await src.answer();
  await ready;
  return { src, c };
}

/** A source reserving from a store, like `coapkit serve` does. */
function storeSource(store: MemoryStore | SqliteStore, name: string, atLeast = 0): SequenceSource {
  return { reserve: (count) => store.reserveSequence(name, count, atLeast) };
}

describe('OscoreContext with a SequenceSource', () => {
  it('uses no number before ready(): the first message fails with the typed error and starts a reservation', async () => {
    const src = new HandSource();
    const c = ctx(src);
    assert.equal(c.replayKnown, false, 'a shared context starts with an unknown replay state');
    assert.throws(
      () => c.nextSequenceNumber(),
      (e: unknown) => e instanceof OscoreSequenceUnavailableError && e instanceof OscoreSequenceError,
    );
    assert.equal(src.calls.length, 1);
    const ready = c.ready();
    await src.answer();
    await ready;
    assert.equal(c.nextSequenceNumber(), 0);
    assert.equal(src.calls.length, 0);
  });

  it('asks for the next range at half use, switches to it, and fails one message when it is late', async () => {
    const { src, c } = await readyCtx(8);
    const got: number[] = [];
    for (let i = 0; i < 4; i++) got.push(c.nextSequenceNumber());
    assert.equal(src.calls.length, 0, 'not asked before half the range is used');
    got.push(c.nextSequenceNumber());
    assert.equal(src.calls.length, 1, 'asked once half the range is used');
    for (let i = 0; i < 3; i++) got.push(c.nextSequenceNumber());
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6, 7]);
    // Another caller takes the next range first: ours will not follow on.
    src.next = 100;
    assert.throws(() => c.nextSequenceNumber(), OscoreSequenceUnavailableError);
    assert.throws(() => c.nextSequenceNumber(), OscoreSequenceUnavailableError);
    assert.equal(src.calls.length, 1, 'one reservation at a time');
    assert.equal(c.sequenceUnavailable, 2);
    await src.answer();
    assert.equal(c.nextSequenceNumber(), 100, 'the new range starts where the source said');
    // It ran dry once: the following ranges are twice as large.
    for (let i = 0; i < 4; i++) c.nextSequenceNumber();
    assert.equal(src.calls.length, 1);
    assert.equal(src.calls[0]!.count, 16);
  });

  it('a failed reservation is retried by the next message; the error is the cause', async () => {
    const { src, c } = await readyCtx(4);
    for (let i = 0; i < 3; i++) c.nextSequenceNumber();
    assert.equal(src.calls.length, 1, 'asked at half use');
    src.calls.shift()!.reject(new Error('database unreachable'));
    await new Promise((r) => setImmediate(r));
    assert.equal(c.nextSequenceNumber(), 3, 'the range still had a number');
    assert.equal(src.calls.length, 1, 'that message asked again');
    src.calls.shift()!.reject(new Error('database unreachable'));
    await new Promise((r) => setImmediate(r));
    assert.throws(
      () => c.nextSequenceNumber(),
      (e: unknown) =>
        e instanceof OscoreSequenceUnavailableError &&
        /database unreachable/.test(e.message) &&
        (e.cause as Error).message === 'database unreachable',
    );
    assert.equal(src.calls.length, 1, 'and the failed message asked again');
    await src.answer();
    assert.equal(c.nextSequenceNumber(), 4);
  });

  it('ready() resolves when a message began the range it waited for', async () => {
    const src = new HandSource();
    const c = ctx(src);
    const ready = c.ready();
    src.calls.shift()!.resolve();
    // The range arrived; a message takes it before ready() continues (one microtask later).
    await null;
    assert.equal(c.nextSequenceNumber(), 0);
    await ready;
    assert.equal(c.nextSequenceNumber(), 1);
  });

  it('ready() rejects with OscoreSequenceError when the source fails', async () => {
    const c = ctx({ reserve: () => Promise.reject(new Error('no store')) });
    await assert.rejects(
      c.ready(),
      (e: unknown) => e instanceof OscoreSequenceError && /no store/.test(String(e)),
    );
    const d = ctx({
      reserve: () => {
        throw new Error('sync failure');
      },
    });
    await assert.rejects(d.ready(), /sync failure/);
  });

  it('refuses a source that answers below a range it already gave', async () => {
    let n = 0;
    const answers = [10, 5];
    const c = ctx({ reserve: async () => answers[n++]! }, 2);
    await c.ready();
    assert.equal(c.nextSequenceNumber(), 10);
    assert.equal(c.nextSequenceNumber(), 11);
    await new Promise((r) => setImmediate(r));
    assert.throws(
      () => c.nextSequenceNumber(),
      (e: unknown) => e instanceof OscoreSequenceUnavailableError && /below 12/.test(e.message),
    );
  });

  it('stops at 2^40 - 1 (§7.2.1)', async () => {
    const c = ctx({ reserve: async () => 2 ** 40 - 2 }, 8);
    await c.ready();
    assert.equal(c.nextSequenceNumber(), 2 ** 40 - 2);
    assert.equal(c.nextSequenceNumber(), 2 ** 40 - 1);
    assert.throws(() => c.nextSequenceNumber(), OscoreSequenceError);
  });

  it('sequenceStore and sequenceSource exclude each other; ready() is immediate without a source', async () => {
    assert.throws(
      () =>
        new OscoreContext({
          masterSecret: SECRET,
          senderId: Buffer.from([1]),
          recipientId: Buffer.from([2]),
          sequenceSource: { reserve: async () => 0 },
          sequenceStore: { load: () => undefined, save: () => {} },
        }),
      InvalidArgumentError,
    );
    const plain = new OscoreContext({
      masterSecret: SECRET,
      senderId: Buffer.from([1]),
      recipientId: Buffer.from([2]),
    });
    await plain.ready();
    assert.equal(plain.nextSequenceNumber(), 0);
  });

  it('two contexts sharing one name (two servers) get disjoint numbers, interleaved over many refills', async () => {
    const store = new MemoryStore();
    const a = ctx(storeSource(store, '01:'), 4);
    const b = ctx(storeSource(store, '01:'), 4);
    await Promise.all([a.ready(), b.ready()]);
    const seen = new Set<number>();
    let refused = 0;
    // A fixed pseudo-random schedule: which context sends, and when the reservations land.
    let x = 12345;
    const rnd = () => {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      return x / 2 ** 31;
    };
    for (let i = 0; i < 2000; i++) {
      const c = rnd() < 0.5 ? a : b;
      try {
        const n = c.nextSequenceNumber();
        assert.ok(!seen.has(n), `number ${n} given twice`);
        seen.add(n);
      } catch (e) {
        assert.ok(e instanceof OscoreSequenceUnavailableError);
        refused++;
      }
      if (rnd() < 0.3) await new Promise((r) => setImmediate(r));
    }
    assert.ok(seen.size > 1500, `most messages got a number (${seen.size}, ${refused} refused)`);
    assert.ok(a.reservations > 3 && b.reservations > 3, 'both refilled several times');
  });
});

describe('reserveSequence', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-oscseq-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function contract(store: MemoryStore | SqliteStore) {
    assert.equal(await store.reserveSequence('01:37cb', 10), 0);
    assert.equal(await store.reserveSequence('01:37cb', 5), 10);
    assert.equal(await store.reserveSequence('02:', 3), 0, 'each name has its own counter');
    // A FILE.seq being migrated: the range starts at no less than it.
    assert.equal(await store.reserveSequence('01:37cb', 1, 1000), 1000);
    assert.equal(await store.reserveSequence('01:37cb', 1, 7), 1001, 'never below what was given');
    assert.equal((await store.loadState('oscore.seq:01:37cb'))?.toString(), '1002');
    // Many at once: disjoint.
    const firsts = await Promise.all(Array.from({ length: 50 }, () => store.reserveSequence('c', 7)));
    const sorted = [...firsts].sort((p, q) => p - q);
    for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i]! - sorted[i - 1]!, 7);
    // Bad arguments and a counter that is not a number.
    await assert.rejects(store.reserveSequence('c', 0), /count must be/);
    await assert.rejects(store.reserveSequence('', 1), /name must be/);
    await store.saveState('oscore.seq:bad', Buffer.from('12x'));
    await assert.rejects(store.reserveSequence('bad', 1), StoreFormatError);
    assert.equal((await store.loadState('oscore.seq:bad'))?.toString(), '12x', 'left as it was');
  }

  it('memory', async () => {
    await contract(new MemoryStore());
  });

  for (const binding of ['node:sqlite', 'better-sqlite3'] as const) {
    it(`SQLite (${binding}), and the counter survives a reopen`, async (t) => {
      if (binding === 'node:sqlite' && !hasNodeSqlite())
        return t.skip(`node:sqlite needs Node 22.13+ (${process.version})`);
      const where = join(dir, binding.replace(':', '-'));
      let s: SqliteStore;
      try {
        s = await SqliteStore.open(where, { binding });
      } catch (err) {
        if (binding === 'better-sqlite3' && /cannot load|NODE_MODULE_VERSION/.test((err as Error).message))
          return t.skip(`better-sqlite3 is built for another Node: ${(err as Error).message.slice(0, 80)}`);
        throw err;
      }
      try {
        await contract(s);
      } finally {
        await s.close();
      }
      const again = await SqliteStore.open(where, { binding });
      try {
        assert.equal(await again.reserveSequence('01:37cb', 1), 1002);
      } finally {
        await again.close();
      }
    });
  }
});
