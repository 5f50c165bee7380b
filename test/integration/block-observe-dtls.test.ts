/** Observe and block-wise over coaps:// (coapkit DTLS client and server): nothing DTLS-specific needed. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { CoapClient } from '../../src/client/client.js';
import { ResponseCode } from '../../src/constants/codes.js';
import { enableObserve, type ObserveServer } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';

describe('observe + block-wise over coaps://', { timeout: 30_000 }, () => {
  const server = new CoapServer({ maxPayloadSize: 1 << 20 });
  let observe: ObserveServer;
  let base = '';
  let stored = Buffer.alloc(0);
  let n = 0;
  const client = new CoapClient({ psk: { identity: 'dev', key: 'k3y' } });
  before(async () => {
    const bw = enableBlockwise(server, { maxBodySize: 1 << 20 });
    observe = enableObserve(server, { blockwise: bw });
    server.get('/n', () => `n=${n}`, { obs: true });
    server.put('/file', (req) => {
      stored = Buffer.from(req.payload);
      return { code: ResponseCode.Changed };
    });
    server.get('/file', () => stored);
    const t = await DtlsServerTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: { identity: 'dev', key: 'k3y' },
    });
    await server.listen(t);
    base = `coaps://127.0.0.1:${t.localAddress().port}`;
  });
  after(async () => {
    await client.close();
    await server.close();
  });

  it('PUTs and GETs 200 KB block-wise', async () => {
    const body = randomBytes(200 * 1024);
    const put = await client.put(`${base}/file`, { payload: body });
    assert.equal(put.code, ResponseCode.Changed);
    assert.ok(stored.equals(body));
    const get = await client.get(`${base}/file`, { blockSize: 512 });
    assert.ok(get.payload.equals(body));
  });

  it('observes and deregisters', async () => {
    const seen: string[] = [];
    for await (const x of client.observe(`${base}/n`)) {
      seen.push(x.text());
      if (seen.length === 3) break;
      n++;
      observe.notify('/n');
    }
    assert.deepEqual(seen, ['n=0', 'n=1', 'n=2']);
    for (let i = 0; i < 500 && observe.observerCount('/n') > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(observe.observerCount('/n'), 0);
  });
});
