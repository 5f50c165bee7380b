/**
 * Message layer (RFC 7252 §4) over the in-memory transport: Message IDs,
 * retransmission, ACK/RST, ping, rejection, deduplication, separate responses.
 * Time is a VirtualClock: timers fire only when a test advances it, so no
 * test waits for real time and none depends on the machine's load.
 */
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { afterEach, beforeEach, test } from 'node:test';
import { encodeMessage } from '../../src/codec/message.js';
import { MessageType } from '../../src/constants/codes.js';
import { DEFAULT_TRANSMISSION, deriveParameters } from '../../src/constants/transmission.js';
import type { Endpoint } from '../../src/endpoint/endpoint.js';
import { ResetError, TimeoutError } from '../../src/errors.js';
import type { InboundResponse } from '../../src/exchange/exchange-layer.js';
import { VirtualClock } from '../../src/util/clock.js';
import { type MemorySetup, memorySetup, type RawPeer, type Received, selfOf } from '../helpers/memory.js';

const { CON, NON, ACK } = MessageType;
let s: MemorySetup;
let clock: VirtualClock;
beforeEach(() => {
  clock = new VirtualClock();
  s = memorySetup(clock);
});
afterEach(async () => {
  await s.close();
});

/** Sends a request from `ep` to `raw`, returning a promise of the outcome. */
function req(
  ep: Endpoint,
  raw: RawPeer,
  opts: { confirmable?: boolean; timeoutMs?: number } = {},
): Promise<InboundResponse> {
  return new Promise((resolve, reject) => {
    ep.request(
      raw.peer,
      { code: 1, confirmable: opts.confirmable ?? true },
      {
        onResponse: (r) => {
          resolve(r);
          return true;
        },
        onError: reject,
        ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      },
    );
  });
}

test('§4.4: the initial Message ID is random and IDs increment by one', async () => {
  const raw = s.raw();
  const firsts: number[] = [];
  for (let i = 0; i < 6; i++) {
    const ep = s.endpoint({ transmission: { nstart: 10 } }, '10.0.0.1', 41000 + i);
    raw.clear();
    void req(ep, raw, { confirmable: false }).catch(() => {});
    void req(ep, raw, { confirmable: false }).catch(() => {});
    void req(ep, raw, { confirmable: false }).catch(() => {});
    const got = await raw.waitFor(3);
    const mids = got.map((r) => r.msg!.messageId);
    assert.equal(mids[1], (mids[0]! + 1) & 0xffff);
    assert.equal(mids[2], (mids[0]! + 2) & 0xffff);
    firsts.push(mids[0]!);
  }
  assert.ok(new Set(firsts).size >= 4, `initial MIDs look random: ${firsts.join(',')}`);
  // The MID wraps around modulo 2^16.
  const ml = s.endpoint().messageLayer;
  const seen = new Set<number>();
  for (let i = 0; i < 70000; i++) {
    const m = ml.nextMessageId();
    assert.ok(m >= 0 && m <= 0xffff);
    seen.add(m);
  }
  assert.equal(seen.size, 65536);
});

test('§4.2: CON retransmission — initial timeout in [ACK_TIMEOUT, ACK_TIMEOUT*ACK_RANDOM_FACTOR], doubling, MAX_RETRANSMIT times, then TimeoutError', async () => {
  const raw = s.raw();
  // ACK_TIMEOUT 100 ms, on the virtual clock: the timings below are exact.
  const ep = s.endpoint({ transmission: { ackTimeout: 100, ackRandomFactor: 1.5, maxRetransmit: 3 } });
  const sends: number[] = [];
  const onSent = (m: unknown) => {
    if ((m as { peer: { key: string } }).peer.key === raw.peer.key) sends.push(clock.now());
  };
  dc.subscribe('coapkit:message:sent', onSent);
  let err: unknown;
  let tEnd = -1;
  try {
    const outcome = req(ep, raw).then(
      () => assert.fail('no response expected'),
      (e: unknown) => {
        tEnd = clock.now();
        return e;
      },
    );
    await clock.advance(3000);
    err = await outcome;
  } finally {
    dc.unsubscribe('coapkit:message:sent', onSent);
  }
  assert.ok(err instanceof TimeoutError, String(err));
  await raw.waitFor(4);
  await clock.settle();
  const got = raw.received;
  assert.equal(got.length, 4, 'one transmission + exactly MAX_RETRANSMIT (3) retransmissions');
  assert.equal(sends.length, 4);
  for (const r of got)
    assert.deepEqual(r.data, got[0]!.data, 'retransmissions are byte-identical (same MID)');
  const gaps = sends.slice(1).map((t, i) => t - sends[i]!);
  const last = tEnd - sends[3]!;
  const shown = `${gaps.map((g) => g.toFixed(1)).join(', ')}, then ${last.toFixed(1)}`;
  // Timeouts T, 2T, 4T, 8T with one random draw T in [100, 150] (§4.2).
  const near = (a: number, b: number) => Math.abs(a - b) < 1e-6;
  const t = gaps[0]!;
  assert.ok(t >= 100 && t <= 150, `initial timeout in [ACK_TIMEOUT, ACK_TIMEOUT*1.5]: ${shown}`);
  assert.ok(near(gaps[1]!, 2 * t), `second timeout doubles: ${shown}`);
  assert.ok(near(gaps[2]!, 4 * t), `third timeout doubles again: ${shown}`);
  // The exchange's own limit (MAX_TRANSMIT_WAIT = 2250 ms here) may end it at the same moment.
  assert.ok(
    near(last, 8 * t) || (last < 8 * t && near(tEnd, 1000 + 2250)),
    `TimeoutError one more doubled timeout later: ${shown}`,
  );
});

/** The first datagram `raw` receives once the clock has moved `ms` (a retransmission, a late reply). */
async function nextAfter(raw: RawPeer, ms: number): Promise<Received> {
  const n = raw.received.length;
  await clock.advance(ms);
  return (await raw.waitFor(n + 1))[n]!;
}

/** Lets in-flight datagrams land, then asserts nothing more arrives while the clock moves `ms`. */
async function assertQuiet(raw: RawPeer, ms: number, what: string): Promise<void> {
  await clock.settle();
  const n = raw.received.length;
  await clock.advance(ms);
  assert.equal(raw.received.length, n, what);
}

test('§4.2: an empty ACK stops retransmission; the separate CON response is acknowledged', async () => {
  const raw = s.raw();
  const ep = s.endpoint({ transmission: { ackTimeout: 150, ackRandomFactor: 1.5, maxRetransmit: 3 } });
  const p = req(ep, raw, { timeoutMs: 5000 });
  const r1 = await raw.next();
  raw.send(r1.from, { type: ACK, code: 0, messageId: r1.msg!.messageId });
  await assertQuiet(raw, 600, 'no retransmission after the ACK');
  const before = raw.received.length;
  raw.send(r1.from, {
    type: CON,
    code: 0x45,
    messageId: 0x1234,
    token: r1.msg!.token,
    payload: Buffer.from('late'),
  });
  const res = await p;
  assert.equal(res.piggybacked, false);
  assert.equal(res.message.payload.toString(), 'late');
  const ack = await raw.waitFor(before + 1).then((all) => all[before]!);
  assert.deepEqual(ack.data, Buffer.from([0x60, 0, 0x12, 0x34]), 'empty ACK for the separate response');
  // A retransmission of the separate response gets the same ACK again (dedup).
  raw.send(r1.from, {
    type: CON,
    code: 0x45,
    messageId: 0x1234,
    token: r1.msg!.token,
    payload: Buffer.from('late'),
  });
  const ack2 = await raw.next();
  assert.deepEqual(ack2.data, ack.data);
});

test('§4.2: a piggybacked response in the ACK completes the exchange', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  const p = req(ep, raw);
  const r1 = await raw.next();
  raw.send(r1.from, {
    type: ACK,
    code: 0x45,
    messageId: r1.msg!.messageId,
    token: r1.msg!.token,
    payload: Buffer.from('hi'),
  });
  const res = await p;
  assert.equal(res.piggybacked, true);
  assert.equal(res.message.payload.toString(), 'hi');
  await assertQuiet(raw, 300, 'nothing sent after a piggybacked response');
});

test('§4.2: RST for a CON request → ResetError', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  const p = req(ep, raw);
  const r1 = await raw.next();
  raw.send(r1.from, Buffer.from([0x70, 0, r1.data[2]!, r1.data[3]!]));
  await assert.rejects(p, ResetError);
});

test('§4.3: CoAP ping — an empty CON is answered with an RST; ping() resolves on the RST', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  raw.send(selfOf(ep), Buffer.from([0x40, 0x00, 0xab, 0xcd]));
  const r = await raw.next();
  assert.deepEqual(r.data, Buffer.from([0x70, 0x00, 0xab, 0xcd]));
  // And in the other direction.
  const p = ep.ping(raw.peer);
  const pingMsg = await raw.next();
  assert.equal(pingMsg.data.length, 4);
  assert.equal(pingMsg.data[0], 0x40);
  assert.equal(pingMsg.data[1], 0);
  raw.send(pingMsg.from, Buffer.from([0x70, 0, pingMsg.data[2]!, pingMsg.data[3]!]));
  const rtt = await p;
  assert.ok(typeof rtt === 'number' && rtt >= 0);
});

test('§4.3: an empty NON is ignored', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  raw.send(selfOf(ep), Buffer.from([0x50, 0x00, 0x00, 0x01]));
  await clock.advance(50);
  assert.equal(raw.received.length, 0);
});

test('§4.1: an empty message with a token or payload is a format error → RST for CON, ignored for NON', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  raw.send(selfOf(ep), Buffer.from([0x41, 0x00, 0x00, 0x07, 0xaa]));
  const r = await raw.next();
  assert.deepEqual(r.data, Buffer.from([0x70, 0, 0, 7]));
  raw.send(selfOf(ep), Buffer.from([0x50, 0x00, 0x00, 0x08, 0xff, 0x41]));
  await clock.advance(50);
  assert.equal(raw.received.length, 1);
});

test('§4.2/§4.3: a malformed CON is rejected with RST, a malformed NON is silently ignored', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  let calls = 0;
  ep.handler = () => {
    calls++;
    return { code: 0x45 };
  };
  // GET with option delta 15 (reserved).
  raw.send(selfOf(ep), Buffer.from([0x40, 0x01, 0x00, 0x11, 0xf1, 0x00]));
  const r = await raw.next();
  assert.deepEqual(r.data, Buffer.from([0x70, 0, 0, 0x11]));
  // TKL 9 (reserved) in a CON.
  raw.send(selfOf(ep), Buffer.from([0x49, 0x01, 0x00, 0x12, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
  assert.deepEqual((await raw.next()).data, Buffer.from([0x70, 0, 0, 0x12]));
  // Payload marker with no payload, NON.
  raw.send(selfOf(ep), Buffer.from([0x50, 0x01, 0x00, 0x13, 0xff]));
  // Truncated option value, NON.
  raw.send(selfOf(ep), Buffer.from([0x50, 0x01, 0x00, 0x14, 0xb5, 0x61]));
  await clock.advance(60);
  assert.equal(raw.received.length, 2);
  assert.equal(calls, 0);
});

test('§3: a message with an unknown version is silently ignored', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  ep.handler = () => ({ code: 0x45 });
  raw.send(selfOf(ep), Buffer.from([0x80, 0x01, 0x00, 0x01])); // version 2
  raw.send(selfOf(ep), Buffer.from([0x00, 0x01, 0x00, 0x02])); // version 0
  raw.send(selfOf(ep), Buffer.from([0x40, 0x01])); // too short
  await clock.advance(60);
  assert.equal(raw.received.length, 0);
});

test('§4.5: a duplicate CON request gets the same piggybacked response bytes; the handler runs once', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  let calls = 0;
  ep.handler = () => ({ code: 0x45, payload: Buffer.from(`call ${++calls}`) });
  const request = encodeMessage({ type: CON, code: 1, messageId: 0x0a0b, token: Buffer.from([1, 2, 3]) });
  raw.send(selfOf(ep), request);
  const a = await raw.next();
  raw.send(selfOf(ep), request);
  const b = await raw.next();
  raw.send(selfOf(ep), request);
  const c = await raw.next();
  assert.equal(calls, 1);
  assert.equal(a.msg!.type, ACK);
  assert.equal(a.msg!.payload.toString(), 'call 1');
  assert.deepEqual(b.data, a.data);
  assert.deepEqual(c.data, a.data);
  // Same MID from another endpoint is a different exchange.
  const raw2 = s.raw('10.0.0.10');
  raw2.send(selfOf(ep), request);
  assert.equal((await raw2.next()).msg!.payload.toString(), 'call 2');
});

test('§4.5: a duplicate NON request is ignored (handler once, one response)', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  let calls = 0;
  ep.handler = () => ({ code: 0x45, payload: Buffer.from(`call ${++calls}`) });
  const request = encodeMessage({ type: NON, code: 1, messageId: 77, token: Buffer.from([9]) });
  raw.send(selfOf(ep), request);
  raw.send(selfOf(ep), request);
  await clock.advance(30);
  raw.send(selfOf(ep), request);
  await clock.advance(60);
  assert.equal(calls, 1);
  assert.equal(raw.received.length, 1);
  assert.equal(raw.received[0]!.msg!.type, NON, 'a NON request gets a NON response');
  assert.deepEqual(raw.received[0]!.msg!.token, Buffer.from([9]));
});

test('§5.2.2: slow handler — duplicates are ignored while it runs, then get the empty ACK; the CON response is retransmitted until ACKed', async () => {
  const raw = s.raw();
  const ep = s.endpoint({ separateResponseDelayMs: 100 });
  let calls = 0;
  ep.handler = async () => {
    calls++;
    await new Promise<void>((r) => clock.setTimer(() => r(), 400));
    return { code: 0x45, payload: Buffer.from('slow') };
  };
  const request = encodeMessage({ type: CON, code: 1, messageId: 500, token: Buffer.from([7, 7]) });
  raw.send(selfOf(ep), request);
  await clock.advance(30);
  raw.send(selfOf(ep), request); // while running, before the empty ACK
  await clock.advance(69); // 99 ms: not yet separateResponseDelayMs
  assert.equal(raw.received.length, 0, 'the early duplicate got nothing; no ACK before 100 ms');
  const ack = await nextAfter(raw, 1);
  assert.deepEqual(ack.data, Buffer.from([0x60, 0, 0x01, 0xf4]), 'empty ACK after separateResponseDelayMs');
  assert.equal(raw.received.length, 1);
  raw.send(selfOf(ep), request);
  const ack2 = await raw.next();
  assert.deepEqual(ack2.data, ack.data, 'later duplicates get the empty ACK again');
  await clock.advance(299); // 399 ms: the handler is still running
  assert.equal(raw.received.length, 2);
  const res = await nextAfter(raw, 1);
  assert.equal(res.msg!.type, CON, 'separate response is CON');
  assert.deepEqual(res.msg!.token, Buffer.from([7, 7]));
  assert.notEqual(res.msg!.messageId, 500, 'separate response has its own MID');
  assert.equal(res.msg!.payload.toString(), 'slow');
  // Not acknowledged → retransmitted with the same bytes, within ACK_TIMEOUT × ACK_RANDOM_FACTOR (75 ms).
  const again = await nextAfter(raw, 75);
  assert.deepEqual(again.data, res.data);
  raw.send(selfOf(ep), { type: ACK, code: 0, messageId: res.msg!.messageId });
  await assertQuiet(raw, 400, 'ACK stopped retransmission');
  assert.equal(calls, 1);
});

test('§5.2.2: the client retransmits its request when the separate response has not come and the empty ACK was lost', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  const p = req(ep, raw, { timeoutMs: 3000 });
  const r1 = await raw.next();
  const r2 = await nextAfter(raw, 75); // retransmission (we "lost" the ACK)
  assert.deepEqual(r2.data, r1.data);
  // Separate CON response before any ACK: implies the request arrived; retransmission stops.
  raw.send(r1.from, { type: CON, code: 0x45, messageId: 9, token: r1.msg!.token });
  const res = await p;
  assert.equal(res.piggybacked, false);
  await raw.until((r) => Buffer.compare(r.data, Buffer.from([0x60, 0, 0, 9])) === 0);
  await assertQuiet(raw, 400, 'no more retransmissions');
});

test('§4.2: an unmatched CON response is rejected with RST, an unmatched NON response too', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  raw.send(selfOf(ep), { type: CON, code: 0x45, messageId: 3, token: Buffer.from([1, 2, 3, 4]) });
  assert.deepEqual((await raw.next()).data, Buffer.from([0x70, 0, 0, 3]));
  raw.send(selfOf(ep), { type: NON, code: 0x45, messageId: 4, token: Buffer.from([1, 2, 3, 4]) });
  assert.deepEqual((await raw.next()).data, Buffer.from([0x70, 0, 0, 4]));
  // An unmatched piggybacked ACK (no such MID) is ignored: ACKs are never answered.
  raw.send(selfOf(ep), { type: ACK, code: 0x45, messageId: 5, token: Buffer.from([1]) });
  raw.send(selfOf(ep), Buffer.from([0x70, 0, 0, 6]));
  await clock.advance(60);
  assert.equal(raw.received.length, 2);
});

test('§5.3.2: a response from another endpoint with the same token is not matched; the real one still is', async () => {
  const raw = s.raw('10.0.0.9', 5683);
  const other = s.raw('10.0.0.9', 5684);
  const ep = s.endpoint();
  const p = req(ep, raw, { timeoutMs: 3000 });
  const r1 = await raw.next();
  raw.send(r1.from, { type: ACK, code: 0, messageId: r1.msg!.messageId });
  other.send(r1.from, {
    type: CON,
    code: 0x45,
    messageId: 100,
    token: r1.msg!.token,
    payload: Buffer.from('evil'),
  });
  assert.deepEqual((await other.next()).data, Buffer.from([0x70, 0, 0, 100]), 'impostor gets RST');
  // Also an ACK with the right MID from the wrong port must not complete anything.
  raw.send(r1.from, {
    type: CON,
    code: 0x45,
    messageId: 101,
    token: r1.msg!.token,
    payload: Buffer.from('real'),
  });
  const res = await p;
  assert.equal(res.message.payload.toString(), 'real');
  assert.equal(res.peer.port, 5683);
});

test('§5.3.2: a piggybacked ACK from the wrong endpoint (same MID and token) is ignored', async () => {
  const raw = s.raw('10.0.0.9', 5683);
  const other = s.raw('10.0.0.9', 5684);
  const ep = s.endpoint();
  const p = req(ep, raw, { timeoutMs: 3000 });
  const r1 = await raw.next();
  other.send(r1.from, {
    type: ACK,
    code: 0x45,
    messageId: r1.msg!.messageId,
    token: r1.msg!.token,
    payload: Buffer.from('evil'),
  });
  const r2 = await nextAfter(raw, 75); // still retransmitting
  assert.deepEqual(r2.data, r1.data);
  raw.send(r1.from, {
    type: ACK,
    code: 0x45,
    messageId: r1.msg!.messageId,
    token: r1.msg!.token,
    payload: Buffer.from('real'),
  });
  assert.equal((await p).message.payload.toString(), 'real');
});

test('§4.8.2: derived transmission parameters for the defaults', () => {
  const d = deriveParameters(DEFAULT_TRANSMISSION);
  assert.equal(d.maxTransmitSpan, 45_000);
  assert.equal(d.maxTransmitWait, 93_000);
  assert.equal(d.exchangeLifetime, 247_000);
  assert.equal(d.nonLifetime, 145_000);
  const ep = s.endpoint();
  assert.equal(ep.params.ackTimeout, 50);
  assert.equal(ep.params.processingDelay, 50, 'PROCESSING_DELAY follows ACK_TIMEOUT');
  assert.equal(ep.derived.maxTransmitSpan, 50 * 7 * 1.5);
  const dflt = s.endpoint({ transmission: { ...DEFAULT_TRANSMISSION } });
  assert.equal(dflt.derived.exchangeLifetime, 247_000);
});

test('§4.5: dedup memory lasts EXCHANGE_LIFETIME for CON and NON_LIFETIME for NON', async () => {
  // ackTimeout 40, maxRetransmit 1, maxLatency 200 → span 60, exchange 60+400+40=500, non 260.
  const raw = s.raw();
  const ep = s.endpoint({
    transmission: { ackTimeout: 40, ackRandomFactor: 1.5, maxRetransmit: 1, maxLatency: 200 },
  });
  assert.equal(ep.derived.exchangeLifetime, 500);
  assert.equal(ep.derived.nonLifetime, 260);
  let calls = 0;
  ep.handler = () => ({ code: 0x45, payload: Buffer.from(String(++calls)) });
  const con = encodeMessage({ type: CON, code: 1, messageId: 1, token: Buffer.from([1]) });
  const non = encodeMessage({ type: NON, code: 1, messageId: 2, token: Buffer.from([2]) });
  raw.send(selfOf(ep), con);
  raw.send(selfOf(ep), non);
  await raw.waitFor(2);
  await clock.advance(259); // both still remembered just before NON_LIFETIME
  raw.send(selfOf(ep), con);
  raw.send(selfOf(ep), non);
  await raw.waitFor(3);
  await clock.settle();
  assert.equal(raw.received.length, 3, 'the NON duplicate is ignored within NON_LIFETIME');
  assert.equal(calls, 2);
  await clock.advance(121); // 380 ms: NON forgotten (260), CON remembered (500)
  raw.send(selfOf(ep), con);
  raw.send(selfOf(ep), non);
  await raw.waitFor(5);
  assert.equal(calls, 3, 'NON processed again after NON_LIFETIME; CON replayed');
  assert.deepEqual(raw.received[3]!.data.subarray(0, 4), raw.received[0]!.data.subarray(0, 4));
  await clock.advance(119); // 499 ms: the CON is still remembered
  raw.send(selfOf(ep), con);
  await raw.waitFor(6);
  assert.equal(calls, 3);
  await clock.advance(2); // 501 ms: now the CON is forgotten too
  raw.send(selfOf(ep), con);
  await raw.waitFor(7);
  assert.equal(calls, 4);
});

test('§4.3: an RST answering a NON request fails it with ResetError', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  const p = req(ep, raw, { confirmable: false, timeoutMs: 3000 });
  const r1 = await raw.next();
  assert.equal(r1.msg!.type, NON);
  // An RST with another MID does nothing.
  raw.send(
    r1.from,
    Buffer.from([0x70, 0, ((r1.msg!.messageId + 1) >> 8) & 0xff, (r1.msg!.messageId + 1) & 0xff]),
  );
  await clock.advance(30);
  raw.send(r1.from, Buffer.from([0x70, 0, r1.data[2]!, r1.data[3]!]));
  await assert.rejects(p, ResetError);
});

test('§4.2: an ACK carrying a request code (not a response) is ignored; retransmission continues', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  const p = req(ep, raw, { timeoutMs: 3000 });
  const r1 = await raw.next();
  raw.send(r1.from, { type: ACK, code: 0x01, messageId: r1.msg!.messageId, token: r1.msg!.token });
  const r2 = await nextAfter(raw, 75);
  assert.deepEqual(r2.data, r1.data, 'still retransmitting');
  raw.send(r1.from, { type: ACK, code: 0x45, messageId: r1.msg!.messageId, token: r1.msg!.token });
  assert.equal((await p).message.code, 0x45);
});

test('§4.4/§4.5: a new request that reuses a remembered MID with another token is processed, not answered with the stale reply', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  let calls = 0;
  ep.handler = () => ({ code: 0x45, payload: Buffer.from(`call ${++calls}`) });
  const first = encodeMessage({ type: CON, code: 1, messageId: 0x0505, token: Buffer.from([1, 1]) });
  const reused = encodeMessage({ type: CON, code: 1, messageId: 0x0505, token: Buffer.from([2, 2]) });
  raw.send(selfOf(ep), first);
  const a = await raw.next();
  raw.send(selfOf(ep), reused);
  const b = await raw.next();
  assert.equal(a.msg!.payload.toString(), 'call 1');
  assert.equal(b.msg!.payload.toString(), 'call 2');
  assert.deepEqual(b.msg!.token, Buffer.from([2, 2]));
  // A real retransmission of the newer message still gets its reply replayed.
  raw.send(selfOf(ep), reused);
  assert.deepEqual((await raw.next()).data, b.data);
  assert.equal(calls, 2);
});
