import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DedupStore } from '../../src/message-layer/dedup.js';

// The open-addressing table inside DedupStore against a Map model: with bounds
// large enough that nothing is evicted early, lookup() must answer exactly what
// the model remembers (latest reply per key, undefined once expired).
test('DedupStore agrees with a Map model (inserts, replacements, expiry, table growth)', () => {
  const op = fc.oneof(
    fc.record({
      kind: fc.constant('remember' as const),
      // Few distinct keys (collisions, replacements) plus large ones like peerId * 65536 + mid.
      key: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 2 ** 40 })),
      reply: fc.option(fc.uint8Array({ maxLength: 20 }), { nil: null }),
      ttl: fc.integer({ min: 1, max: 50 }),
    }),
    fc.record({ kind: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 20 }) }),
    fc.record({ kind: fc.constant('lookup' as const), key: fc.integer({ min: 0, max: 40 }) }),
    fc.record({ kind: fc.constant('shrink' as const) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 3000 }), (ops) => {
      const d = new DedupStore({ initialBytes: 1024, maxBytes: 1 << 24, maxEntries: 1e6 });
      const model = new Map<number, { reply: Uint8Array | null; expiresAt: number }>();
      let now = 0;
      const check = (key: number) => {
        const m = model.get(key);
        const want = m === undefined || m.expiresAt <= now ? undefined : m.reply;
        const got = d.lookup(key, now);
        if (want === undefined || want === null) assert.equal(got, want, `key ${key} at ${now}`);
        else assert.deepEqual(got && new Uint8Array(got), want, `key ${key} at ${now}`);
      };
      for (const o of ops) {
        if (o.kind === 'remember') {
          d.remember(o.key, o.reply, now + o.ttl, now);
          model.set(o.key, { reply: o.reply, expiresAt: now + o.ttl });
        } else if (o.kind === 'tick') {
          now += o.dt;
          d.expire(now);
        } else if (o.kind === 'shrink') d.shrink(now);
        else check(o.key);
      }
      for (const key of model.keys()) check(key);
      let live = 0;
      for (const m of model.values()) if (m.expiresAt > now) live++;
      // Records expire in insertion order, so a few expired ones may still be counted.
      assert.ok(d.size >= live && d.size <= model.size, `size ${d.size}, live ${live}, model ${model.size}`);
    }),
    { numRuns: 150 },
  );
});

test('DedupStore: many keys with eviction by maxEntries keep the newest and free table slots', () => {
  const d = new DedupStore({ maxEntries: 5000 });
  for (let i = 0; i < 100_000; i++) d.remember(65536 + i * 7919, Buffer.from([i & 0xff]), 1e12, 0);
  assert.equal(d.size, 5000);
  for (let i = 100_000 - 5000; i < 100_000; i++) {
    assert.deepEqual(d.lookup(65536 + i * 7919, 1), Buffer.from([i & 0xff]));
  }
  for (let i = 0; i < 100_000 - 5000; i += 97) assert.equal(d.lookup(65536 + i * 7919, 1), undefined);
});
