/**
 * Observe (RFC 7641) end to end over the in-memory transport: several
 * observers, deregistration, RST and timeout removal, deletion, coalescing
 * for slow clients, reordering, re-registration, large notifications.
 */

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { enableBlockwise } from '../../src/blockwise/server.js';
import type { CoapOption } from '../../src/codec/message.js';
import { decodeMessage } from '../../src/codec/message.js';
import { getUintOption } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { Endpoint } from '../../src/endpoint/endpoint.js';
import { Observation, type ObserveOptions } from '../../src/observe/client.js';
import {
  enableObserve,
  type ObserveEvent,
  type ObserveServer,
  type ObserveServerOptions,
} from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import { MemoryNetwork, type MemoryTransport } from '../../src/transport/memory.js';
import { VirtualClock } from '../../src/util/clock.js';

const FAST = { ackTimeout: 50, ackRandomFactor: 1.0, maxRetransmit: 2 };

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

interface Rig {
  net: MemoryNetwork;
  server: CoapServer;
  observe: ObserveServer;
  st: MemoryTransport;
  events: ObserveEvent[];
  state: { value: string };
  client(i?: number): Endpoint;
  obs(path: string, opts?: ObserveOptions, i?: number): Observation;
  close(): Promise<void>;
}

async function rig(opts: ObserveServerOptions = {}, maxAge?: number, clock?: VirtualClock): Promise<Rig> {
  const net = new MemoryNetwork();
  const server = new CoapServer({ transmission: FAST, ...(clock ? { clock } : {}) });
  const blockwise = enableBlockwise(server);
  const observe = enableObserve(server, { blockwise, ...opts });
  const events: ObserveEvent[] = [];
  observe.onEvent = (e) => events.push(e);
  const state = { value: 'v0' };
  let exists = true;
  server.get(
    '/obs',
    () => (exists ? { payload: state.value, ...(maxAge !== undefined ? { maxAge } : {}) } : { code: '4.04' }),
    { obs: true },
  );
  server.delete('/obs', () => {
    exists = false;
    observe.deleted('/obs');
    return { code: ResponseCode.Deleted };
  });
  server.get('/plain', () => 'not observable');
  const st = net.createTransport('10.0.0.1', 5683);
  await server.listen(st);
  const clients = new Map<number, Endpoint>();
  const client = (i = 0) => {
    let c = clients.get(i);
    if (!c) {
      c = new Endpoint(net.createTransport(`10.0.1.${i + 1}`), { transmission: FAST });
      clients.set(i, c);
    }
    return c;
  };
  const path = (p: string): CoapOption[] =>
    p
      .split('/')
      .filter(Boolean)
      .map((s) => ({ number: OptionNumber.UriPath, value: Buffer.from(s) }));
  const observations: Observation[] = [];
  return {
    net,
    server,
    observe,
    st,
    events,
    state,
    client,
    obs: (p, o = {}, i = 0) => {
      const ob = new Observation(
        Promise.resolve({ endpoint: client(i), peer: st.self, code: Method.GET, options: path(p) }),
        { timeout: 2000, ...o },
      );
      observations.push(ob);
      return ob;
    },
    close: async () => {
      for (const o of observations) o.cancel().catch(() => undefined);
      observe.close();
      blockwise.close();
      await Promise.all([...clients.values()].map((c) => c.close()));
      await server.close();
    },
  };
}

describe('observe over the in-memory transport', { timeout: 30_000 }, () => {
  const rigs: Rig[] = [];
  after(async () => {
    await Promise.all(rigs.map((r) => r.close()));
  });
  const make = async (o?: ObserveServerOptions, maxAge?: number, clock?: VirtualClock) => {
    const r = await rig(o, maxAge, clock);
    rigs.push(r);
    return r;
  };

  it('lists obs in /.well-known/core and ignores Observe on a non-observable resource', async () => {
    const r = await make();
    const links = r.server.links().find((l) => l.target === '/obs');
    assert.ok(links?.attributes.some(([k]) => k === 'obs'));
    const o = r.obs('/plain');
    const first = await o.registered;
    assert.equal(first.observe, undefined);
    assert.equal(first.text(), 'not observable');
    const all: string[] = [];
    for await (const n of o) all.push(n.text());
    assert.deepEqual(all, ['not observable'], 'iteration ends after the one response');
    assert.equal(r.observe.observerCount(), 0);
  });

  it('notifies several observers in order with increasing sequence numbers; break deregisters', async () => {
    const r = await make();
    const obs = [0, 1, 2].map((i) => r.obs('/obs', {}, i));
    await Promise.all(obs.map((o) => o.registered));
    assert.equal(r.observe.observerCount('/obs'), 3);
    const collected = await Promise.all(
      obs.map(async (o, i) => {
        const seen: Array<[number, string]> = [];
        for await (const n of o) {
          seen.push([n.observe!, n.text()]);
          if (seen.length === 4) break;
          if (i === 0 && seen.length === 1) {
            for (let k = 1; k <= 3; k++) {
              await sleep(10);
              r.state.value = `v${k}`;
              r.observe.notify('/obs');
            }
          }
        }
        return seen;
      }),
    );
    for (const seen of collected) {
      assert.deepEqual(
        seen.map((s) => s[1]),
        ['v0', 'v1', 'v2', 'v3'],
      );
      for (let k = 1; k < seen.length; k++) assert.ok(seen[k]![0] > seen[k - 1]![0], 'sequence increases');
    }
    await until(() => r.observe.observerCount('/obs') === 0);
    assert.equal(r.events.filter((e) => e.type === 'deregistered').length, 3, 'GET with Observe=1 each');
  });

  it('removes an observer that answers a CON notification with RST (reactive cancellation)', async () => {
    const r = await make({ confirmable: true });
    const o = r.obs('/obs', { cancel: 'reactive' });
    await o.registered;
    await o.cancel();
    assert.equal(r.observe.observerCount('/obs'), 1, 'no message sent on reactive cancel');
    r.state.value = 'changed';
    r.observe.notify('/obs');
    await until(() => r.observe.observerCount('/obs') === 0);
    assert.ok(r.events.some((e) => e.type === 'removed' && e.reason === 'reset'));
  });

  it('removes an observer whose CON notification times out', async () => {
    const r = await make({ confirmable: true });
    const o = r.obs('/obs');
    await o.registered;
    r.net.conditions = { drop: (_d, from) => from.address !== '10.0.0.1' };
    r.observe.notify('/obs');
    // ackTimeout 50 ms, 2 retransmissions: gone after ~350 ms.
    await until(() => r.observe.observerCount('/obs') === 0, 2000);
    assert.ok(r.events.some((e) => e.type === 'removed' && e.reason === 'timeout'));
    r.net.conditions = {};
  });

  it('sends NON notifications by default and every conEvery-th as CON', async () => {
    const r = await make({ conEvery: 3 });
    const types: number[] = [];
    r.net.conditions = {
      drop: (d, from) => {
        if (from.address === '10.0.0.1') {
          const m = decodeMessage(Buffer.from(d));
          if (getUintOption(m.options, OptionNumber.Observe) !== undefined && m.type !== MessageType.ACK)
            types.push(m.type);
        }
        return false;
      },
    };
    const o = r.obs('/obs');
    await o.registered;
    for (let k = 0; k < 6; k++) {
      r.observe.notify('/obs');
      await sleep(15);
    }
    await until(() => types.length === 6);
    assert.deepEqual(types, [1, 1, 0, 1, 1, 0]);
  });

  it('sends a CON notification once conIntervalMs has passed since the last one (the 24 h rule)', async () => {
    // The server's time is virtual: "100 ms since the last CON" is the clock's, not the machine's.
    const clock = new VirtualClock();
    const r = await make({ conEvery: 0, conIntervalMs: 100 }, undefined, clock);
    const types: number[] = [];
    r.net.conditions = {
      drop: (d, from) => {
        if (from.address === '10.0.0.1') {
          const m = decodeMessage(Buffer.from(d));
          if (getUintOption(m.options, OptionNumber.Observe) !== undefined && m.type !== MessageType.ACK)
            types.push(m.type);
        }
        return false;
      },
    };
    const o = r.obs('/obs');
    await o.registered;
    r.observe.notify('/obs');
    await until(() => types.length === 1);
    await clock.advance(20);
    r.observe.notify('/obs');
    await until(() => types.length === 2);
    await clock.advance(120);
    r.observe.notify('/obs');
    await until(() => types.length === 3);
    await clock.advance(20);
    r.observe.notify('/obs');
    await until(() => types.length === 4);
    assert.deepEqual(types, [MessageType.NON, MessageType.NON, MessageType.CON, MessageType.NON]);
  });

  it('does not register on an error response, and a registration for an unknown path gets 4.04', async () => {
    const r = await make();
    const o = r.obs('/nope');
    const first = await o.registered;
    assert.equal(first.code, ResponseCode.NotFound);
    assert.equal(first.observe, undefined);
    assert.equal(r.observe.observerCount(), 0);
  });

  it('an error notification (resource deleted) ends the observation', async () => {
    const r = await make();
    const o = r.obs('/obs');
    await o.registered;
    const del = await new Promise<number>((resolve, reject) =>
      r.client(1).request(
        r.st.self,
        { code: Method.DELETE, options: [{ number: OptionNumber.UriPath, value: Buffer.from('obs') }] },
        {
          onResponse: (x) => {
            resolve(x.message.code);
            return true;
          },
          onError: reject,
        },
      ),
    );
    assert.equal(del, ResponseCode.Deleted);
    const codes: number[] = [];
    for await (const n of o) codes.push(n.code);
    assert.deepEqual(codes, [ResponseCode.Content, ResponseCode.NotFound]);
    assert.equal(r.observe.observerCount(), 0);
  });

  it('a slow client gets the latest state, not a queue (§4.5.2)', async () => {
    const r = await make({ confirmable: true });
    const o = r.obs('/obs');
    await o.registered;
    // Client ACKs take 200 ms to arrive.
    r.net.conditions = { delay: (_d, from) => (from.address === '10.0.0.1' ? 0 : 150) };
    for (let k = 1; k <= 20; k++) {
      r.state.value = `s${k}`;
      r.observe.notify('/obs');
      await sleep(5);
    }
    const got: string[] = [];
    for await (const n of o) {
      got.push(n.text());
      if (n.text() === 's20') break;
    }
    assert.equal(got.at(-1), 's20');
    assert.ok(got.length < 8, `coalesced: got ${got.length} notifications for 20 changes`);
    r.net.conditions = {};
  });

  it('drops reordered (stale) notifications per §3.4', async () => {
    const r = await make();
    const o = r.obs('/obs');
    await o.registered;
    let delayed = false;
    r.net.conditions = {
      delay: (d, from) => {
        if (from.address !== '10.0.0.1' || delayed) return 0;
        const m = decodeMessage(Buffer.from(d));
        if (m.payload.toString() === 'old') {
          delayed = true;
          return 60;
        }
        return 0;
      },
    };
    r.state.value = 'old';
    r.observe.notify('/obs');
    await sleep(5);
    r.state.value = 'new';
    r.observe.notify('/obs');
    const got: string[] = [];
    for (let k = 0; k < 2; k++) got.push(((await o.next()).value as { text(): string }).text());
    await until(() => o.received === 3);
    assert.deepEqual(got, ['v0', 'new']);
    assert.equal(o.stale, 1);
    assert.equal(o.received, 3);
    await o.cancel();
    r.net.conditions = {};
  });

  it('re-registers with the same token when Max-Age passes without a notification', async () => {
    const r = await make({ refreshBeforeMaxAge: false }, 1);
    const o = r.obs('/obs', { reregisterMarginMs: 100 });
    await o.registered;
    await until(() => o.reregistrations >= 1, 3000);
    await until(() => r.events.filter((e) => e.type === 'registered').length >= 2, 1000);
    assert.equal(r.observe.observerCount('/obs'), 1, 'same token: the entry was replaced, not added');
    await o.cancel();
    await until(() => r.observe.observerCount('/obs') === 0);
  });

  it('sends the current state again before Max-Age runs out (refresh)', async () => {
    const r = await make({}, 1);
    const o = r.obs('/obs', { reregisterMarginMs: 5000 });
    // Timers are unref'd and the in-memory transport holds no handle: keep the loop alive.
    const keepAlive = setInterval(() => undefined, 100);
    const seen: number[] = [];
    for await (const n of o) {
      seen.push(n.observe!);
      if (seen.length === 2) break;
    }
    clearInterval(keepAlive);
    assert.equal(o.reregistrations, 0);
    assert.ok(seen[1]! > seen[0]!);
  });

  it('large notifications: first block in the notification, the rest fetched with GET Block2', async () => {
    const r = await make();
    r.state.value = 'a'.repeat(3000);
    const o = r.obs('/obs', { blockSize: 256 });
    const got: string[] = [];
    for await (const n of o) {
      got.push(n.text());
      if (got.length === 1) {
        r.state.value = 'b'.repeat(2500);
        r.observe.notify('/obs');
      } else break;
    }
    assert.equal(got[0], 'a'.repeat(3000));
    assert.equal(got[1], 'b'.repeat(2500));
  });

  it('re-registering with the same token replaces the entry; Observe=1 on another token is harmless', async () => {
    const r = await make();
    const token = Buffer.from('tok1');
    const a = r.obs('/obs', { token });
    await a.registered;
    const b = r.obs('/obs', { token });
    await b.registered;
    assert.equal(r.observe.observerCount('/obs'), 1);
    await a.cancel();
  });
});
