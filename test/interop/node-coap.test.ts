/**
 * Interop with node-coap (npm `coap`) in both directions: GET/PUT/POST/DELETE,
 * CON and NON, separate responses, options and payloads.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import coap from 'coap';
import { CoapClient } from '../../src/client/client.js';
import { MessageType } from '../../src/constants/codes.js';
import { CoapServer } from '../../src/server/server.js';

interface NodeCoapResult {
  code: string;
  payload: string;
  options: Array<{ name: string | number; value: unknown }>;
  headers: Record<string, unknown>;
}

describe('node-coap client → coapkit server', () => {
  let server: CoapServer;
  let port: number;
  let agent: InstanceType<typeof coap.Agent>;
  const store = new Map<string, string>();
  const seen: Array<{ method: string; confirmable: boolean; path: string }> = [];

  before(async () => {
    server = new CoapServer({ separateResponseDelayMs: 100 });
    server.get('/store/:k', (req) => {
      seen.push({ method: req.method, confirmable: req.confirmable, path: req.path });
      const v = store.get(req.params.k!);
      return v === undefined ? { code: '4.04' } : { payload: v, contentFormat: 0, etag: Buffer.from('e1') };
    });
    server.put('/store/:k', (req) => {
      seen.push({ method: req.method, confirmable: req.confirmable, path: req.path });
      const existed = store.has(req.params.k!);
      store.set(req.params.k!, req.text());
      return { code: existed ? '2.04' : '2.01' };
    });
    server.post('/store', (req) => {
      seen.push({ method: req.method, confirmable: req.confirmable, path: req.path });
      const k = `k${store.size}`;
      store.set(k, req.text());
      return { code: '2.01', locationPath: ['store', k] };
    });
    server.delete('/store/:k', (req) => {
      seen.push({ method: req.method, confirmable: req.confirmable, path: req.path });
      store.delete(req.params.k!);
      return { code: '2.02' };
    });
    server.get('/slow', async () => {
      await sleep(300);
      return { payload: 'slow', contentFormat: 0 };
    });
    server.get('/q', (req) => req.query.join('&'));
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    port = ep.transport.localAddress().port;
    agent = new coap.Agent({ type: 'udp4' });
  });
  after(async () => {
    agent.close();
    await server.close();
  });

  function nreq(params: Record<string, unknown>, payload?: string): Promise<NodeCoapResult> {
    return new Promise((resolve, reject) => {
      const r = coap.request({ hostname: '127.0.0.1', port, agent, ...params } as never);
      const timer = setTimeout(() => reject(new Error('node-coap request timed out')), 8000);
      r.on(
        'response',
        (res: {
          code: string;
          payload: Buffer;
          options: NodeCoapResult['options'];
          headers: Record<string, unknown>;
        }) => {
          clearTimeout(timer);
          resolve({
            code: res.code,
            payload: res.payload.toString(),
            options: res.options,
            headers: res.headers,
          });
        },
      );
      r.on('error', (e: Error) => {
        clearTimeout(timer);
        reject(e);
      });
      if (payload !== undefined) r.write(payload);
      r.end();
    });
  }

  test('PUT (CON) creates → 2.01, again → 2.04', async () => {
    assert.equal((await nreq({ method: 'PUT', pathname: '/store/a' }, 'alpha')).code, '2.01');
    assert.equal((await nreq({ method: 'PUT', pathname: '/store/a' }, 'alpha2')).code, '2.04');
  });

  test('GET (CON) → 2.05 with payload, Content-Format and ETag', async () => {
    const r = await nreq({ method: 'GET', pathname: '/store/a' });
    assert.equal(r.code, '2.05');
    assert.equal(r.payload, 'alpha2');
    assert.equal(r.headers['Content-Format'], 'text/plain');
    assert.equal(String(r.headers.ETag), 'e1');
  });

  test('POST (CON) → 2.01 with Location-Path', async () => {
    const r = await nreq({ method: 'POST', pathname: '/store' }, 'posted');
    assert.equal(r.code, '2.01');
    const loc = r.options.filter((o) => o.name === 'Location-Path').map((o) => String(o.value));
    assert.equal(loc[0], 'store');
    assert.equal(store.get(loc[1]!), 'posted');
  });

  test('DELETE (CON) → 2.02, then GET → 4.04', async () => {
    assert.equal((await nreq({ method: 'DELETE', pathname: '/store/a' })).code, '2.02');
    assert.equal((await nreq({ method: 'GET', pathname: '/store/a' })).code, '4.04');
  });

  test('NON GET/PUT → responses; the server saw NON requests', async () => {
    seen.length = 0;
    assert.equal(
      (await nreq({ method: 'PUT', pathname: '/store/n', confirmable: false }, 'non')).code,
      '2.01',
    );
    const r = await nreq({ method: 'GET', pathname: '/store/n', confirmable: false });
    assert.equal(r.code, '2.05');
    assert.equal(r.payload, 'non');
    assert.deepEqual(
      seen.map((s) => s.confirmable),
      [false, false],
    );
  });

  test('separate response (slow handler) reaches node-coap', async () => {
    const r = await nreq({ method: 'GET', pathname: '/slow' });
    assert.equal(r.code, '2.05');
    assert.equal(r.payload, 'slow');
  });

  test('Uri-Query options', async () => {
    const r = await nreq({ method: 'GET', pathname: '/q', query: 'a=1&b=2' });
    assert.equal(r.payload, 'a=1&b=2');
  });
});

describe('coapkit client → node-coap server', () => {
  let server: ReturnType<typeof coap.createServer>;
  let base: string;
  let client: CoapClient;
  const store = new Map<string, string>();
  const seen: Array<{ method: string; type: string; token: string }> = [];

  before(async () => {
    server = coap.createServer({ type: 'udp4', piggybackReplyMs: 50 });
    server.on(
      'request',
      (
        req: {
          method: string;
          url: string;
          payload: Buffer;
          _packet: { confirmable: boolean; token: Buffer };
          headers: Record<string, unknown>;
        },
        res: { code: string; setOption: (n: string, v: unknown) => void; end: (p?: string) => void },
      ) => {
        seen.push({
          method: req.method,
          type: req._packet.confirmable ? 'CON' : 'NON',
          token: req._packet.token.toString('hex'),
        });
        const path = req.url.split('?')[0]!;
        if (path === '/slow') {
          setTimeout(() => res.end('slow'), 300);
          return;
        }
        if (path === '/echo-accept') {
          res.setOption('Content-Format', 'application/json');
          res.end(JSON.stringify({ accept: req.headers.Accept ?? null, query: req.url.split('?')[1] ?? '' }));
          return;
        }
        switch (req.method) {
          case 'GET': {
            const v = store.get(path);
            if (v === undefined) {
              res.code = '4.04';
              res.end();
            } else {
              res.setOption('Content-Format', 'text/plain');
              res.end(v);
            }
            return;
          }
          case 'PUT':
            res.code = store.has(path) ? '2.04' : '2.01';
            store.set(path, req.payload.toString());
            res.end();
            return;
          case 'POST':
            store.set(`${path}/new`, req.payload.toString());
            res.code = '2.01';
            res.setOption('Location-Path', [Buffer.from('items'), Buffer.from('new')]);
            res.end();
            return;
          case 'DELETE':
            store.delete(path);
            res.code = '2.02';
            res.end();
            return;
          default:
            res.code = '4.05';
            res.end();
        }
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const addr = (server as unknown as { _sock: { address(): { port: number } } })._sock.address();
    base = `coap://127.0.0.1:${addr.port}`;
    client = new CoapClient({ transmission: { ackTimeout: 500 } });
  });
  after(async () => {
    await client.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('PUT / GET / POST / DELETE (CON) with piggybacked responses', async () => {
    const put = await client.put(`${base}/items/x`, { payload: 'ex', timeout: 5000 });
    assert.equal(put.codeText, '2.01 Created');
    assert.equal(put.piggybacked, true);
    const get = await client.get(`${base}/items/x`, { timeout: 5000 });
    assert.equal(get.codeText, '2.05 Content');
    assert.equal(get.text(), 'ex');
    assert.equal(get.contentFormat, 0);
    const post = await client.post(`${base}/items`, { payload: 'p', timeout: 5000 });
    assert.equal(post.codeText, '2.01 Created', post.text());
    assert.deepEqual(post.locationPath, ['items', 'new']);
    const del = await client.delete(`${base}/items/x`, { timeout: 5000 });
    assert.equal(del.codeText, '2.02 Deleted');
    assert.equal((await client.get(`${base}/items/x`, { timeout: 5000 })).codeText, '4.04 Not Found');
  });

  test('NON requests get responses; node-coap saw NON', async () => {
    seen.length = 0;
    await client.put(`${base}/items/n`, { payload: 'nn', confirmable: false, timeout: 5000 });
    const r = await client.get(`${base}/items/n`, { confirmable: false, timeout: 5000 });
    assert.equal(r.text(), 'nn');
    assert.equal(r.type, MessageType.NON);
    assert.deepEqual(
      seen.map((s) => s.type),
      ['NON', 'NON'],
    );
  });

  test('separate response from node-coap (empty ACK, then CON)', async () => {
    const r = await client.get(`${base}/slow`, { timeout: 5000 });
    assert.equal(r.text(), 'slow');
    assert.equal(r.piggybacked, false);
  });

  test('token, Accept and Uri-Query reach node-coap', async () => {
    seen.length = 0;
    const token = Buffer.from([1, 2, 3, 4, 5]);
    const r = await client.get(`${base}/echo-accept?x=1&y=2`, {
      accept: 'application/json',
      token,
      timeout: 5000,
    });
    assert.deepEqual(r.token, token);
    assert.equal(seen[0]!.token, '0102030405');
    assert.equal(r.contentFormat, 50);
    assert.deepEqual(r.json(), { accept: 'application/json', query: 'x=1&y=2' });
  });

  test('parallel requests (NSTART raised) all complete', async () => {
    const c = new CoapClient({ transmission: { nstart: 8 } });
    try {
      await client.put(`${base}/items/p`, { payload: 'pp', timeout: 5000 });
      const rs = await Promise.all(
        Array.from({ length: 20 }, () => c.get(`${base}/items/p`, { timeout: 5000 })),
      );
      for (const r of rs) assert.equal(r.text(), 'pp');
    } finally {
      await c.close();
    }
  });
});
