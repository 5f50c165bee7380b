/**
 * The forward proxy's cache (RFC 7252 §5.6) expires on the Clock: its own
 * `clock` option, or the clock of the server it is attached to. On a
 * VirtualClock a response with Max-Age 30 is served from the cache until
 * 30 s have passed and fetched again from exactly then on.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { ForwardProxy, proxyUriOption } from '../../src/proxy/proxy.js';
import { CoapServer, type ServerRequest } from '../../src/server/server.js';
import { VirtualClock } from '../../src/util/clock.js';

describe('forward proxy cache on the clock', () => {
  let origin: CoapServer;
  let port = 0;
  let hits = 0;
  const client = new CoapClient();

  before(async () => {
    origin = new CoapServer();
    origin.get('/temp', () => {
      hits++;
      return { payload: `22.${hits}`, maxAge: 30, contentFormat: 0 };
    });
    port = (await origin.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
  });
  after(async () => {
    await client.close();
    await origin.close();
  });

  const get = (proxy: ForwardProxy) =>
    proxy.handle({
      code: 1,
      options: [proxyUriOption(`coap://127.0.0.1:${port}/temp`)],
      payload: Buffer.alloc(0),
    } as unknown as ServerRequest);

  for (const how of ['its clock option', "the attached server's clock"]) {
    it(`Max-Age 30: cached until 30 s, fetched again at 30 s (${how})`, async () => {
      const clock = new VirtualClock();
      const proxy =
        how === 'its clock option'
          ? new ForwardProxy({ client, clock })
          : new ForwardProxy({ client }).attach(new CoapServer({ clock }));
      const before = hits;
      const first = await get(proxy);
      assert.equal(first.maxAge, 30);
      assert.equal(hits, before + 1);
      await clock.advance(29_999);
      const cached = await get(proxy);
      assert.equal(hits, before + 1, 'served from the cache');
      assert.equal(cached.maxAge, 0, 'what is left of Max-Age, in whole seconds');
      assert.equal(proxy.hits, 1);
      await clock.advance(1);
      await get(proxy);
      assert.equal(hits, before + 2, 'expired exactly at Max-Age: fetched again');
      assert.equal(proxy.misses, 2);
    });
  }
});
