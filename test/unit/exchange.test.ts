/**
 * Exchange layer (RFC 7252 §5, §4.7): tokens, NSTART, PROBING_RATE,
 * long-lived exchanges, aborts — and the diagnostics channels. Time is a
 * VirtualClock: timers fire only when a test advances it.
 */
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { afterEach, beforeEach, test } from 'node:test';
import { MessageType } from '../../src/constants/codes.js';
import type { Endpoint } from '../../src/endpoint/endpoint.js';
import { AbortError, TimeoutError } from '../../src/errors.js';
import type { InboundResponse, OutgoingRequest } from '../../src/exchange/exchange-layer.js';
import { randomToken } from '../../src/exchange/tokens.js';
import { VirtualClock } from '../../src/util/clock.js';
import { type MemorySetup, memorySetup, type RawPeer, type Received, selfOf } from '../helpers/memory.js';

const { CON, NON, ACK } = MessageType;
let s: MemorySetup;
let clock: VirtualClock;
beforeEach(() => {
  clock = new VirtualClock();
  s = memorySetup(clock);
});

/** The first datagram `raw` receives once the clock has moved `ms` (a retransmission). */
async function nextAfter(raw: RawPeer, ms: number): Promise<Received> {
  const n = raw.received.length;
  await clock.advance(ms);
  return (await raw.waitFor(n + 1))[n]!;
}
afterEach(async () => {
  await s.close();
});

function req(
  ep: Endpoint,
  raw: RawPeer,
  r: Partial<OutgoingRequest> = {},
  extra: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<InboundResponse> {
  return new Promise((resolve, reject) => {
    ep.request(
      raw.peer,
      { code: 1, ...r },
      {
        onResponse: (x) => {
          resolve(x);
          return true;
        },
        onError: reject,
        ...extra,
      },
    );
  });
}

/** Answers every request `raw` receives with a piggybacked 2.05 echoing the token. */
function autoAnswer(raw: RawPeer, payload = 'ok'): void {
  const t = raw.transport;
  const orig = (t as unknown as { handlers: { message: (d: Buffer, f: unknown) => void } }).handlers;
  const inner = orig.message;
  orig.message = (d, f) => {
    inner(d, f);
    const last = raw.received.at(-1)!;
    const m = last.msg;
    if (!m || m.code === 0 || m.code >> 5 !== 0) return;
    raw.send(last.from, {
      type: m.type === CON ? ACK : NON,
      code: 0x45,
      messageId: m.type === CON ? m.messageId : (m.messageId + 1000) & 0xffff,
      token: m.token,
      payload: Buffer.from(payload),
    });
  };
}

test('§5.3.1: tokens are 8 random bytes by default', async () => {
  const raw = s.raw();
  autoAnswer(raw);
  const ep = s.endpoint({ transmission: { nstart: 50 } });
  await Promise.all(Array.from({ length: 50 }, () => req(ep, raw)));
  const tokens = raw.received.map((r) => r.msg!.token.toString('hex'));
  assert.equal(new Set(tokens).size, 50, 'all distinct');
  for (const t of tokens) assert.equal(t.length, 16);
  // Bits look random: every bit position takes both values over 50 tokens.
  const all = raw.received.map((r) => r.msg!.token);
  for (let bit = 0; bit < 64; bit++) {
    const ones = all.filter((t) => (t[bit >> 3]! >> (bit & 7)) & 1).length;
    assert.ok(ones > 0 && ones < 50, `bit ${bit}`);
  }
  assert.equal(randomToken(0).length, 0);
  assert.notDeepEqual(randomToken(8), randomToken(8));
});

test('§5.3.1: token length is configurable 0-8', async () => {
  for (const len of [0, 1, 4, 8]) {
    const raw = s.raw('10.0.0.9', 6000 + len);
    autoAnswer(raw);
    const ep = s.endpoint({ tokenLength: len }, '10.0.0.1', 42000 + len);
    const res = await req(ep, raw);
    assert.equal(raw.received[0]!.msg!.token.length, len);
    assert.equal(res.message.token.length, len);
  }
  assert.throws(() => s.endpoint({ tokenLength: 9 }), RangeError);
  assert.throws(() => s.endpoint({ tokenLength: -1 }), RangeError);
});

test('§5.3.1: with the empty token, concurrent requests to one peer are serialized (none is lost)', async () => {
  const raw = s.raw();
  autoAnswer(raw);
  const ep = s.endpoint({ tokenLength: 0, transmission: { nstart: 4 } });
  const results = await Promise.all([req(ep, raw), req(ep, raw), req(ep, raw)]);
  assert.equal(results.length, 3);
  assert.equal(raw.received.length, 3);
  for (const r of raw.received) assert.equal(r.msg!.token.length, 0);
});

test('an explicit token may be reused: the previous exchange is replaced (observe re-registration)', async () => {
  const raw = s.raw();
  const ep = s.endpoint({ transmission: { nstart: 4 } });
  const token = Buffer.from([1, 2, 3]);
  let firstSettled = false;
  void req(ep, raw, { token }).then(
    () => {
      firstSettled = true;
    },
    () => {
      firstSettled = true;
    },
  );
  const second = req(ep, raw, { token, confirmable: false });
  await raw.waitFor(2);
  const nonReq = raw.received.find((r) => r.msg!.type === NON)!;
  raw.send(nonReq.from, { type: NON, code: 0x45, messageId: 9, token, payload: Buffer.from('x') });
  assert.equal((await second).message.payload.toString(), 'x');
  assert.equal(firstSettled, false);
});

test('§4.7: NSTART=1 — a second request to the same peer waits until the first is acknowledged', async () => {
  const raw = s.raw();
  const ep = s.endpoint({ transmission: { ackTimeout: 300 } });
  const p1 = req(ep, raw, {}, { timeoutMs: 5000 });
  const p2 = req(ep, raw, {}, { timeoutMs: 5000 });
  const r1 = await raw.next();
  await clock.advance(100);
  assert.equal(raw.received.length, 1, 'second request held back');
  // An empty ACK ends the first "outstanding interaction" for NSTART purposes.
  raw.send(r1.from, { type: ACK, code: 0, messageId: r1.msg!.messageId });
  const r2 = await raw.until((r) => r.msg !== undefined && !r.msg.token.equals(r1.msg!.token));
  raw.send(r2.from, { type: ACK, code: 0x45, messageId: r2.msg!.messageId, token: r2.msg!.token });
  await p2;
  raw.send(r1.from, { type: CON, code: 0x45, messageId: 77, token: r1.msg!.token });
  await p1;
  // Another peer is not affected by the first peer's outstanding request.
  const other = s.raw('10.0.0.20');
  void req(ep, raw, {}, { timeoutMs: 500 }).catch(() => {});
  void req(ep, other, {}, { timeoutMs: 500 }).catch(() => {});
  await other.next();
});

test('§4.7: a response (separate, before any ACK) also frees the NSTART slot', async () => {
  const raw = s.raw();
  const ep = s.endpoint({ transmission: { ackTimeout: 300 } });
  const p1 = req(ep, raw, { confirmable: false }, { timeoutMs: 5000 });
  const p2 = req(ep, raw, {}, { timeoutMs: 5000 });
  const r1 = await raw.next();
  await clock.advance(50);
  assert.equal(raw.received.length, 1);
  raw.send(r1.from, { type: NON, code: 0x45, messageId: 1, token: r1.msg!.token });
  await p1;
  const r2 = await raw.until((r) => r.msg !== undefined && !r.msg.token.equals(r1.msg!.token));
  raw.send(r2.from, { type: ACK, code: 0x45, messageId: r2.msg!.messageId, token: r2.msg!.token });
  await p2;
});

test('§4.7: NSTART=4 allows four parallel interactions; the fifth waits', async () => {
  const raw = s.raw();
  const ep = s.endpoint({ transmission: { nstart: 4, ackTimeout: 300 } });
  const ps = Array.from({ length: 5 }, () => req(ep, raw, {}, { timeoutMs: 5000 }));
  await raw.waitFor(4);
  await clock.advance(80);
  assert.equal(raw.received.length, 4);
  const first = raw.received[0]!;
  raw.send(first.from, { type: ACK, code: 0x45, messageId: first.msg!.messageId, token: first.msg!.token });
  await raw.until(() => new Set(raw.received.map((r) => r.msg!.token.toString('hex'))).size === 5);
  for (const r of raw.received.slice(1)) {
    raw.send(r.from, { type: ACK, code: 0x45, messageId: r.msg!.messageId, token: r.msg!.token });
  }
  await Promise.all(ps);
});

test('§4.7: PROBING_RATE — NON requests toward a silent peer are held to PROBING_RATE bytes/s after the first 1152 bytes', async () => {
  const raw = s.raw();
  // 2000 B/s; each request ~ 4 + 8 + 1 + 400 bytes.
  const ep = s.endpoint({ transmission: { nstart: 100, probingRate: 2000, ackTimeout: 20 } });
  const payload = Buffer.alloc(400, 0x61);
  const t0 = clock.now();
  const sent: number[] = [];
  const onSent = (m: unknown) => {
    if ((m as { peer: { key: string } }).peer.key === raw.peer.key) sent.push(clock.now());
  };
  dc.subscribe('coapkit:message:sent', onSent);
  try {
    for (let i = 0; i < 6; i++)
      void req(ep, raw, { confirmable: false, payload }, { timeoutMs: 3000 }).catch(() => {});
    await raw.waitFor(2);
    await clock.advance(20);
    assert.equal(raw.received.length, 2, 'burst: only what fits in 1152 bytes goes at once');
    await clock.advance(2000);
    await raw.waitFor(6);
  } finally {
    dc.unsubscribe('coapkit:message:sent', onSent);
  }
  const sizes = raw.received.map((r) => r.data.length);
  const total = sizes.reduce((a, b) => a + b, 0);
  const elapsed = sent.at(-1)! - t0;
  const expected = (total / 2000) * 1000;
  // Each held request goes out the moment the average rate allows it: exactly then, on this clock.
  assert.ok(
    elapsed >= expected - 1e-6 && elapsed < expected + 1,
    `average rate = PROBING_RATE: ${total} B in ${elapsed.toFixed(1)} ms (expected ${expected.toFixed(1)})`,
  );
  // Once the peer answers, the limit no longer applies.
  raw.clear();
  raw.send(selfOf(ep), Buffer.from([0x50, 0, 0, 1])); // anything heard resets the count
  await clock.settle();
  for (let i = 0; i < 2; i++)
    void req(ep, raw, { confirmable: false, payload }, { timeoutMs: 3000 }).catch(() => {});
  await raw.waitFor(2, 100);
});

test('a long-lived exchange keeps receiving responses while onResponse returns false', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  const got: string[] = [];
  let resolveDone: () => void;
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  ep.request(
    raw.peer,
    { code: 1 },
    {
      onResponse: (r) => {
        got.push(r.message.payload.toString());
        if (got.length === 3) resolveDone();
        return got.length === 3;
      },
      onError: (e) => assert.fail(e),
      timeoutMs: 200,
    },
  );
  const r1 = await raw.next();
  raw.send(r1.from, {
    type: ACK,
    code: 0x45,
    messageId: r1.msg!.messageId,
    token: r1.msg!.token,
    payload: Buffer.from('1'),
  });
  await clock.advance(250); // past the overall timeout: a long-lived exchange is not timed out after the first response
  raw.send(r1.from, {
    type: NON,
    code: 0x45,
    messageId: 500,
    token: r1.msg!.token,
    payload: Buffer.from('2'),
  });
  raw.send(r1.from, {
    type: CON,
    code: 0x45,
    messageId: 501,
    token: r1.msg!.token,
    payload: Buffer.from('3'),
  });
  await done;
  assert.deepEqual(got, ['1', '2', '3']);
  const ack = await raw.next();
  assert.deepEqual(ack.data, Buffer.from([0x60, 0, 0x01, 0xf5]));
});

test('overall timeout and AbortSignal end an exchange with typed errors', async () => {
  const raw = s.raw();
  const ep = s.endpoint({ transmission: { nstart: 5 } });
  const timed = req(ep, raw, { confirmable: false }, { timeoutMs: 60 });
  await clock.advance(59);
  let early = true;
  timed
    .catch(() => {})
    .finally(() => {
      early = false;
    });
  await clock.settle();
  assert.ok(early, 'not timed out before timeoutMs');
  await clock.advance(1);
  await assert.rejects(timed, TimeoutError);
  const ac = new AbortController();
  const p = req(ep, raw, {}, { signal: ac.signal });
  await raw.next();
  ac.abort();
  await assert.rejects(p, AbortError);
  await clock.settle();
  const n = raw.received.length;
  await clock.advance(200);
  assert.equal(raw.received.length, n, 'an aborted CON is not retransmitted');
  await assert.rejects(req(ep, raw, {}, { signal: AbortSignal.abort() }), AbortError);
});

test('diagnostics channels: resolved, sent, retransmitted, received, matched, duplicate, rejected, timeout', async () => {
  const events: Record<string, unknown[]> = {};
  const names = [
    'coapkit:dns:resolved',
    'coapkit:message:sent',
    'coapkit:message:retransmitted',
    'coapkit:message:received',
    'coapkit:exchange:matched',
    'coapkit:message:duplicate',
    'coapkit:message:rejected',
    'coapkit:message:timeout',
    'coapkit:server:request',
    'coapkit:server:response',
  ];
  const subs = names.map((n) => {
    const fn = (m: unknown) => {
      const list = events[n] ?? [];
      list.push(m);
      events[n] = list;
    };
    dc.subscribe(n, fn);
    return () => dc.unsubscribe(n, fn);
  });
  try {
    const { resolveHost } = await import('../../src/transport/resolve.js');
    await resolveHost('example.test', { lookup: async () => [{ address: '192.0.2.1', family: 4 }] });
    const raw = s.raw();
    const ep = s.endpoint();
    const p = req(ep, raw);
    const r1 = await raw.next();
    await nextAfter(raw, 75); // retransmission (ACK_TIMEOUT 50 × ACK_RANDOM_FACTOR 1.5)
    raw.send(r1.from, { type: ACK, code: 0x45, messageId: r1.msg!.messageId, token: r1.msg!.token });
    await p;
    // Duplicate of a CON request at the endpoint.
    ep.handler = () => ({ code: 0x45 });
    const dup = Buffer.from([0x40, 0x01, 0x33, 0x33]);
    raw.send(selfOf(ep), dup);
    raw.send(selfOf(ep), dup);
    raw.send(selfOf(ep), Buffer.from([0x40, 0x00, 0x44, 0x44])); // ping → rejected (RST)
    await raw.waitFor(raw.received.length + 3);
    const silent = assert.rejects(req(ep, s.raw('10.0.0.99')), TimeoutError);
    await clock.advance(1200); // MAX_TRANSMIT_WAIT = 1125 ms with these parameters
    await silent;

    const resolved = events['coapkit:dns:resolved']![0] as { host: string; address: string };
    assert.equal(resolved.host, 'example.test');
    assert.equal(resolved.address, '192.0.2.1');
    const sent = events['coapkit:message:sent'] as Array<{ data: Buffer; transmission: number }>;
    assert.ok(sent.some((e) => Buffer.compare(e.data, r1.data) === 0 && e.transmission === 0));
    const retx = events['coapkit:message:retransmitted'] as Array<{
      messageId: number;
      transmission: number;
    }>;
    assert.equal(retx[0]!.messageId, r1.msg!.messageId);
    assert.equal(retx[0]!.transmission, 1);
    assert.ok(
      sent.some((e) => Buffer.compare(e.data, r1.data) === 0 && e.transmission === 1),
      'retransmissions are sent events too',
    );
    assert.ok((events['coapkit:message:received'] as unknown[]).length >= 4);
    const matched = events['coapkit:exchange:matched']![0] as {
      piggybacked: boolean;
      code: number;
      requestMessageId: number;
    };
    assert.equal(matched.piggybacked, true);
    assert.equal(matched.code, 0x45);
    assert.equal(matched.requestMessageId, r1.msg!.messageId);
    const dupEv = events['coapkit:message:duplicate']![0] as { messageId: number; replayed: boolean };
    assert.equal(dupEv.messageId, 0x3333);
    assert.equal(dupEv.replayed, true);
    const rejected = events['coapkit:message:rejected'] as Array<{ reason: string; reset: boolean }>;
    assert.ok(rejected.some((e) => e.reason === 'CoAP ping' && e.reset));
    assert.equal((events['coapkit:message:timeout'] as unknown[]).length, 1);
  } finally {
    for (const u of subs) u();
  }
});

test('a throwing onResponse callback fails its exchange instead of escaping into the receive path', async () => {
  const raw = s.raw();
  const ep = s.endpoint();
  const failed = new Promise<Error>((resolve) => {
    ep.request(
      raw.peer,
      { code: 1 },
      {
        onResponse: () => {
          throw new Error('callback bug');
        },
        onError: resolve,
      },
    );
  });
  const r1 = await raw.next();
  raw.send(r1.from, { type: ACK, code: 0x45, messageId: r1.msg!.messageId, token: r1.msg!.token });
  assert.equal((await failed).message, 'callback bug');
});

test('§5.4.1: a response with an unrecognized critical option is rejected (RST for CON) and fails the exchange; elective ones pass', async () => {
  const { MessageFormatError } = await import('../../src/errors.js');
  const raw = s.raw();
  const ep = s.endpoint({ transmission: { nstart: 4 } });
  const bad = [{ number: 9999, value: Buffer.from('x') }];
  // Piggybacked.
  const p1 = req(ep, raw);
  const r1 = await raw.next();
  raw.send(r1.from, {
    type: ACK,
    code: 0x45,
    messageId: r1.msg!.messageId,
    token: r1.msg!.token,
    options: bad,
  });
  await assert.rejects(p1, MessageFormatError);
  // Separate CON response → RST.
  const p2 = req(ep, raw);
  const r2 = await raw.until((r) => r.msg !== undefined && !r.msg.token.equals(r1.msg!.token));
  raw.send(r2.from, { type: ACK, code: 0, messageId: r2.msg!.messageId });
  raw.send(r2.from, { type: CON, code: 0x45, messageId: 0x4321, token: r2.msg!.token, options: bad });
  await assert.rejects(p2, MessageFormatError);
  await raw.until((r) => Buffer.compare(r.data, Buffer.from([0x70, 0, 0x43, 0x21])) === 0);
  // Unrecognized elective (even) options are fine; so are registered critical ones (Block2).
  const p3 = req(ep, raw);
  const r3 = await raw.until(
    (r) =>
      r.msg !== undefined &&
      r.msg.code === 1 &&
      !r.msg.token.equals(r2.msg!.token) &&
      !r.msg.token.equals(r1.msg!.token),
  );
  raw.send(r3.from, {
    type: ACK,
    code: 0x45,
    messageId: r3.msg!.messageId,
    token: r3.msg!.token,
    options: [
      { number: 23, value: Buffer.from([0x02]) },
      { number: 9998, value: Buffer.from('x') },
    ],
  });
  assert.equal((await p3).message.code, 0x45);
});

test('§4.7/§8: multicast NON requests are not held by PROBING_RATE (members answer, not the group)', async () => {
  const group = s.raw('224.0.1.187', 5683);
  const ep = s.endpoint({ transmission: { nstart: 100 } });
  const payload = Buffer.alloc(400, 0x61);
  for (let i = 0; i < 6; i++) {
    ep.request(
      group.peer,
      { code: 1, confirmable: false, payload },
      { onResponse: () => true, onError: () => {}, multicast: true, timeoutMs: 500 },
    );
  }
  await group.waitFor(6, 300);
});
