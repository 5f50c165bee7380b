/**
 * Real UDP on loopback through a lossy proxy: retransmission and
 * deduplication end to end (RFC 7252 §4.2, §4.5).
 */
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { after, before, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { CoapServer } from '../../src/server/server.js';
import { LossyProxy, type LossyProxyOptions, seeded } from '../helpers/lossy-proxy.js';

const T = { ackTimeout: 40, ackRandomFactor: 1.5, maxRetransmit: 4 };

let server: CoapServer;
let port: number;
let postCalls = 0;
let getCalls = 0;
const slowCalls = new Map<string, number>();

before(async () => {
  server = new CoapServer({ transmission: T, separateResponseDelayMs: 30 });
  server.post('/count', (req) => {
    postCalls++;
    return { payload: `n=${postCalls} body=${req.text()}` };
  });
  server.get('/echo', (req) => {
    getCalls++;
    return req.query.join('&');
  });
  server.get('/slow', async (req) => {
    const k = req.query.join('&');
    slowCalls.set(k, (slowCalls.get(k) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 80));
    return `slow ${k}`;
  });
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  port = ep.transport.localAddress().port;
});
after(async () => {
  await server.close();
});

async function withProxy<R>(
  opts: Omit<LossyProxyOptions, 'target'>,
  fn: (proxy: LossyProxy, client: CoapClient) => Promise<R>,
  clientTransmission: Record<string, number> = T,
): Promise<R> {
  const proxy = await LossyProxy.create({ ...opts, target: { address: '127.0.0.1', port } });
  const client = new CoapClient({ transmission: clientTransmission });
  try {
    return await fn(proxy, client);
  } finally {
    await client.close();
    await proxy.close();
  }
}

test('a retransmitted POST (response lost) runs its handler exactly once and the reply is replayed', async () => {
  postCalls = 0;
  await withProxy({ drop: (d) => d.dir === 'down' && d.index < 3 }, async (proxy, client) => {
    const res = await client.post(`coap://127.0.0.1:${proxy.port}/count`, { payload: 'x', timeout: 5000 });
    assert.equal(res.codeText, '2.04 Changed');
    assert.equal(res.text(), 'n=1 body=x');
    assert.equal(postCalls, 1, 'handler ran once');
    const ups = proxy.stats.log.filter((d) => d.dir === 'up');
    assert.ok(ups.length >= 2, 'the request was retransmitted');
    for (const u of ups) assert.deepEqual(u.data, ups[0]!.data, 'same bytes, same MID');
    const downs = proxy.stats.log.filter((d) => d.dir === 'down');
    for (const d of downs) assert.deepEqual(d.data, downs[0]!.data, 'replayed response bytes are identical');
  });
});

test('a lost request is retransmitted; the handler still runs once', async () => {
  postCalls = 0;
  await withProxy({ drop: (d) => d.dir === 'up' && d.index < 2 }, async (proxy, client) => {
    const res = await client.post(`coap://127.0.0.1:${proxy.port}/count`, { payload: 'y', timeout: 5000 });
    assert.equal(res.text(), 'n=1 body=y');
    assert.equal(postCalls, 1);
  });
});

test('100 requests over 30% loss in both directions all complete (seeded)', async () => {
  const rnd = seeded(0xc0a9);
  getCalls = 0;
  const losses = new Map<string, number>();
  const t = { ackTimeout: 20, ackRandomFactor: 1.5, maxRetransmit: 8, nstart: 100 };
  await withProxy(
    {
      // 30% loss, but no datagram is lost more than 3 times (bounds the test's duration).
      drop: (d) => {
        const k = d.data.toString('hex');
        const n = losses.get(k) ?? 0;
        if (n >= 3 || rnd() >= 0.3) return false;
        losses.set(k, n + 1);
        return true;
      },
    },
    async (proxy, client) => {
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          client.get(`coap://127.0.0.1:${proxy.port}/echo?i=${i}`, { timeout: 60_000 }),
        ),
      );
      for (const [i, r] of results.entries()) assert.equal(r.text(), `i=${i}`);
      assert.equal(getCalls, 100, 'each request handled exactly once despite retransmissions');
      assert.ok(proxy.stats.dropped > 30, `dropped ${proxy.stats.dropped}`);
    },
    t,
  );
});

test('duplicated datagrams: requests are answered from the dedup memory, separate responses are ACKed twice', async () => {
  getCalls = 0;
  slowCalls.clear();
  let dupEvents = 0;
  const onDup = () => {
    dupEvents++;
  };
  dc.subscribe('coapkit:message:duplicate', onDup);
  try {
    await withProxy({ duplicate: () => true }, async (proxy, client) => {
      for (let i = 0; i < 5; i++) {
        const r = await client.get(`coap://127.0.0.1:${proxy.port}/echo?d=${i}`, { timeout: 5000 });
        assert.equal(r.text(), `d=${i}`);
      }
      assert.equal(getCalls, 5);
      const slow = await client.get(`coap://127.0.0.1:${proxy.port}/slow?s=1`, { timeout: 5000 });
      assert.equal(slow.text(), 'slow s=1');
      assert.equal(slow.piggybacked, false, 'separate response');
      assert.equal(slowCalls.get('s=1'), 1);
      // The last duplicates may still be on their way (a busy machine): wait for them, 10 s at most.
      for (let i = 0; i < 400 && dupEvents < 6; i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(dupEvents >= 6, `duplicates seen by both ends: ${dupEvents}`);
    });
  } finally {
    dc.unsubscribe('coapkit:message:duplicate', onDup);
  }
});

test('delayed, reordered and duplicated traffic with parallel requests (NSTART=4) still matches by token', async () => {
  const rnd = seeded(7);
  slowCalls.clear();
  await withProxy(
    {
      delay: () => Math.floor(rnd() * 30),
      reorder: () => rnd() < 0.3,
      duplicate: () => rnd() < 0.2,
      drop: () => rnd() < 0.1,
    },
    async (proxy, client) => {
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          client.get(`coap://127.0.0.1:${proxy.port}/${i % 3 === 0 ? 'slow' : 'echo'}?k=${i}`, {
            timeout: 30_000,
          }),
        ),
      );
      for (const [i, r] of results.entries()) assert.equal(r.text(), i % 3 === 0 ? `slow k=${i}` : `k=${i}`);
      for (const [k, n] of slowCalls) assert.equal(n, 1, `slow handler for ${k} ran once`);
    },
    { ...T, maxRetransmit: 8, nstart: 4 },
  );
});

test('IPv6 loopback through the lossy proxy: a lost response is replayed, the handler runs once', async (t) => {
  const server6 = new CoapServer({ transmission: T });
  let calls = 0;
  server6.post('/once', () => {
    calls++;
    return `calls=${calls}`;
  });
  let ep: Awaited<ReturnType<CoapServer['listen']>>;
  try {
    ep = await server6.listen({ host: '::1', port: 0 });
  } catch {
    await server6.close();
    t.skip('no IPv6 loopback');
    return;
  }
  const proxy = await LossyProxy.create({
    host: '::1',
    target: { address: '::1', port: ep.transport.localAddress().port },
    drop: (d) => d.dir === 'down' && d.index < 3,
  });
  const client = new CoapClient({ transmission: T });
  try {
    const r = await client.post(`coap://[::1]:${proxy.port}/once`, { payload: 'x', timeout: 5000 });
    assert.equal(r.text(), 'calls=1');
    assert.equal(calls, 1);
    assert.ok(proxy.stats.dropped >= 1);
  } finally {
    await client.close();
    await proxy.close();
    await server6.close();
  }
});
