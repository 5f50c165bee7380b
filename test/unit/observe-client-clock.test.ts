/**
 * The observe client (src/observe/client.ts) on its endpoint's Clock: the
 * re-registration when Max-Age runs out without a notification (RFC 7641
 * §3.3.1) fires at Max-Age + margin of the VirtualClock, with no real waiting.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Method } from '../../src/constants/codes.js';
import { Observation } from '../../src/observe/client.js';
import { CoapServer } from '../../src/server/server.js';
import { VirtualClock } from '../../src/util/clock.js';
import { FAST, memorySetup } from '../helpers/memory.js';
import { pathOptions } from '../helpers/raw-coap.js';

describe('observe client on the clock', () => {
  const clock = new VirtualClock();
  const mem = memorySetup(clock);
  const server = new CoapServer({ transmission: FAST, observe: { refreshBeforeMaxAge: false }, clock });
  server.get('/obs', () => ({ payload: 'v', maxAge: 10 }), { obs: true });
  after(async () => {
    await server.close();
    await mem.close();
  });

  it('re-registers at Max-Age + margin of the virtual clock', async () => {
    const t = mem.net.createTransport('10.0.0.1', 5683);
    await server.listen(t);
    const o = new Observation(
      Promise.resolve({
        endpoint: mem.endpoint({}, '10.0.0.2'),
        peer: t.self,
        code: Method.GET,
        options: pathOptions('/obs'),
      }),
      { reregisterMarginMs: 100 },
    );
    let registered = false;
    void o.registered.then(() => {
      registered = true;
    });
    for (let i = 0; i < 50 && !registered; i++) await clock.advance(1);
    assert.ok(registered, 'registered');
    const at = clock.now();
    // Just before Max-Age (10 s) + margin (100 ms) nothing happens; at it, a new registration goes out.
    await clock.advance(10_100 - (clock.now() - at) - 20);
    assert.equal(o.reregistrations, 0);
    for (let i = 0; i < 100 && o.reregistrations === 0; i++) await clock.advance(1);
    assert.equal(o.reregistrations, 1);
    assert.ok(clock.now() - at <= 10_100 + 20, `re-registered ${clock.now() - at} ms after the notification`);
    await o.cancel();
  });
});
