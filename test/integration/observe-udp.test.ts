/** Observe with CoapClient.observe() and CoapServer over real UDP on loopback. */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { CoapClient } from '../../src/client/client.js';
import { enableObserve, type ObserveServer } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

describe('observe over UDP loopback', { timeout: 30_000 }, () => {
  const server = new CoapServer({ transmission: { ackTimeout: 50, maxRetransmit: 2 } });
  let observe: ObserveServer;
  const clients: CoapClient[] = [];
  let base = '';
  let counter = 0;
  before(async () => {
    const bw = enableBlockwise(server);
    observe = enableObserve(server, { blockwise: bw, confirmable: true });
    server.get('/counter', () => String(counter), { obs: true });
    server.get('/big', () => String(counter).repeat(2000), { obs: true });
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    base = `coap://127.0.0.1:${ep.transport.localAddress().port}`;
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
  });
  const client = () => {
    const c = new CoapClient({ transmission: { ackTimeout: 50, maxRetransmit: 2 } });
    clients.push(c);
    return c;
  };

  it('three clients observe, see every change, and deregister with break', async () => {
    const cs = [client(), client(), client()];
    const obs = cs.map((c) => c.observe(`${base}/counter`));
    await Promise.all(obs.map((o) => o.registered));
    assert.equal(observe.observerCount('/counter'), 3);
    const runs = obs.map(async (o) => {
      const seen: string[] = [];
      for await (const n of o) {
        assert.notEqual(n.observe, undefined);
        seen.push(n.text());
        if (seen.length === 4) break;
      }
      return seen;
    });
    for (let k = 1; k <= 3; k++) {
      await sleep(30);
      counter = k;
      observe.notify('/counter');
    }
    for (const seen of await Promise.all(runs)) assert.deepEqual(seen, ['0', '1', '2', '3']);
    await until(() => observe.observerCount('/counter') === 0);
  });

  it('removes an observer whose client went away (CON notification times out)', async () => {
    const c = client();
    const o = c.observe(`${base}/counter`);
    await o.registered;
    await o.cancel();
    // cancel() deregistered it; register again and then vanish without a word.
    const c2 = client();
    const o2 = c2.observe(`${base}/counter`, { cancel: 'reactive' });
    await o2.registered;
    assert.equal(observe.observerCount('/counter'), 1);
    await c2.close();
    counter++;
    observe.notify('/counter');
    await until(() => observe.observerCount('/counter') === 0, 3000);
  });

  it('observes a resource larger than one block', async () => {
    const c = client();
    await using o = c.observe(`${base}/big`);
    const first = await o.next();
    assert.equal(first.value?.text(), String(counter).repeat(2000));
    counter = 7;
    observe.notify('/big');
    const second = await o.next();
    assert.equal(second.value?.text(), '7'.repeat(2000));
  });
});
