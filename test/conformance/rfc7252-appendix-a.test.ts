/**
 * RFC 7252 Appendix A (Figures 16-22) played against the runtime: the
 * coapkit server and client must put exactly these bytes on the wire (the
 * Message IDs a coapkit endpoint picks itself are random, so those are
 * checked structurally), over the in-memory transport.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { MessageType } from '../../src/constants/codes.js';
import type { Endpoint } from '../../src/endpoint/endpoint.js';
import type { InboundResponse } from '../../src/exchange/exchange-layer.js';
import { CoapServer } from '../../src/server/server.js';
import { MemoryNetwork } from '../../src/transport/memory.js';
import type { Peer } from '../../src/transport/transport.js';
import { VirtualClock } from '../../src/util/clock.js';
import { memorySetup, RawPeer, selfOf } from '../helpers/memory.js';

/** Hex and "quoted text" pieces to bytes. */
function b(...parts: string[]): Buffer {
  return Buffer.concat(
    parts.map((p) =>
      p.startsWith('"') ? Buffer.from(p.slice(1, -1), 'latin1') : Buffer.from(p.replace(/\s+/g, ''), 'hex'),
    ),
  );
}

describe('server side (coapkit server, raw client)', () => {
  let net: MemoryNetwork;
  let server: CoapServer;
  let serverPeer: Peer;
  let raw: RawPeer;
  let delayMs = 0;
  let calls = 0;

  let clock: VirtualClock;

  beforeEach(async () => {
    // Separate-response delay, retransmission and the slow handler run on a virtual clock.
    clock = new VirtualClock();
    net = new MemoryNetwork(clock);
    delayMs = 0;
    calls = 0;
    server = new CoapServer({
      clock,
      separateResponseDelayMs: 40,
      transmission: { ackTimeout: 60, ackRandomFactor: 1, maxRetransmit: 2 },
    });
    server.get('/temperature', async () => {
      calls++;
      if (delayMs > 0) await new Promise<void>((r) => clock.setTimer(() => r(), delayMs));
      return '22.3 C';
    });
    const t = net.createTransport('192.0.2.1', 5683);
    serverPeer = t.self;
    await server.listen(t);
    raw = new RawPeer(net.createTransport('192.0.2.2', 41000), clock);
  });
  afterEach(async () => {
    await server.close();
    await raw.transport.close();
  });

  test('Figure 16: CON GET /temperature, empty token → ACK 2.05 "22.3 C" (11 bytes)', async () => {
    raw.send(serverPeer, b('40 01 7d 34', 'bb', '"temperature"'));
    assert.deepEqual((await raw.next()).data, b('60 45 7d 34', 'ff', '"22.3 C"'));
  });

  test('Figure 17: with Token 0x20', async () => {
    raw.send(serverPeer, b('41 01 7d 35', '20', 'bb', '"temperature"'));
    assert.deepEqual((await raw.next()).data, b('61 45 7d 35', '20', 'ff', '"22.3 C"'));
  });

  test('Figure 18/19: a retransmitted request (lost request or lost ACK) gets the identical ACK; the handler runs once', async () => {
    const req = b('41 01 7d 37', '42', 'bb', '"temperature"');
    raw.send(serverPeer, req);
    const first = await raw.next();
    raw.send(serverPeer, req);
    const second = await raw.next();
    assert.deepEqual(first.data, b('61 45 7d 37', '42', 'ff', '"22.3 C"'));
    assert.deepEqual(second.data, first.data);
    assert.equal(calls, 1);
  });

  test('Figure 20: separate response — empty ACK 60 00 7d 38, then CON 2.05 with Token 0x53, acknowledged', async () => {
    delayMs = 120;
    raw.send(serverPeer, b('41 01 7d 38', '53', 'bb', '"temperature"'));
    await clock.advance(39);
    assert.equal(raw.received.length, 0, 'nothing before separateResponseDelayMs');
    await clock.advance(1);
    assert.deepEqual((await raw.waitFor(1))[0]!.data, b('60 00 7d 38'));
    await clock.advance(80); // the handler finishes at 120 ms
    const con = (await raw.waitFor(2))[1]!;
    const mid = con.data.readUInt16BE(2);
    assert.deepEqual(
      con.data,
      Buffer.concat([b('41 45'), con.data.subarray(2, 4), b('53', 'ff', '"22.3 C"')]),
    );
    raw.send(serverPeer, Buffer.from([0x60, 0x00, mid >> 8, mid & 0xff]));
    await clock.settle();
    const n = raw.received.length;
    await clock.advance(600);
    assert.equal(raw.received.length, n, 'acknowledged: no more retransmissions');
    for (const r of raw.received.slice(2))
      assert.deepEqual(r.data, con.data, 'only retransmissions of the response');
  });

  test('Figure 22: NON request → NON response with the same token and its own MID', async () => {
    raw.send(serverPeer, b('51 01 7d 40', '75', 'bb', '"temperature"'));
    const r = await raw.next();
    assert.deepEqual(r.data.subarray(0, 2), b('51 45'));
    assert.deepEqual(r.data.subarray(4), b('75', 'ff', '"22.3 C"'));
  });
});

describe('client side (coapkit endpoint, raw server)', () => {
  let s: ReturnType<typeof memorySetup>;
  let ep: Endpoint;
  let raw: RawPeer;
  beforeEach(() => {
    s = memorySetup();
    ep = s.endpoint({
      tokenLength: 1,
      transmission: { ackTimeout: 60, ackRandomFactor: 1, maxRetransmit: 2 },
    });
    raw = s.raw('192.0.2.1', 5683);
  });
  afterEach(async () => {
    await s.close();
  });

  function get(confirmable = true): Promise<InboundResponse> {
    return new Promise((resolve, reject) =>
      ep.request(
        raw.peer,
        { code: 1, options: [{ number: 11, value: Buffer.from('temperature') }], confirmable },
        {
          onResponse: (r) => {
            resolve(r);
            return true;
          },
          onError: reject,
        },
      ),
    );
  }

  test('Figure 17/18: the request is 41 01 MID TT bb "temperature"; a lost request is retransmitted identically', async () => {
    const p = get();
    const first = await raw.next();
    assert.equal(first.data.length, 17);
    assert.deepEqual(first.data.subarray(0, 2), b('41 01'));
    assert.deepEqual(first.data.subarray(5), b('bb', '"temperature"'));
    const again = await raw.next(); // not answered: retransmitted after ACK_TIMEOUT
    assert.deepEqual(again.data, first.data);
    raw.send(first.from, Buffer.concat([b('61 45'), first.data.subarray(2, 5), b('ff', '"22.3 C"')]));
    const res = await p;
    assert.equal(res.message.payload.toString(), '22.3 C');
    assert.equal(res.piggybacked, true);
  });

  test('Figure 20: empty ACK, then CON 2.05 (MID 0xad7b) → the client sends 60 00 ad 7b', async () => {
    const p = get();
    const r = await raw.next();
    raw.send(r.from, Buffer.concat([b('60 00'), r.data.subarray(2, 4)]));
    raw.send(r.from, Buffer.concat([b('41 45 ad 7b'), r.data.subarray(4, 5), b('ff', '"22.3 C"')]));
    assert.equal((await p).piggybacked, false);
    assert.deepEqual((await raw.next()).data, b('60 00 ad 7b'));
  });

  test('Figure 21: a CON response nobody waits for (client rebooted) → 70 00 ad 7c', async () => {
    raw.send(selfOf(ep), b('41 45 ad 7c', '64', 'ff', '"22.3 C"'));
    assert.deepEqual((await raw.next()).data, b('70 00 ad 7c'));
  });

  test('Figure 22: NON request 51 01 MID TT bb "temperature"; NON response matched by token', async () => {
    const p = get(false);
    const r = await raw.next();
    assert.deepEqual(r.data.subarray(0, 2), b('51 01'));
    raw.send(r.from, Buffer.concat([b('51 45 ad 7d'), r.data.subarray(4, 5), b('ff', '"22.3 C"')]));
    const res = await p;
    assert.equal(res.message.type, MessageType.NON);
    assert.equal(res.message.messageId, 0xad7d);
  });
});
