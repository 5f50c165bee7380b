/**
 * Attack tests for the observe and block-wise layers of `coapkit serve`
 * (issue 10, items 2, 3 and 6), against a child process on loopback:
 *
 * - an Observe flood from one socket (10,000 registrations, some padded with a
 *   60 KB payload or a 20 KB elective option) that then goes away,
 * - Block1 uploads that never finish, from one address and from several,
 *   plus 60 KB "blocks" under a 1024-byte block size,
 * - Block2 cache keys: GETs of a large resource with ~1 KB of distinct
 *   Uri-Query each (the most the server's query limit lets in), and overlong
 *   queries answered 4.00 (over the limit) or 4.02 (an option over 255 bytes).
 *
 * The attackers are raw clients (test/helpers/raw-coap.ts) that receive at
 * their own address, so they answer the server's 4.01 + Echo challenge
 * (amplification rule) like any client: what is exercised is the state the
 * server keeps for them.
 *
 * Each asserts that a legitimate client on another source address is served
 * during the attack, and that the server's RSS (/proc/PID/status VmRSS) is back
 * within RSS_MARGIN_MB of its baseline afterwards. Traffic is bounded.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { encodeBlock, encodeUint } from '../../src/codec/options.js';
import { Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { rssMiB, settleRss } from '../helpers/proc.js';
import { pathOptions as path, RawCoapClient } from '../helpers/raw-coap.js';
import { sleep, withTimeout } from '../helpers/timing.js';
import { type ServeProcess, startServe } from '../integration/cli-helpers.js';

/**
 * What the server may keep above its baseline once an attack is over. It
 * includes what other layers keep by design for a while: the message layer's
 * deduplication ring remembers every reply for EXCHANGE_LIFETIME (the Block2
 * attack below leaves ~7 MB there), and V8 does not hand its grown heap back
 * at once. Without the bounds these attacks leave 200-300 MB or more.
 */
const RSS_MARGIN_MB = 48;
const linux = process.platform === 'linux';
/** Every request of the legitimate client gives up after this (ms). */
const LEGIT_TIMEOUT = 10_000;

describe('observe and block-wise attacks on coapkit serve', {
  skip: !linux && 'needs /proc (Linux)',
  timeout: 120_000,
}, () => {
  let srv: ServeProcess;
  let legit: CoapClient;
  let base: string;
  let baseline: number;
  const rss = () => rssMiB(srv.child.pid!);
  /** RSS once it is back within the margin (or after 10 s). */
  const settled = () => settleRss(srv.child.pid!, baseline + RSS_MARGIN_MB);

  before(async () => {
    srv = await startServe(['--host', '127.0.0.1', '--port', '0', '--max-size', String(64 * 1024)]);
    base = `coap://127.0.0.1:${srv.port}`;
    legit = new CoapClient({ bind: { address: '127.0.0.2' } });
    // Warm up (JIT, buffers) before taking the baseline.
    await legit.put(`${base}/big`, { payload: randomBytes(4000), timeout: LEGIT_TIMEOUT });
    for (let i = 0; i < 50; i++) await legit.get(`${base}/big`, { timeout: LEGIT_TIMEOUT });
    await sleep(500);
    baseline = rss();
  });

  after(async () => {
    await legit?.close();
    await srv?.stop();
  });

  it('Observe flood from one socket that goes away: others still observe, memory comes back', async () => {
    const a = await RawCoapClient.open(srv.port, { host: '127.0.0.1' });
    let o: ReturnType<CoapClient['observe']> | undefined;
    try {
      const obs = [{ number: OptionNumber.Observe, value: encodeUint(0) }, ...path('/time')];
      await a.paced(10_000, 64, (i) => {
        if (i % 10 === 1) a.send({ code: Method.GET, options: obs, payload: Buffer.alloc(60_000, 0x70) });
        else if (i % 10 === 2)
          a.send({
            code: Method.GET,
            options: [...obs, { number: 65000, value: Buffer.alloc(20_000, 0x71) }],
          });
        else a.send({ code: Method.GET, options: obs });
      });
      await a.waitForAnswers(9_000);
      // The attacker answered the Echo challenge (an Observe registration from an unverified
      // address gets one), so its registrations reached the observe layer.
      assert.ok(a.echoesAnswered >= 1, 'challenged once');
      assert.ok(a.count(ResponseCode.Content) > 0, 'registrations were served');
      const during = rss();
      // A legitimate observer on another address registers and gets notifications.
      o = legit.observe(`${base}/time`);
      const first = await withTimeout(o.registered, 10_000, 'legit registration');
      assert.notEqual(first.observe, undefined, 'registered (the answer carries Observe)');
      const two = (async () => {
        let n = 0;
        for await (const _ of o!) if (++n >= 2) break;
      })();
      await withTimeout(two, 10_000, 'two notifications to the legit observer');
      a.close();
      const after = await settled();
      console.log(
        `observe flood: ${a.answers} answers (${a.count(ResponseCode.Content)} x 2.05, ${a.count(ResponseCode.ServiceUnavailable)} x 5.03); RSS baseline ${baseline.toFixed(1)} MB, during ${during.toFixed(1)} MB, after ${after.toFixed(1)} MB`,
      );
      assert.ok(
        after <= baseline + RSS_MARGIN_MB,
        `RSS ${after.toFixed(1)} MB vs baseline ${baseline.toFixed(1)} MB`,
      );
    } finally {
      a.close();
      if (o) await withTimeout(o.cancel(), 10_000, 'cancel the legit observation');
    }
  });

  it('Block1 uploads that never finish (one and several addresses), 60 KB blocks: uploads still work', async () => {
    const attackers = await Promise.all(
      ['127.0.0.1', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map((host) =>
        RawCoapClient.open(srv.port, { host }),
      ),
    );
    try {
      const first = (i: number) => [
        ...path(`/up${i}`),
        { number: OptionNumber.Block1, value: encodeBlock(0, true, 6) },
      ];
      for (let round = 0; round < 3; round++) {
        for (const a of attackers) {
          for (let i = 0; i < 64; i++)
            a.send({ code: Method.PUT, options: first(i), payload: Buffer.alloc(1024, 0x41) });
          // A 60 KB "block" under a 1024-byte block size.
          a.send({ code: Method.PUT, options: first(999), payload: Buffer.alloc(60_000, 0x42) });
        }
        // A legitimate block-wise upload (5,000 bytes) and download from another address.
        const body = randomBytes(5000);
        const up = await legit.put(`${base}/legit${round}`, { payload: body, timeout: LEGIT_TIMEOUT });
        assert.ok(up.ok, `legit upload answered ${up.code}`);
        const down = await legit.get(`${base}/legit${round}`, { timeout: LEGIT_TIMEOUT });
        assert.ok(down.payload.equals(body));
      }
      await Promise.all(attackers.map((a) => a.waitForAnswers(3 * 65, 5000)));
      const a0 = attackers[0]!;
      assert.ok(a0.count(ResponseCode.ServiceUnavailable) > 0, 'over its share: 5.03');
      assert.ok(a0.count(ResponseCode.BadRequest) > 0, '60 KB block: 4.00');
      assert.ok(
        a0.count(ResponseCode.Continue) <= 3 * 4 + 4,
        `at most its share continues (${a0.count(ResponseCode.Continue)})`,
      );
    } finally {
      for (const a of attackers) a.close();
    }
    const after = await settled();
    console.log(`block1 flood: RSS baseline ${baseline.toFixed(1)} MB, after ${after.toFixed(1)} MB`);
    assert.ok(
      after <= baseline + RSS_MARGIN_MB,
      `RSS ${after.toFixed(1)} MB vs baseline ${baseline.toFixed(1)} MB`,
    );
  });

  it('Block2 cache keys: distinct long queries and 4.00/4.02 answers do not pile up', async () => {
    const a = await RawCoapClient.open(srv.port, { host: '127.0.0.1' });
    try {
      // Four 250-byte Uri-Query values: 1,004 bytes of "?a&b&c&d", just within the server's
      // 1,024-byte query limit, distinct per request (a Block2 cache key each).
      const query = (i: number) =>
        [0, 1, 2, 3].map((k) => ({
          number: OptionNumber.UriQuery,
          value: Buffer.from(`${k}=${String(i).padStart(8, '0')}${'q'.repeat(240)}`),
        }));
      const big = path('/big');
      await a.paced(4_000, 64, (i) => {
        if (i % 4 === 1)
          // Over the query limit (the server's maxUriQueryBytes): 4.00 before block-wise sees it.
          a.send({ code: Method.GET, options: [...big, ...query(i), ...query(i + 1)] });
        else if (i % 4 === 3)
          // One Uri-Query over 255 bytes (its maximum length; a critical option): 4.02.
          a.send({
            code: Method.GET,
            options: [...big, { number: OptionNumber.UriQuery, value: Buffer.alloc(300, 0x71) }],
          });
        else a.send({ code: Method.GET, options: [...big, ...query(i)] });
      });
      await a.waitForAnswers(3_600);
      const served = a.count(ResponseCode.Content);
      const tooLong = a.count(ResponseCode.BadRequest);
      const badOption = a.count(ResponseCode.BadOption);
      console.log(`block2 keys: ${served} x 2.05, ${tooLong} x 4.00, ${badOption} x 4.02`);
      assert.ok(served > 1_600, `served (${served} x 2.05)`);
      assert.ok(tooLong > 800, `over the query limit (${tooLong} x 4.00)`);
      assert.ok(badOption > 800, `overlong option (${badOption} x 4.02)`);
      const res = await legit.get(`${base}/big`, { timeout: LEGIT_TIMEOUT });
      assert.equal(res.payload.length, 4000, 'legit client served during the attack');
    } finally {
      a.close();
    }
    const after = await settled();
    console.log(`block2 keys: RSS baseline ${baseline.toFixed(1)} MB, after ${after.toFixed(1)} MB`);
    assert.ok(
      after <= baseline + RSS_MARGIN_MB,
      `RSS ${after.toFixed(1)} MB vs baseline ${baseline.toFixed(1)} MB`,
    );
  });
});
