/**
 * OSCORE's Echo freshness check (RFC 8613 Appendix B.1.2, RFC 9175) runs on
 * the server's Clock (`CoapServer`'s `clock` option), not the wall clock:
 * on a VirtualClock an Echo value handed out by the 4.01 challenge is taken
 * until just before its lifetime and refused from exactly its lifetime on
 * (counted from the start of its time slot, so never longer).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CoapMessage, decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { OptionNumber } from '../../src/constants/options.js';
import type { OutgoingResponse } from '../../src/exchange/exchange-layer.js';
import { OscoreContext } from '../../src/oscore/context.js';
import { protectRequest, unprotectResponse } from '../../src/oscore/protect.js';
import { AmplificationGuard } from '../../src/server/echo.js';
import { enableOscore } from '../../src/server/oscore.js';
import { CoapServer } from '../../src/server/server.js';
import { makePeer } from '../../src/transport/transport.js';
import { VirtualClock } from '../../src/util/clock.js';

const LIFETIME = 60_000;
const SLOT = LIFETIME / 200;
const PEER = makePeer('127.0.0.1', 40000);

function setup(start: number) {
  const clock = new VirtualClock(start);
  const server = new CoapServer({ clock });
  server.get('/x', () => ({ code: '2.05', payload: 'fresh' }));
  const secret = Buffer.alloc(16, 9);
  const client = new OscoreContext({
    masterSecret: secret,
    senderId: Buffer.from('c'),
    recipientId: Buffer.from('s'),
  });
  // As after a restart: the replay state is unknown, so the first request is challenged with Echo.
  const serverCtx = new OscoreContext({
    masterSecret: secret,
    senderId: Buffer.from('s'),
    recipientId: Buffer.from('c'),
    replayState: 'unknown',
  });
  const layer = enableOscore(server, { contexts: [serverCtx], echoLifetimeMs: LIFETIME });
  let mid = 1;
  /** One protected GET /x (with `echo` inside); the decrypted response. */
  const get = async (echo?: Buffer): Promise<CoapMessage> => {
    const options: Array<{ number: number; value: Buffer }> = [
      { number: OptionNumber.UriPath, value: Buffer.from('x') },
    ];
    if (echo) options.push({ number: OptionNumber.Echo, value: echo });
    const { message, binding } = protectRequest(client, { code: 1, options });
    const wire = decodeMessage(
      encodeMessage({ type: 0, messageId: mid++, token: Buffer.from([mid]), ...message }),
    );
    const res = (await layer.handle(wire, PEER, undefined)) as OutgoingResponse;
    assert.ok(res, 'an answer');
    const out = decodeMessage(
      encodeMessage({
        type: 2,
        messageId: wire.messageId,
        token: wire.token,
        code: res.code,
        options: res.options ?? [],
        ...(res.payload ? { payload: Buffer.from(res.payload) } : {}),
      }),
    );
    return unprotectResponse(binding, out);
  };
  const echoOf = (m: CoapMessage) => m.options.find((o) => o.number === OptionNumber.Echo)?.value;
  return { clock, layer, get, echoOf };
}

describe('OSCORE Echo freshness on the server clock', () => {
  it('a value handed out at a slot start is taken at lifetime - 1 ms', async () => {
    const { clock, layer, get, echoOf } = setup(1_000 * SLOT);
    const challenge = await get();
    assert.equal(challenge.code, 0x81 /* 4.01 */);
    const echo = echoOf(challenge);
    assert.ok(echo, '4.01 carries Echo');
    await clock.advance(LIFETIME - 1);
    const ok = await get(echo);
    assert.equal(ok.code, 0x45 /* 2.05 */);
    assert.equal(ok.payload.toString(), 'fresh');
    assert.equal(layer.stats.echoChallenges, 1);
  });

  it('and refused at exactly its lifetime, with a new challenge whose value works', async () => {
    const { clock, layer, get, echoOf } = setup(1_000 * SLOT);
    const echo = echoOf(await get());
    assert.ok(echo);
    // The wall clock has not moved: only the server's clock says the value is old.
    await clock.advance(LIFETIME);
    const again = await get(echo);
    assert.equal(again.code, 0x81, 'expired: challenged again, not performed');
    assert.equal(layer.stats.echoChallenges, 2);
    assert.equal(layer.stats.verified, 0);
    const fresh = echoOf(again);
    assert.ok(fresh && !fresh.equals(echo));
    assert.equal((await get(fresh)).code, 0x45);
  });

  it('a value handed out within a slot never outlives its lifetime (expires at most one slot sooner)', async () => {
    const start = 1_000 * SLOT + SLOT / 2;
    const late = setup(start);
    const echo = late.echoOf(await late.get());
    assert.ok(echo);
    await late.clock.advance(LIFETIME - SLOT / 2);
    assert.equal((await late.get(echo)).code, 0x81, 'expired at the slot start + lifetime');
    const early = setup(start);
    const echo2 = early.echoOf(await early.get());
    assert.ok(echo2);
    await early.clock.advance(LIFETIME - SLOT / 2 - 1);
    assert.equal((await early.get(echo2)).code, 0x45);
  });

  it('the guard on a VirtualClock: every lifetime, valid to lifetime - 1 ms, refused at the lifetime', async () => {
    for (const lifetimeMs of [1_000, 60_000, 3_600_000]) {
      const clock = new VirtualClock(0);
      const g = new AmplificationGuard(3, { lifetimeMs, clock });
      const v = g.echoValue(PEER);
      await clock.advance(lifetimeMs - 1);
      assert.ok(g.validEcho(v, PEER), `${lifetimeMs}: valid at lifetime - 1`);
      await clock.advance(1);
      assert.equal(g.validEcho(v, PEER), false, `${lifetimeMs}: refused at the lifetime`);
    }
  });
});
