/**
 * The durable store's write path (issue 14) without sockets: DynamicStore
 * through a GroupCommitter on the memory store (with failure injection), and
 * the SQLite and PostgreSQL stores' own contract (load what was applied,
 * blobs, refusal of foreign files).
 */

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { decodeStoredOptions, encodeStoredOptions } from '../../src/cli/serve-store.js';
import type { CoapOption } from '../../src/codec/message.js';
import { encodeUint } from '../../src/codec/options.js';
import { ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { DynamicStore, type StoreRequest, type StoreResponse } from '../../src/server/dynamic-store.js';
import { GroupCommitter } from '../../src/store/batcher.js';
import { StoreUnavailableError } from '../../src/store/errors.js';
import { MemoryStore } from '../../src/store/memory.js';
import { hasNodeSqlite, SqliteStore } from '../../src/store/sqlite.js';
import type { StateStore, StoreChange } from '../../src/store/types.js';

function req(method: string, path: string, payload = '', options: CoapOption[] = []): StoreRequest {
  return { method, path, payload: Buffer.from(payload), options };
}
const cf = (n: number): CoapOption => ({ number: OptionNumber.ContentFormat, value: encodeUint(n) });

/** A store that counts transactions. */
class CountingStore extends MemoryStore {
  batches: number[] = [];
  override async apply(changes: readonly StoreChange[]): Promise<void> {
    this.batches.push(changes.length);
    return super.apply(changes);
  }
}

function durable(store: StateStore): { dyn: DynamicStore; committer: GroupCommitter } {
  const dyn = new DynamicStore({ builtins: false });
  const committer = new GroupCommitter(store);
  dyn.attachStore(committer);
  return { dyn, committer };
}

describe('DynamicStore write path', () => {
  test('a write is answered once committed; writes of one tick share one transaction', async () => {
    const store = new CountingStore();
    const { dyn } = durable(store);
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => dyn.handleDurably(req('PUT', `/r${i}`, `v${i}`, [cf(0)]))),
    );
    for (const a of answers) assert.equal(a.code, ResponseCode.Created);
    assert.equal(store.batches.length, 1, 'one transaction for 50 PUTs of one tick');
    const snap = await store.load();
    assert.equal(snap.resources.length, 50);
    assert.equal(snap.resources[7]!.path, '/r7', 'creation order kept');
    assert.deepEqual(snap.resources[7]!.etag, dyn.get('/r7')!.etag);
  });

  test('a read never waits: GET is synchronous while the commit is pending', async () => {
    const { dyn } = durable(new MemoryStore());
    const pending = dyn.handleDurably(req('PUT', '/a', 'x'));
    assert.ok(pending instanceof Promise);
    const g = dyn.handle(req('GET', '/a'));
    assert.ok(!(g instanceof Promise));
    await pending;
  });

  test('a store that cannot commit: 5.03, the change undone, reads keep working', async () => {
    const store = new MemoryStore();
    const { dyn } = durable(store);
    assert.equal((await dyn.handleDurably(req('PUT', '/keep', 'old', [cf(0)]))).code, ResponseCode.Created);
    const col = await dyn.handleDurably(req('POST', '/col', 'e1'));
    assert.equal(col.code, ResponseCode.Created);
    const bytesBefore = dyn.bytes;
    store.failWith = new StoreUnavailableError('disk full');
    const events: string[] = [];
    dyn.on('change', (ev) => events.push(`${ev.kind} ${ev.path}`));
    const results: StoreResponse[] = await Promise.all([
      dyn.handleDurably(req('PUT', '/keep', 'new', [cf(0)])),
      dyn.handleDurably(req('PUT', '/fresh', 'x')),
      dyn.handleDurably(req('POST', '/col', 'e2')),
      dyn.handleDurably(req('DELETE', '/col/1')),
    ]);
    for (const r of results) {
      assert.equal(r.code, ResponseCode.ServiceUnavailable);
      assert.match(String(r.payload), /not stored.*disk full/);
    }
    assert.equal(dyn.get('/keep')!.payload.toString(), 'old', 'replacement undone');
    assert.equal(dyn.has('/fresh'), false, 'creation undone');
    assert.equal(dyn.has('/col/2'), false, 'POST undone');
    assert.equal(dyn.has('/col/1'), true, 'DELETE undone');
    assert.equal(dyn.bytes, bytesBefore, 'byte accounting restored');
    assert.ok(events.includes('updated /keep'), 'observers hear of the restored state');
    const g = dyn.handle(req('GET', '/keep'));
    assert.equal(g.code, ResponseCode.Content);
    store.failWith = undefined;
    const again = await dyn.handleDurably(req('POST', '/col', 'e2'));
    assert.equal(again.code, ResponseCode.Created);
    assert.deepEqual(again.locationPath, ['col', '2'], 'the counter was restored too');
  });

  test('memory copy equals the store after a failure between successes', async () => {
    const store = new MemoryStore();
    const { dyn } = durable(store);
    for (let i = 0; i < 10; i++) await dyn.handleDurably(req('PUT', `/p${i}`, `a${i}`));
    store.failWith = new StoreUnavailableError('gone');
    await Promise.all(Array.from({ length: 10 }, (_, i) => dyn.handleDurably(req('PUT', `/p${i}`, `b${i}`))));
    store.failWith = undefined;
    const snap = await store.load();
    for (const r of snap.resources) assert.deepEqual(dyn.get(r.path)!.payload, r.payload);
    assert.equal(dyn.size, snap.resources.length);
  });

  test('a store slower than the writes: uncommitted bytes are bounded, further writes 5.03', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    class SlowStore extends MemoryStore {
      override async apply(changes: readonly StoreChange[]): Promise<void> {
        await gate;
        return super.apply(changes);
      }
    }
    const dyn = new DynamicStore({ builtins: false });
    const committer = new GroupCommitter(new SlowStore(), { maxPendingBytes: 10_000 });
    dyn.attachStore(committer);
    const waiting: Array<Promise<StoreResponse> | StoreResponse> = [];
    let refused = 0;
    for (let i = 0; i < 100; i++) {
      const r = dyn.handleDurably(req('PUT', '/same', 'x'.repeat(1000)));
      if (r instanceof Promise) waiting.push(r);
      else if (r.code === ResponseCode.ServiceUnavailable) refused++;
    }
    assert.ok(refused > 80, `${refused} refused at once`);
    assert.ok(committer.pendingBytes <= 10_000 + 2000, `${committer.pendingBytes} bytes pending`);
    release();
    for (const r of await Promise.all(waiting))
      assert.ok(r.code === ResponseCode.Created || r.code === ResponseCode.Changed);
    assert.equal(committer.pendingBytes, 0);
  });

  test('loadSnapshot restores resources, ETags and counters', async () => {
    const store = new MemoryStore();
    const { dyn } = durable(store);
    await dyn.handleDurably(req('PUT', '/x', 'hello', [cf(50)]));
    await dyn.handleDurably(req('POST', '/c', '1'));
    const fresh = new DynamicStore({ builtins: false });
    fresh.loadSnapshot(await store.load());
    assert.deepEqual(fresh.get('/x')!.etag, dyn.get('/x')!.etag);
    assert.equal(fresh.get('/x')!.contentFormat, 50);
    fresh.attachStore(new GroupCommitter(store));
    const p = await fresh.handleDurably(req('POST', '/c', '2'));
    assert.deepEqual(p.locationPath, ['c', '2']);
  });

  test('stored options round-trip; damaged bytes are refused', () => {
    const opts: CoapOption[] = [
      { number: 6, value: Buffer.alloc(0) },
      { number: 11, value: Buffer.from('temp') },
      { number: 17, value: Buffer.from([50]) },
    ];
    assert.deepEqual(decodeStoredOptions(encodeStoredOptions(opts)), opts);
    assert.equal(decodeStoredOptions(Buffer.from([0, 11, 0, 9, 1])), undefined);
  });
});

describe('SqliteStore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-sqlite-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const binding of ['node:sqlite', 'better-sqlite3'] as const) {
    test(`${binding}: applies, loads, keeps blobs`, async (t) => {
      if (binding === 'node:sqlite' && !hasNodeSqlite())
        return t.skip(`node:sqlite needs Node 22.13+ (${process.version})`);
      let s: SqliteStore;
      try {
        s = await SqliteStore.open(join(dir, binding.replace(':', '-')), { binding });
      } catch (err) {
        if (binding === 'better-sqlite3' && /cannot load|NODE_MODULE_VERSION/.test((err as Error).message)) {
          return t.skip(`better-sqlite3 is built for another Node: ${(err as Error).message.slice(0, 80)}`);
        }
        throw err;
      }
      assert.equal(s.binding, binding);
      await s.apply([
        {
          op: 'putResource',
          resource: {
            path: '/a',
            payload: Buffer.from('x'),
            contentFormat: undefined,
            etag: Buffer.alloc(8, 1),
            maxAge: 30,
            created: 1,
            modified: 2,
            order: 1,
          },
        },
        { op: 'putCounter', path: '/c', next: 4 },
        {
          op: 'putResource',
          resource: {
            path: '/b',
            payload: Buffer.alloc(0),
            contentFormat: 0,
            etag: Buffer.alloc(8),
            maxAge: undefined,
            created: 3,
            modified: 3,
            order: 2,
          },
        },
        { op: 'deleteResource', path: '/b' },
      ]);
      await s.saveState('dtls.sessions', Buffer.from([1, 2, 3]));
      await s.close();
      const again = await SqliteStore.open(join(dir, binding.replace(':', '-')), { binding });
      try {
        const snap = await again.load();
        assert.equal(snap.resources.length, 1);
        assert.equal(snap.resources[0]!.maxAge, 30);
        assert.equal(snap.resources[0]!.contentFormat, undefined);
        assert.deepEqual(snap.counters, [['/c', 4]]);
        assert.deepEqual(await again.loadState('dtls.sessions'), Buffer.from([1, 2, 3]));
        assert.equal(await again.loadState('nothing'), undefined);
      } finally {
        await again.close();
      }
    });
  }
});
