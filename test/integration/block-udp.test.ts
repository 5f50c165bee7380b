/** Block-wise transfer with CoapClient and CoapServer over real UDP on loopback. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { BlockProgress } from '../../src/blockwise/common.js';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { CoapClient } from '../../src/client/client.js';
import { ResponseCode } from '../../src/constants/codes.js';
import { CoapServer } from '../../src/server/server.js';

describe('block-wise over UDP loopback', { timeout: 50_000 }, () => {
  const server = new CoapServer({ maxPayloadSize: 4 << 20 });
  const clients: CoapClient[] = [];
  let base = '';
  const bodies = new Map<string, Buffer>();
  before(async () => {
    // Five clients below upload at once from 127.0.0.1: more than the default share of 4 per address.
    enableBlockwise(server, { maxBodySize: 4 << 20, maxTransfersPerAddress: 8 });
    server.put('/r/:name', (req) => {
      const created = !bodies.has(req.params.name!);
      bodies.set(req.params.name!, Buffer.from(req.payload));
      return { code: created ? ResponseCode.Created : ResponseCode.Changed };
    });
    server.get('/r/:name', (req) => {
      const b = bodies.get(req.params.name!);
      return b ? { payload: b, contentFormat: 42 } : { code: '4.04' };
    });
    server.post('/echo', (req) => ({ payload: Buffer.from(req.payload), code: ResponseCode.Changed }));
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    base = `coap://127.0.0.1:${ep.transport.localAddress().port}`;
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });
  const client = (o: ConstructorParameters<typeof CoapClient>[0] = {}) => {
    const c = new CoapClient(o);
    clients.push(c);
    return c;
  };

  it('PUTs and GETs 1 MB byte-identically, reporting progress', async () => {
    const c = client();
    const body = randomBytes(1 << 20);
    const up: BlockProgress[] = [];
    const put = await c.put(`${base}/r/big`, { payload: body, onProgress: (p) => up.push(p) });
    assert.equal(put.code, ResponseCode.Created);
    assert.equal(up.length, 1024);
    assert.equal(up.at(-1)!.bytes, body.length);
    let last: BlockProgress | undefined;
    const get = await c.get(`${base}/r/big`, { onProgress: (p) => (last = p) });
    assert.equal(get.code, ResponseCode.Content);
    assert.equal(get.contentFormat, 42);
    assert.ok(get.payload.equals(body));
    assert.deepEqual(last, {
      direction: 'download',
      bytes: body.length,
      totalBytes: body.length,
      blocks: 1024,
    });
  });

  it('honours blockSize on both directions (POST with Block1 + Block2 answer)', async () => {
    const c = client({ blockSize: 64 });
    const body = randomBytes(3000);
    const blocks: Record<string, number> = {};
    const res = await c.post(`${base}/echo`, {
      payload: body,
      onProgress: (p) => {
        blocks[p.direction] = p.blocks;
      },
    });
    assert.equal(res.code, ResponseCode.Changed);
    assert.ok(res.payload.equals(body));
    assert.deepEqual(blocks, { upload: Math.ceil(3000 / 64), download: Math.ceil(3000 / 64) });
  });

  it('one client uploads to the same resource twice at once (Request-Tag keeps them apart)', async () => {
    const c = client();
    const a = randomBytes(30_000);
    const b = randomBytes(30_000);
    const [ra, rb] = await Promise.all([
      c.post(`${base}/echo`, { payload: a, blockSize: 256 }),
      c.post(`${base}/echo`, { payload: b, blockSize: 256 }),
    ]);
    assert.ok(ra.payload.equals(a));
    assert.ok(rb.payload.equals(b));
  });

  it('several clients transfer to the same resource concurrently', async () => {
    const cs = [0, 1, 2, 3, 4].map(() => client());
    const payloads = cs.map(() => randomBytes(50_000));
    await Promise.all(cs.map((c, i) => c.put(`${base}/r/c${i}`, { payload: payloads[i]!, blockSize: 256 })));
    const shared = randomBytes(40_000);
    const results = await Promise.all(cs.map((c) => c.put(`${base}/r/shared`, { payload: shared })));
    for (const r of results) assert.ok(r.ok);
    const gets = await Promise.all(cs.map((c, i) => c.get(`${base}/r/c${i}`)));
    for (const [i, g] of gets.entries()) assert.ok(g.payload.equals(payloads[i]!));
    assert.ok((await cs[0]!.get(`${base}/r/shared`)).payload.equals(shared));
  });
});
