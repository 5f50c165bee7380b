/**
 * Shared state on PostgreSQL (issue 14 stretch, for the fleet of issue 15): two
 * `coapkit serve` nodes on one database. A resource written through node 2 is
 * read from node 1; an observer registered on node 1 is notified when the
 * resource changes (or is deleted) through node 2 (LISTEN/NOTIFY).
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type RunningServe, startServe } from '../../src/cli/commands/serve.js';
import { CoapClient } from '../../src/client/client.js';
import { ResponseCode } from '../../src/constants/codes.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { until } from '../helpers/timing.js';

let pg: TestPostgres | string;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  if (typeof pg !== 'string') await pg.stop();
});

function node(url: string): Promise<RunningServe> {
  return startServe({
    host: '127.0.0.1',
    port: 0,
    securePort: 0,
    keys: new Map(),
    maxResources: 100,
    maxSize: 1 << 16,
    maxAge: 60,
    quiet: true,
    storeUrl: url,
  });
}

test('an observer on node 1 is notified of a change made through node 2', async (t) => {
  if (typeof pg === 'string') return t.skip(pg);
  const n1 = await node(pg.url);
  const n2 = await node(pg.url);
  const client = new CoapClient();
  try {
    const u1 = n1.listeners[0]!.url;
    const u2 = n2.listeners[0]!.url;
    assert.equal(
      (await client.put(`${u1}/fleet/t`, { payload: '20', contentFormat: 0 })).code,
      ResponseCode.Created,
    );
    // Node 2 learns of it (NOTIFY), and serves it from its memory.
    await until(() => n2.store.has('/fleet/t'), 'node 2 has the resource written through node 1');
    assert.equal((await client.get(`${u2}/fleet/t`)).text(), '20');
    const got: Array<[number, string]> = [];
    const obs = client.observe(`${u1}/fleet/t`);
    for await (const n of obs) {
      got.push([n.code, n.text()]);
      if (got.length === 1) await client.put(`${u2}/fleet/t`, { payload: '21', contentFormat: 0 });
      if (got.length === 2) await client.delete(`${u2}/fleet/t`);
    }
    assert.deepEqual(got, [
      [ResponseCode.Content, '20'],
      [ResponseCode.Content, '21'],
      [ResponseCode.NotFound, ''],
    ]);
  } finally {
    await client.close();
    await n1.close();
    await n2.close();
  }
});

test('concurrent POSTs to one collection through two nodes: no acknowledged entry overwritten', async (t) => {
  if (typeof pg === 'string') return t.skip(pg);
  const db = pg;
  const url = db.createDatabase('posts');
  const n1 = await node(url);
  const n2 = await node(url);
  const client = new CoapClient();
  try {
    const bases = [n1.listeners[0]!.url, n2.listeners[0]!.url];
    const acked = new Map<string, string>();
    let refused = 0;
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const payload = `entry-${i}`;
        const r = await client.post(`${bases[i % 2]}/col`, { payload });
        if (r.code === ResponseCode.Created) {
          const where = `/${r.options
            .filter((o) => o.number === 8)
            .map((o) => o.value.toString())
            .join('/')}`;
          assert.ok(!acked.has(where), `${where} acknowledged twice`);
          acked.set(where, payload);
        } else {
          assert.equal(
            r.code,
            ResponseCode.ServiceUnavailable,
            'a POST that lost the race is refused, not merged',
          );
          refused++;
        }
      }),
    );
    assert.ok(acked.size > 0);
    const rows = db.psql(
      "SELECT path || ' ' || convert_from(payload, 'UTF8') FROM coapkit_resources",
      'posts',
    );
    const stored = new Map(
      rows
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string]),
    );
    for (const [path, payload] of acked) assert.equal(stored.get(path), payload, `${path} kept its bytes`);
    t.diagnostic(`${acked.size} acknowledged, ${refused} refused (5.03)`);
  } finally {
    await client.close();
    await n1.close();
    await n2.close();
  }
});

test('a node whose LISTEN connection dropped catches up with what it missed', async (t) => {
  if (typeof pg === 'string') return t.skip(pg);
  const db = pg;
  const url = db.createDatabase('resync');
  const n1 = await node(url);
  const n2 = await node(url);
  const client = new CoapClient();
  try {
    const u1 = n1.listeners[0]!.url;
    // Drop every LISTEN connection, then write through node 1 while node 2 is not listening.
    db.psql(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'resync' AND query LIKE 'LISTEN%'",
      'resync',
    );
    assert.equal((await client.put(`${u1}/missed`, { payload: 'm1' })).code, ResponseCode.Created);
    await until(() => n2.store.get('/missed')?.payload.toString() === 'm1', 'node 2 caught up', 20_000);
  } finally {
    await client.close();
    await n1.close();
    await n2.close();
  }
});
