/**
 * Amplification rule (RFC 7252 §11.3, RFC 9175 §2.4): Echo values, the
 * verified-peer table, response sizes, and the client's transparent retry.
 */

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { CoapClient } from '../../src/client/client.js';
import { type CoapMessage, decodeMessage, encodedLength, encodeMessage } from '../../src/codec/message.js';
import { getOption } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { InvalidArgumentError, ResponseCodeError } from '../../src/errors.js';
import { enableObserve } from '../../src/observe/server.js';
import { AmplificationGuard, ECHO_LENGTH, responseSize } from '../../src/server/echo.js';
import { CoapServer } from '../../src/server/server.js';
import { makePeer } from '../../src/transport/transport.js';
import { VirtualClock } from '../../src/util/clock.js';
import { prefixOf } from '../../src/util/ip-prefix.js';
import { withTimeout } from '../helpers/timing.js';

const A = makePeer('127.0.0.1', 40000);

describe('Echo values', () => {
  const g = new AmplificationGuard(3, { lifetimeMs: 60_000 });

  test('are 6 bytes, valid for the IP address they were made for (any port)', () => {
    const now = 1_700_000_000_000;
    const v = g.echoValue(A, now);
    assert.equal(v.length, ECHO_LENGTH);
    assert.ok(g.validEcho(v, A, now));
    assert.ok(g.validEcho(v, A, now + 59_000), 'still valid within the lifetime');
    assert.ok(g.validEcho(v, makePeer('127.0.0.1', 40001), now), 'other port: same address');
    assert.equal(g.validEcho(v, makePeer('127.0.0.2', 40000), now), false, 'other address');
    assert.equal(g.validEcho(v, makePeer('::1', 40000), now), false, 'other family');
  });

  test('expire after the lifetime (and never look fresh again when the 1-byte clock wraps)', () => {
    const now = 1_700_000_000_000;
    const v = g.echoValue(A, now);
    assert.equal(g.validEcho(v, A, now + 62_000), false);
    for (let t = 62_000; t < 2_000_000; t += 7_000) {
      assert.equal(g.validEcho(v, A, now + t), false, `at +${t} ms`);
    }
  });

  test('a value from the future, a wrong length, a flipped bit or another server key is rejected', () => {
    const now = 1_700_000_000_000;
    const v = g.echoValue(A, now);
    assert.equal(g.validEcho(v, A, now - 5_000), false, 'from the future');
    assert.equal(g.validEcho(v.subarray(0, 5), A, now), false);
    assert.equal(g.validEcho(Buffer.concat([v, Buffer.from([0])]), A, now), false);
    for (let i = 0; i < ECHO_LENGTH * 8; i++) {
      const w = Buffer.from(v);
      w[i >> 3]! ^= 1 << (i & 7);
      assert.equal(g.validEcho(w, A, now), false, `bit ${i}`);
    }
    assert.equal(new AmplificationGuard(3).validEcho(v, A, now), false, 'other random key');
    const key = Buffer.alloc(32, 7);
    const k1 = new AmplificationGuard(3, { key });
    const k2 = new AmplificationGuard(3, { key });
    assert.ok(k2.validEcho(k1.echoValue(A, now), A, now), 'servers sharing a key accept each other');
  });

  test('options are checked', () => {
    assert.throws(() => new AmplificationGuard(0.5), InvalidArgumentError);
    assert.throws(() => new AmplificationGuard(3, { lifetimeMs: 10 }), InvalidArgumentError);
    assert.throws(() => new AmplificationGuard(3, { maxVerifiedPeers: -1 }), InvalidArgumentError);
  });
});

describe('verified-peer table', () => {
  test('global bound: least recently used first out', () => {
    const g = new AmplificationGuard(3, { maxVerifiedPeers: 3 });
    const peers = [1, 2, 3, 4].map((i) => makePeer(`10.0.0.${i}`, 5000));
    for (const p of peers.slice(0, 3)) g.markVerified(p);
    assert.equal(g.verifiedPeers, 3);
    g.markVerified(peers[3]!);
    assert.equal(g.verifiedPeers, 3);
    assert.equal(g.isVerified(peers[0]!), false, 'the oldest went');
    assert.ok(g.isVerified(peers[3]!));
  });

  test('per-prefix share: one IPv6 /64 cannot push the others out', () => {
    const g = new AmplificationGuard(3, { maxVerifiedPeers: 100, maxVerifiedPerPrefix: 4 });
    const other = makePeer('2001:db8:0:2::1', 1);
    const v4 = makePeer('10.0.0.1', 1);
    g.markVerified(other);
    g.markVerified(v4);
    for (let i = 1; i <= 100; i++) g.markVerified(makePeer(`2001:db8:0:1::${i.toString(16)}`, 5683));
    assert.equal(g.verifiedPeers, 6);
    assert.ok(g.isVerified(other));
    assert.ok(g.isVerified(v4));
    assert.ok(g.isVerified(makePeer('2001:db8:0:1::1', 9)), 'verified per address, any port');
    assert.equal(g.isVerified(makePeer('2001:db8:0:1::64', 5683)), false);
    assert.equal(prefixOf('2001:DB8::1'), '2001:db8:0:0');
    assert.equal(prefixOf('fe80::1:2:3:4%eth0'), 'fe80:0:0:0');
    assert.equal(prefixOf('::ffff:10.0.0.1'), '::ffff:10.0.0.1');
  });

  test('entries expire and are given back', async () => {
    const clock = new VirtualClock();
    const g = new AmplificationGuard(3, { verifiedTtlMs: 30, clock });
    g.markVerified(A);
    clock.advanceSync(14);
    assert.ok(g.isVerified(A), 'verified (before half the TTL: not refreshed by this check)');
    clock.advanceSync(17);
    assert.equal(g.isVerified(A), false);
    assert.equal(g.verifiedPeers, 0);
    for (let i = 0; i < 10; i++) g.markVerified(makePeer(`10.1.0.${i}`, 1));
    clock.advanceSync(60);
    g.markVerified(makePeer('10.2.0.2', 1)); // sweeps expired entries from the old end
    assert.ok(g.verifiedPeers <= 10 - 4 + 1);
  });

  test('a request with a valid Echo verifies its peer; maxVerifiedPeers 0 still serves it', () => {
    const g = new AmplificationGuard(3, { maxVerifiedPeers: 0 });
    const msg: CoapMessage = {
      type: 0,
      code: 1,
      messageId: 1,
      token: Buffer.alloc(0),
      options: [{ number: OptionNumber.Echo, value: g.echoValue(A) }],
      payload: Buffer.alloc(0),
    };
    assert.ok(g.trusted(msg, A));
    assert.equal(g.verifiedPeers, 0);
    assert.equal(g.trusted({ ...msg, options: [] }, A), false);
  });
});

describe('sizes', () => {
  test('encodedLength equals the encoded length', () => {
    const cases = [
      { options: [], payload: Buffer.alloc(0), token: Buffer.alloc(0) },
      {
        options: [
          { number: 11, value: Buffer.from('x') },
          { number: 15, value: Buffer.alloc(20, 1) },
          { number: 252, value: Buffer.alloc(6) },
          { number: 2000, value: Buffer.alloc(300) },
        ],
        payload: Buffer.alloc(17),
        token: Buffer.alloc(8),
      },
    ];
    for (const c of cases) {
      const bytes = encodeMessage({ type: 0, code: 1, messageId: 1, ...c });
      assert.equal(encodedLength(decodeMessage(bytes)), bytes.length);
      assert.ok(responseSize(c.token.length, { code: 0x45, ...c }) >= bytes.length, 'upper bound');
    }
  });

  test('the 4.01 challenge is at most 3x the smallest request (4-byte GET /, no token)', () => {
    const g = new AmplificationGuard(3);
    const ch = g.challenge(A);
    const bytes = encodeMessage({
      type: 2,
      code: ch.code,
      messageId: 1,
      token: Buffer.alloc(0),
      options: ch.options!,
    });
    assert.equal(bytes.length, 12);
    assert.ok(bytes.length <= 3 * 4);
    assert.equal(ch.payload, undefined, 'no diagnostic payload');
  });
});

describe('server and client over UDP', () => {
  let server: CoapServer;
  let port: number;
  let posts = 0;
  const big = 'b'.repeat(1024);

  before(async () => {
    server = new CoapServer();
    const bw = enableBlockwise(server);
    enableObserve(server, { blockwise: bw });
    server.get('/big', () => big, { obs: true });
    server.get('/small', () => 'ok', { obs: true });
    server.post('/rpc', () => {
      posts++;
      return 'r'.repeat(400);
    });
    server.put('/echo', (req) => ({ payload: req.text().repeat(50) }));
    server.get('/fail', () => {
      throw new Error('x');
    });
    server.get('/denied', () => {
      throw new ResponseCodeError('4.03', 'you may not read this resource from here');
    });
    port = (await server.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
  });
  after(() => server.close());

  // Verification is per IP address: every raw source gets a loopback address of its own.
  let nextAddress = 1;
  const fresh = () => `127.0.77.${nextAddress++}`;

  /** Sends raw datagrams from a fresh socket (and address) and collects the replies. */
  async function raw(datagrams: Buffer[], until: (got: Buffer[]) => boolean): Promise<Buffer[]> {
    const s = dgram.createSocket('udp4');
    const got: Buffer[] = [];
    await new Promise<void>((r) => s.bind(0, fresh(), r));
    const done = new Promise<void>((resolve) =>
      s.on('message', (m) => {
        got.push(m);
        if (until(got)) resolve();
      }),
    );
    for (const d of datagrams) s.send(d, port, '127.0.0.1');
    try {
      await withTimeout(done, 5000, 'replies');
    } finally {
      s.close();
    }
    return got;
  }
  let mid = 1;
  const get = (path: string, extra: Array<{ number: number; value: Buffer }> = [], code = 1) =>
    encodeMessage({
      type: 0,
      code,
      messageId: mid++,
      token: Buffer.alloc(0),
      options: [{ number: 11, value: Buffer.from(path) }, ...extra],
    });

  test('GET of a 1 KB resource from a fresh address: 4.01 + Echo within 3x; with the Echo: the resource', async () => {
    const req = get('big');
    const [ch] = await raw([req], (g) => g.length >= 1);
    assert.ok(ch!.length <= 3 * req.length, `${ch!.length} <= 3 x ${req.length}`);
    const m = decodeMessage(ch!);
    assert.equal(m.code, 0x81);
    assert.equal(m.payload.length, 0);
    const echo = getOption(m.options, OptionNumber.Echo)!;
    assert.equal(echo.length, 6);
    // The value is bound to the address it was sent to: another address's value is refused.
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, fresh(), r));
    const replies: Buffer[] = [];
    s.on('message', (x) => replies.push(x));
    const send = (b: Buffer) => s.send(b, port, '127.0.0.1');
    send(req);
    await withTimeout(
      (async () => {
        while (replies.length < 1) await new Promise((r) => setTimeout(r, 5));
      })(),
      5000,
      'challenge',
    );
    const mine = getOption(decodeMessage(replies[0]!).options, OptionNumber.Echo)!;
    send(get('big', [{ number: OptionNumber.Echo, value: echo }])); // someone else's value
    send(get('big', [{ number: OptionNumber.Echo, value: mine }]));
    await withTimeout(
      (async () => {
        while (replies.length < 3) await new Promise((r) => setTimeout(r, 5));
      })(),
      5000,
      'replies',
    );
    s.close();
    const codes = replies.map((r) => decodeMessage(r).code);
    assert.deepEqual(
      codes.slice(1).sort((a, b) => a - b),
      [0x45, 0x81],
    );
    const ok = replies.map((r) => decodeMessage(r)).find((r) => r.code === 0x45)!;
    assert.equal(ok.payload.length, 1024);
  });

  test('small responses and errors that fit are untouched; a larger error loses its diagnostic', async () => {
    const [small] = await raw([get('small')], (g) => g.length >= 1);
    assert.equal(decodeMessage(small!).code, 0x45);
    const [nf] = await raw([get('nothing')], (g) => g.length >= 1);
    assert.equal(decodeMessage(nf!).code, 0x84);
    const [fail] = await raw([get('fail')], (g) => g.length >= 1);
    assert.equal(decodeMessage(fail!).code, 0xa0, '5.00 + "Internal Server Error" fits 3x a 9-byte GET');
    const [denied] = await raw([get('denied')], (g) => g.length >= 1);
    const d = decodeMessage(denied!);
    assert.equal(d.code, 0x83, 'a 4.03 keeps its code');
    assert.equal(d.payload.length, 0, 'its long diagnostic is not sent to an unverified address');
  });

  test('requests refused before the pipeline (bad critical option, URI limits) get at most 3x too', async () => {
    const unknownCritical = get('small', [{ number: 65001, value: Buffer.alloc(0) }]);
    const overlongQuery = get('small', [{ number: 15, value: Buffer.alloc(300, 0x61) }]);
    const segments = encodeMessage({
      type: 0,
      code: 1,
      messageId: mid++,
      token: Buffer.alloc(0),
      options: Array.from({ length: 40 }, () => ({ number: 11, value: Buffer.alloc(0) })),
    });
    for (const [req, code] of [
      [unknownCritical, 0x82],
      [overlongQuery, 0x82], // over the option's 255-byte maximum: malformed (§5.4.3), before the query limit
      [segments, 0x80],
    ] as const) {
      const [r] = await raw([req], (g) => g.length >= 1);
      assert.equal(decodeMessage(r!).code, code);
      assert.ok(r!.length <= 3 * req.length, `${r!.length} <= 3 x ${req.length}`);
    }
  });

  test('POST with a large answer from a fresh address: the handler runs once, the answer is cut to fit', async () => {
    posts = 0;
    const req = encodeMessage({
      type: 0,
      code: 2,
      messageId: 9,
      token: Buffer.from('tokn'),
      options: [{ number: 11, value: Buffer.from('rpc') }],
      payload: Buffer.from('hello'),
    });
    const [r] = await raw([req], (g) => g.length >= 1);
    assert.ok(r!.length <= 3 * req.length, `${r!.length} <= 3 x ${req.length}`);
    const m = decodeMessage(r!);
    assert.equal(m.code, 0x44, '2.04 kept (no 4.01: a POST must not be repeated)');
    assert.ok(getOption(m.options, OptionNumber.Block2), 'first block of a smaller size');
    assert.equal(posts, 1);
  });

  test('the coapkit client gets everything transparently (GET, POST, PUT, Observe)', async () => {
    const client = new CoapClient();
    try {
      const before = server.amplification!.stats.challenges;
      const r = await client.get(`coap://127.0.0.1:${port}/big`, { timeout: 5000 });
      assert.equal(r.code, 0x45);
      assert.equal(r.payload.toString(), big);
      assert.ok(server.amplification!.stats.challenges > before, 'it was challenged');
      posts = 0;
      const p = await new CoapClient().post(`coap://127.0.0.1:${port}/rpc`, {
        payload: 'x',
        timeout: 10_000,
      });
      assert.equal(p.payload.toString(), 'r'.repeat(400));
      assert.equal(posts, 1, 'the POST ran once');
      const u = await new CoapClient().put(`coap://127.0.0.1:${port}/echo`, { payload: 'ab' });
      assert.equal(u.payload.toString(), 'ab'.repeat(50));
      const obsClient = new CoapClient();
      const o = obsClient.observe(`coap://127.0.0.1:${port}/small`);
      const first = await withTimeout(o.registered, 5000, 'registration');
      assert.equal(first.code, 0x45);
      assert.equal(typeof first.observe, 'number', 'registered after the Echo round trip');
      await o.cancel();
      await obsClient.close();
    } finally {
      await client.close();
    }
  });

  test('the client repeats a challenged request only once', async () => {
    // A server that always challenges: the client gets the 4.01 after one retry.
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    let seen = 0;
    s.on('message', (m, rinfo) => {
      seen++;
      const req = decodeMessage(m);
      s.send(
        encodeMessage({
          type: 2,
          code: 0x81,
          messageId: req.messageId,
          token: req.token,
          options: [{ number: OptionNumber.Echo, value: Buffer.from([seen]) }],
        }),
        rinfo.port,
        rinfo.address,
      );
    });
    const client = new CoapClient();
    try {
      const r = await client.get(`coap://127.0.0.1:${s.address().port}/x`, { timeout: 5000 });
      assert.equal(r.code, 0x81);
      assert.equal(seen, 2);
      assert.deepEqual(getOption(r.options, OptionNumber.Echo), Buffer.from([2]));
    } finally {
      await client.close();
      s.close();
    }
  });

  test('amplificationFactor: false turns the rule off', async () => {
    const off = new CoapServer({ amplificationFactor: false });
    off.get('/big', () => big);
    const p = (await off.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, fresh(), r));
    const got = new Promise<Buffer>((r) => s.once('message', r));
    s.send(get('big'), p, '127.0.0.1');
    const m = decodeMessage(await withTimeout(got, 5000, 'reply'));
    s.close();
    await off.close();
    assert.equal(m.code, 0x45);
    assert.equal(off.amplification, undefined);
  });
});
