/**
 * Observe server bounds (issue 10, item 2): a per-address share, a global
 * count and byte budget, compact registrations, stale observers evicted
 * before legitimate ones are refused, probes that remove dead observers, and
 * keys that keep two endpoints (coap:// next to coaps://) apart.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { after, describe, it } from 'node:test';
import type { CoapOption } from '../../src/codec/message.js';
import { encodeUint, getOption } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { Observation } from '../../src/observe/client.js';
import type { ObserveEvent, ObserveServerOptions } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import type { MemoryTransport } from '../../src/transport/memory.js';
import { VirtualClock } from '../../src/util/clock.js';
import { FAST, memorySetup, type RawPeer } from '../helpers/memory.js';

const path = (p: string): CoapOption[] =>
  p
    .split('/')
    .filter(Boolean)
    .map((s) => ({ number: OptionNumber.UriPath, value: Buffer.from(s) }));

/** Server, clients and network share one virtual clock: stale/probe timers run without real waiting. */
let clock = new VirtualClock();

/** Moves the virtual clock in 10 ms steps until `cond()` holds (fails after `ms` of virtual time). */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = clock.now() + ms;
  while (!cond()) {
    if (clock.now() > end) throw new Error('condition not met in time');
    await clock.advance(10);
  }
}

async function rig(opts: ObserveServerOptions = {}, transports = 1) {
  clock = new VirtualClock();
  const mem = memorySetup(clock);
  const server = new CoapServer({ transmission: FAST, observe: opts, clock });
  const events: ObserveEvent[] = [];
  server.observe!.onEvent = (e) => events.push(e);
  let value = 'v0';
  server.get('/obs', () => value, { obs: true });
  const st: MemoryTransport[] = [];
  for (let i = 0; i < transports; i++) {
    const t = mem.net.createTransport(`10.0.0.${i + 1}`, 5683);
    st.push(t);
    await server.listen(t);
  }
  let mid = 1;
  /** A registration from a raw peer (which never acknowledges anything): true when accepted. */
  const register = async (
    raw: RawPeer,
    token: number,
    extra: CoapOption[] = [],
    payload?: Buffer,
    to = 0,
  ) => {
    const messageId = mid++ & 0xffff;
    const options = [{ number: OptionNumber.Observe, value: encodeUint(0) }, ...path('/obs'), ...extra].sort(
      (a, b) => a.number - b.number,
    );
    raw.send(st[to]!.self, {
      type: MessageType.CON,
      code: Method.GET,
      messageId,
      token: Buffer.from(encodeUint(token + 1)),
      options,
      payload,
    });
    const r = await raw.until((x) => x.msg?.messageId === messageId && x.msg.type === MessageType.ACK, 3000);
    assert.equal(r.msg!.code, ResponseCode.Content);
    return getOption(r.msg!.options, OptionNumber.Observe) !== undefined;
  };
  const observations: Observation[] = [];
  const observe = (address: string) => {
    const ep = mem.endpoint({}, address);
    const o = new Observation(
      Promise.resolve({ endpoint: ep, peer: st[0]!.self, code: Method.GET, options: path('/obs') }),
      { timeout: 3000 },
    );
    observations.push(o);
    return o;
  };
  return {
    mem,
    server,
    obs: server.observe!,
    events,
    register,
    observe,
    set: (v: string) => {
      value = v;
      server.observe!.notify('/obs');
    },
    close: async () => {
      for (const o of observations) o.cancel().catch(() => undefined);
      await server.close();
      await mem.close();
    },
  };
}

describe('observe server limits', () => {
  const rigs: Array<Awaited<ReturnType<typeof rig>>> = [];
  after(async () => {
    for (const r of rigs) await r.close();
  });
  const make = async (o?: ObserveServerOptions, transports?: number) => {
    const r = await rig(o, transports);
    rigs.push(r);
    return r;
  };

  it('gives each address a share: over it the answer goes without Observe (§4.1); others still register', async () => {
    const r = await make({ maxObserversPerAddress: 3 });
    const attacker = r.mem.raw('10.0.1.1');
    for (let t = 0; t < 3; t++) assert.equal(await r.register(attacker, t), true);
    assert.equal(await r.register(attacker, 3), false, 'over its share: not accepted');
    assert.ok(r.events.some((e) => e.type === 'refused' && e.reason === 'address'));
    const legit = r.observe('10.0.1.2');
    const first = await legit.registered;
    assert.notEqual(first.observe, undefined, 'another address registers');
    r.set('v1');
    for await (const n of legit) if (n.text() === 'v1') break;
    assert.equal(r.obs.observerCount(), 3, 'the legit observer deregistered on break; attacker keeps 3');
  });

  it('stores a compact registration: a padded GET payload is dropped; padded options count in bytes', async () => {
    const r = await make({ maxObserverBytesPerAddress: 8 * 1024 });
    const a = r.mem.raw('10.0.2.1');
    assert.equal(await r.register(a, 0, [], Buffer.alloc(50_000, 0x70)), true);
    assert.ok(r.obs.bytesHeld < 2048, `payload not kept (${r.obs.bytesHeld} bytes)`);
    // Four Uri-Query options of 250 bytes (an elective, harmless query) per registration.
    const q = [0, 1, 2, 3].map(() => ({ number: OptionNumber.UriQuery, value: Buffer.alloc(250, 0x71) }));
    let accepted = 0;
    for (let t = 1; t < 20; t++) if (await r.register(a, t, q)) accepted++;
    assert.ok(accepted >= 3 && accepted < 8, `bytes share bounds the padded ones (${accepted})`);
    assert.ok(r.obs.bytesHeld <= 8 * 1024);
    const b = r.mem.raw('10.0.2.2');
    assert.equal(await r.register(b, 0, q), true, 'another address is not affected');
  });

  it('bounds the table in all; evicts stale observers before refusing a new one', async () => {
    const r = await make({ maxObservers: 4, staleAfterMs: 300, maxObserverBytes: 1 << 20 });
    const dead = [1, 2, 3, 4].map((i) => r.mem.raw(`10.0.3.${i}`));
    for (const [i, d] of dead.entries()) assert.equal(await r.register(d, i), true);
    const fresh = r.mem.raw('10.0.3.9');
    assert.equal(await r.register(fresh, 0), false, 'full of fresh registrations: refused');
    assert.ok(r.events.some((e) => e.type === 'refused' && e.reason === 'full'));
    await clock.advance(350);
    assert.equal(await r.register(fresh, 1), true, 'a stale registration made room');
    assert.ok(r.events.some((e) => e.type === 'removed' && e.reason === 'stale'));
    assert.equal(r.obs.observerCount(), 4);
  });

  it('probes observers not heard from: a dead peer is removed, a live one stays', async () => {
    const r = await make({ staleAfterMs: 200 });
    const dead = r.mem.raw('10.0.4.1');
    assert.equal(await r.register(dead, 0), true);
    const live = r.observe('10.0.4.2');
    await live.registered;
    assert.equal(r.obs.observerCount(), 2);
    // No change at all: the sweep sends CON probes; the raw peer never acknowledges (FAST: ~1 s).
    await until(() => r.events.some((e) => e.type === 'removed' && e.reason === 'timeout'), 8000);
    assert.equal(r.obs.observerCount(), 1, 'the live observer acknowledged its probes');
    await until(() => dead.received.some((x) => x.msg?.type === MessageType.CON));
    assert.equal(r.obs.bytesHeld > 0, true);
  });

  it('keys registrations by endpoint too: the same peer and token on two endpoints are two observers', async () => {
    const r = await make({}, 2);
    const a = r.mem.raw('10.0.5.1');
    assert.equal(await r.register(a, 7, [], undefined, 0), true);
    assert.equal(await r.register(a, 7, [], undefined, 1), true);
    assert.equal(r.obs.observerCount(), 2);
  });

  it('gives everything back when the observers are gone', async () => {
    const r = await make({ staleAfterMs: 100 });
    const a = r.mem.raw('10.0.6.1');
    for (let t = 0; t < 10; t++) await r.register(a, t);
    assert.ok(r.obs.bytesHeld > 0);
    await until(() => r.obs.observerCount() === 0, 10_000);
    assert.equal(r.obs.bytesHeld, 0);
  });
});

describe('the observe layer clock', () => {
  it('is fixed at construction: a different clock given to enableObserve later is refused, not ignored', () => {
    const clock = new VirtualClock();
    const server = new CoapServer({ clock });
    // The server's own observe layer runs on the server's clock; the same clock again is fine.
    assert.doesNotThrow(() => server.enableObserve({ clock, conEvery: 5 }));
    assert.throws(() => server.enableObserve({ clock: new VirtualClock() }), InvalidArgumentError);
  });
});
