import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DedupStore } from '../../src/message-layer/dedup.js';

const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

test('DedupStore: remember / lookup / expiry', () => {
  const d = new DedupStore();
  assert.equal(d.lookup(1, 0), undefined);
  d.remember(1, bytes(5, 0xaa), 100, 0);
  d.remember(2, null, 100, 0);
  assert.deepEqual(d.lookup(1, 50), bytes(5, 0xaa));
  assert.equal(d.lookup(2, 50), null, 'remembered without reply');
  assert.equal(d.size, 2);
  // Expired at exactly expiresAt.
  assert.equal(d.lookup(1, 100), undefined);
  d.expire(100);
  assert.equal(d.size, 0);
  assert.equal(d.lookup(2, 0), undefined, 'expired records are gone');
});

test('DedupStore: zero-length reply is distinct from no reply', () => {
  const d = new DedupStore();
  d.remember(7, Buffer.alloc(0), 10, 0);
  assert.deepEqual(d.lookup(7, 1), Buffer.alloc(0));
});

test('DedupStore: re-remembering a key replaces its reply and the old record does not delete it', () => {
  const d = new DedupStore();
  d.remember(3, bytes(4, 1), 10, 0);
  d.remember(3, bytes(4, 2), 20, 1);
  assert.deepEqual(d.lookup(3, 15), bytes(4, 2));
  d.expire(12); // pops the first record only
  assert.deepEqual(d.lookup(3, 15), bytes(4, 2));
  assert.equal(d.size, 1);
});

test('DedupStore: the ring grows and keeps every live entry (and its bytes)', () => {
  const d = new DedupStore({ initialBytes: 1024 });
  const start = d.capacity;
  for (let i = 0; i < 5000; i++) d.remember(i, bytes(1 + (i % 60), i & 0xff), 1e9, 0);
  assert.ok(d.capacity > start, 'ring grew');
  assert.equal(d.size, 5000);
  assert.equal(d.evictedEarly, 0);
  for (let i = 0; i < 5000; i++) assert.deepEqual(d.lookup(i, 1), bytes(1 + (i % 60), i & 0xff), `key ${i}`);
});

test('DedupStore: growth after wrap-around (padding records) keeps entries', () => {
  const d = new DedupStore({ initialBytes: 1024, maxBytes: 1 << 20 });
  let t = 0;
  // Fill and expire in waves so head wraps past the physical end, then force growth.
  for (let wave = 0; wave < 20; wave++) {
    for (let i = 0; i < 10; i++) d.remember(wave * 100 + i, bytes(37, i), t + 5, t);
    t += 10;
  }
  for (let i = 0; i < 2000; i++) d.remember(100_000 + i, bytes(50, i & 0xff), t + 1e6, t);
  for (let i = 0; i < 2000; i++) assert.deepEqual(d.lookup(100_000 + i, t), bytes(50, i & 0xff));
});

test('DedupStore: keys with the same low 32 bits stay distinct through lookup, expiry and eviction', () => {
  const d = new DedupStore({ maxEntries: 3 });
  const k = (hi: number) => hi * 2 ** 32 + 0x1234;
  d.remember(k(0), bytes(3, 0), 10, 0);
  d.remember(k(1), bytes(3, 1), 20, 0);
  d.remember(k(2), null, 30, 0);
  assert.deepEqual(d.lookup(k(0), 1), bytes(3, 0));
  assert.deepEqual(d.lookup(k(1), 1), bytes(3, 1));
  assert.equal(d.lookup(k(2), 1), null);
  assert.equal(d.lookup(k(3), 1), undefined, 'same tag, never remembered');
  d.expire(10);
  assert.equal(d.lookup(k(0), 11), undefined);
  assert.deepEqual(d.lookup(k(1), 11), bytes(3, 1), 'expiring one key keeps its tag-twin');
  d.remember(k(4), bytes(2, 4), 40, 11);
  d.remember(k(5), bytes(2, 5), 50, 11); // maxEntries 3: evicts k(1)
  assert.equal(d.lookup(k(1), 12), undefined);
  assert.equal(d.lookup(k(2), 12), null);
  assert.deepEqual(d.lookup(k(5), 12), bytes(2, 5));
  assert.equal(d.size, 3);
});

test('DedupStore: maxBytes bounds memory by evicting the oldest early', () => {
  const d = new DedupStore({ initialBytes: 1024, maxBytes: 4096 });
  for (let i = 0; i < 1000; i++) d.remember(i, bytes(30, 1), 1e9, 0);
  assert.equal(d.capacity, 4096);
  assert.ok(d.evictedEarly > 0);
  assert.ok(d.size < 1000 && d.size > 0);
  assert.equal(d.lookup(0, 1), undefined, 'oldest evicted');
  assert.deepEqual(d.lookup(999, 1), bytes(30, 1), 'newest kept');
});

test('DedupStore: maxEntries bounds the number of entries', () => {
  const d = new DedupStore({ maxEntries: 10 });
  for (let i = 0; i < 50; i++) d.remember(i, null, 1e9, 0);
  assert.equal(d.size, 10);
  assert.equal(d.lookup(39, 0), undefined);
  assert.equal(d.lookup(40, 0), null);
});

test('DedupStore: a reply too large for maxBytes is refused instead of looping forever', () => {
  const d = new DedupStore({ initialBytes: 1024, maxBytes: 1024 });
  d.remember(1, bytes(10, 1), 1e9, 0);
  d.remember(2, bytes(900, 2), 1e9, 0); // needs 2 * 920 > 1024
  assert.equal(d.lookup(2, 0), undefined);
  assert.deepEqual(d.lookup(1, 0), bytes(10, 1));
});

test('DedupStore: property — behaves like a Map with expiry (no early eviction)', () => {
  type Op =
    | { kind: 'remember'; key: number; len: number | null; ttl: number }
    | { kind: 'lookup'; key: number }
    | { kind: 'tick'; dt: number }
    | { kind: 'expire' };
  // Keys share their low 32 bits (the table's tag) across several high parts, as
  // (peer id x 65536 + Message ID) keys do once peer ids pass 65536.
  const keyArb = fc
    .tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 3 }))
    .map(([lo, hi]) => hi * 2 ** 32 + lo);
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      kind: fc.constant('remember' as const),
      key: keyArb,
      len: fc.option(fc.integer({ min: 0, max: 200 }), { nil: null }),
      ttl: fc.integer({ min: 1, max: 100 }),
    }),
    fc.record({ kind: fc.constant('lookup' as const), key: keyArb }),
    fc.record({ kind: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 30 }) }),
    fc.record({ kind: fc.constant('expire' as const) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const d = new DedupStore({ initialBytes: 1024, maxBytes: 1 << 22 });
      const model = new Map<number, { reply: Buffer | null; expiresAt: number }>();
      let now = 0;
      let seq = 0;
      for (const o of ops) {
        if (o.kind === 'tick') now += o.dt;
        else if (o.kind === 'expire') d.expire(now);
        else if (o.kind === 'remember') {
          // Lifetimes are the same for every record in the real layer; keep
          // insertion order == expiry order like the store assumes.
          const reply = o.len === null ? null : Buffer.alloc(o.len, seq++ & 0xff);
          const expiresAt = now + 50;
          d.remember(o.key, reply, expiresAt, now);
          model.set(o.key, { reply, expiresAt });
        } else {
          const m = model.get(o.key);
          const expected = m === undefined || m.expiresAt <= now ? undefined : m.reply;
          const got = d.lookup(o.key, now);
          if (expected === undefined) assert.equal(got, undefined);
          else if (expected === null) assert.equal(got, null);
          else assert.deepEqual(got && Buffer.from(got), expected);
        }
      }
      assert.equal(d.evictedEarly, 0);
    }),
    { numRuns: 300 },
  );
});

test('DedupStore: memory per remembered exchange (200k exchanges, 20-byte replies)', () => {
  const n = 200_000;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  const d = new DedupStore();
  const reply = Buffer.alloc(20, 0x60);
  for (let i = 0; i < n; i++) d.remember(65536 + i * 7, reply, 1e12, 0);
  gc?.();
  const after = process.memoryUsage();
  assert.equal(d.size, n);
  // Everything lives in typed arrays: the ring (records, 8-byte aligned) and the table
  // (8 bytes per slot, at most half full, capacity a power of two).
  const ringPerEntry = d.capacity / n;
  const tablePerEntry = d.tableBytes / n;
  assert.equal(d.tableBytes, 8 * 2 ** Math.ceil(Math.log2(2 * n)), 'table: 8 B per slot, load <= 1/2');
  const computed = ringPerEntry + tablePerEntry;
  const measured = (after.arrayBuffers - before.arrayBuffers) / n;
  console.log(
    `# dedup memory: ring ${ringPerEntry.toFixed(1)} B/exchange (capacity ${d.capacity}), ` +
      `table ${tablePerEntry.toFixed(1)} B/exchange, computed total ${computed.toFixed(1)} B, ` +
      `measured (arrayBuffers) ${measured.toFixed(1)} B, heap Δ ${((after.heapUsed - before.heapUsed) / n).toFixed(1)} B` +
      `${gc ? '' : ' (no --expose-gc: approximate)'}`,
  );
  assert.ok(computed <= 120, `computed ${computed.toFixed(1)} B per exchange exceeds 120`);
  if (gc) assert.ok(measured <= 130, 'measured bytes per exchange');
});

test('DedupStore: shrink() gives the ring and table back after a burst and keeps live entries', () => {
  const d = new DedupStore({ initialBytes: 64 * 1024 });
  const reply = Buffer.alloc(40, 7);
  for (let i = 0; i < 100_000; i++) d.remember(i, reply, 1000, 0);
  for (let i = 0; i < 10; i++) d.remember(1e9 + i, Buffer.from([i]), 5000, 0);
  const bigRing = d.capacity;
  const bigTable = d.tableBytes;
  assert.ok(bigRing >= 4 * 1024 * 1024 && bigTable >= 1024 * 1024);
  assert.equal(d.shrink(500), false, 'nothing to give back while the burst is live');
  assert.equal(d.shrink(2000), true);
  assert.equal(d.capacity, 64 * 1024);
  assert.ok(d.tableBytes <= 8 * 1024, `table ${d.tableBytes} bytes`);
  assert.equal(d.size, 10);
  for (let i = 0; i < 10; i++) assert.deepEqual(d.lookup(1e9 + i, 2000), Buffer.from([i]));
  assert.equal(d.lookup(5, 2000), undefined);
  // Still a working store afterwards.
  for (let i = 0; i < 5000; i++) d.remember(i, reply, 9000, 2000);
  assert.deepEqual(d.lookup(4999, 2001), reply);
  assert.deepEqual(d.lookup(1e9 + 3, 2001), Buffer.from([3]));
});
