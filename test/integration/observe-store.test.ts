/**
 * Observe on `coapkit serve`'s dynamic store (ETSI CoAP plugtest
 * TD_COAP_OBS_07/08/09 behaviours) and NON-notification RST removal.
 */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type RunningServe, startServe } from '../../src/cli/commands/serve.js';
import { CoapClient } from '../../src/client/client.js';
import { ResponseCode } from '../../src/constants/codes.js';

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

describe('observe on the dynamic store (coapkit serve)', { timeout: 30_000 }, () => {
  let serve: RunningServe;
  let base = '';
  const client = new CoapClient();
  before(async () => {
    serve = await startServe({
      host: '127.0.0.1',
      port: 0,
      securePort: 0,
      keys: new Map(),
      maxResources: 20,
      maxSize: 1 << 20,
      maxAge: 60,
      quiet: true,
    });
    base = serve.listeners[0]!.url;
  });
  after(async () => {
    await client.close();
    await serve.close();
  });

  it('lists dynamic resources as obs; PUT notifies (OBS_09); DELETE sends 4.04 and ends it (OBS_07)', async () => {
    await client.put(`${base}/s/temp`, { payload: '20', contentFormat: 0 });
    const wk = await client.get(`${base}/.well-known/core`);
    assert.match(wk.text(), /<\/s\/temp>;[^,]*obs/);
    const obs = client.observe(`${base}/s/temp`);
    const got: Array<[number, string]> = [];
    for await (const n of obs) {
      got.push([n.code, n.text()]);
      if (got.length === 1) await client.put(`${base}/s/temp`, { payload: '21', contentFormat: 0 });
      if (got.length === 2) await client.post(`${base}/s/other`, { payload: 'x' }).catch(() => undefined);
      if (got.length === 2) await client.delete(`${base}/s/temp`);
    }
    assert.deepEqual(got, [
      [ResponseCode.Content, '20'],
      [ResponseCode.Content, '21'],
      [ResponseCode.NotFound, ''],
    ]);
    assert.equal(serve.observe.observerCount('/s/temp'), 0);
  });

  it('a content-format change the observer cannot accept ends the observation with 4.06 (OBS_08)', async () => {
    await client.put(`${base}/cf`, { payload: 'plain', contentFormat: 0 });
    const obs = client.observe(`${base}/cf`, { accept: 0 });
    const codes: number[] = [];
    for await (const n of obs) {
      codes.push(n.code);
      if (codes.length === 1) await client.put(`${base}/cf`, { payload: '{"a":1}', contentFormat: 50 });
    }
    assert.deepEqual(codes, [ResponseCode.Content, ResponseCode.NotAcceptable]);
    assert.equal(serve.observe.observerCount('/cf'), 0);
  });

  it('a client that forgot the observation RSTs the next NON notification and is removed', async () => {
    await client.put(`${base}/r`, { payload: 'a' });
    const c2 = new CoapClient();
    try {
      const obs = c2.observe(`${base}/r`, { cancel: 'reactive' });
      await obs.registered;
      assert.equal(serve.observe.observerCount('/r'), 1);
      await obs.cancel();
      await client.put(`${base}/r`, { payload: 'b' });
      await until(() => serve.observe.observerCount('/r') === 0);
    } finally {
      await c2.close();
    }
  });

  it('a large dynamic resource is observed block-wise', async () => {
    const big = 'z'.repeat(5000);
    await client.put(`${base}/big`, { payload: big });
    const obs = client.observe(`${base}/big`);
    const first = await obs.next();
    assert.equal(first.value?.text(), big);
    await client.put(`${base}/big`, { payload: 'y'.repeat(4000) });
    const second = await obs.next();
    assert.equal(second.value?.text(), 'y'.repeat(4000));
    await obs.cancel();
  });
});
