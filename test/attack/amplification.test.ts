/**
 * Amplification (RFC 7252 §11.3, RFC 9175 §2.4) against `coapkit serve`:
 * raw clients on fresh loopback sockets stand in for spoofed sources (the
 * server cannot tell them apart: with `answerEcho: false` they never answer
 * an Echo challenge). Every byte they receive is counted: at most 3x what
 * they sent, per datagram and in total, including Observe registrations
 * followed by changes of the resource. Meanwhile a coapkit client gets the
 * full resource and observes it (after the Echo round trip), and the
 * server's memory comes back.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { decodeMessage } from '../../src/codec/message.js';
import { encodeUint } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { rssKb } from '../helpers/proc.js';
import { RawCoapClient } from '../helpers/raw-coap.js';
import { sleep, withTimeout } from '../helpers/timing.js';
import { type ServeProcess, startServe } from '../integration/cli-helpers.js';

const RESOURCE = 'r'.repeat(1100);

/**
 * A spoofed source: it never answers an Echo challenge; every datagram it gets is kept.
 * Verification is per IP address: each source gets a loopback address the coapkit client does not use.
 */
function spoofed(port: number, host = '127.0.200.1'): Promise<RawCoapClient> {
  return RawCoapClient.open(port, { host, answerEcho: false, keepDatagrams: true });
}

/** A GET from a spoofed source; returns its size. */
function get(
  s: RawCoapClient,
  path: string[],
  extra: Array<{ number: number; value: Buffer }> = [],
  token = '',
) {
  return s.send({ code: 1, path, options: extra, token: Buffer.from(token) });
}

describe('amplification to unverified addresses (coapkit serve)', { timeout: 60_000 }, () => {
  let srv: ServeProcess;
  let client: CoapClient;
  let base: string;

  before(async () => {
    srv = await startServe(['--host', '127.0.0.1', '--port', '0']);
    base = `coap://127.0.0.1:${srv.port}`;
    client = new CoapClient();
    const put = await client.put(`${base}/res`, { payload: RESOURCE, timeout: 10_000 });
    assert.equal(put.code >> 5, 2);
  });
  after(async () => {
    await client.close();
    await srv.stop();
  });

  test('GET /, GET of a 1,100-byte resource, /.well-known/core: each reply <= 3x its request', async () => {
    const s = await spoofed(srv.port);
    try {
      const cases: Array<[string[], string]> = [
        [[], ''], // 4-byte GET /
        [['res'], ''],
        [['res'], 'tk'],
        [['.well-known', 'core'], ''],
        [['time'], ''],
      ];
      for (const [path, token] of cases) {
        const n = s.datagrams.length;
        const size = get(s, path, [], token);
        await s.until(() => s.datagrams.length > n, `reply to GET /${path.join('/')}`);
        const reply = s.datagrams[n]!;
        assert.ok(reply.length <= 3 * size, `GET /${path.join('/')}: ${reply.length} bytes for ${size}`);
        console.log(
          `# GET /${path.join('/')} token ${token.length} B: ${size} B sent, ${reply.length} B received`,
        );
        assert.equal(decodeMessage(reply).payload.length <= 3 * size, true);
      }
      await s.barrier();
      assert.ok(s.bytesReceived <= 3 * s.bytesSent, `${s.bytesReceived} received for ${s.bytesSent} sent`);
    } finally {
      s.close();
    }
  });

  test('spoofed Observe registrations get nothing from later changes; a coapkit observer does', async () => {
    const observe0 = [{ number: OptionNumber.Observe, value: encodeUint(0) }];
    const sources: RawCoapClient[] = [];
    // 200 registrations from 20 sources (10 tokens each), on the large resource and on /time.
    for (let i = 0; i < 20; i++) sources.push(await spoofed(srv.port, `127.0.${1 + i}.1`));
    const legit = client.observe(`${base}/res`);
    try {
      for (const s of sources) {
        for (let t = 0; t < 10; t++) get(s, t % 2 ? ['time'] : ['res'], observe0, `t${t}`);
      }
      for (const s of sources) await s.until(() => s.datagrams.length >= 10, 'replies to the registrations');
      const first = await withTimeout(legit.next(), 10_000, 'first notification');
      assert.equal(first.value!.payload.length, RESOURCE.length);
      // Three changes: the coapkit observer sees each; the spoofed sources see nothing more.
      const it = legit[Symbol.asyncIterator]();
      for (let k = 0; k < 3; k++) {
        const body = `${k}`.repeat(1100);
        await client.put(`${base}/res`, { payload: body, timeout: 10_000 });
        let n = await withTimeout(it.next(), 10_000, 'notification');
        while (n.value!.payload.toString() !== body) n = await withTimeout(it.next(), 10_000, 'notification');
      }
      // /time changes every second: one more second of notifications would have reached a registered source.
      await sleep(1200);
      for (const s of sources) {
        await s.barrier();
        assert.ok(s.bytesReceived <= 3 * s.bytesSent, `${s.bytesReceived} received for ${s.bytesSent} sent`);
        const codes = s.datagrams.map((d) => decodeMessage(d).code).filter((c) => c !== 0);
        assert.ok(
          codes.every((c) => c === 0x81),
          `only 4.01 challenges: ${codes.map((c) => c.toString(16))}`,
        );
        assert.equal(codes.length, 10);
      }
    } finally {
      for (const s of sources) s.close();
      await withTimeout(legit.cancel(), 10_000, 'cancel the observation');
    }
  });

  test('a flood of spoofed GETs: the client is served meanwhile, bounded replies, memory comes back', async () => {
    const baseline = rssKb(srv.child.pid!);
    const sources: RawCoapClient[] = [];
    for (let i = 0; i < 10; i++) sources.push(await spoofed(srv.port, `127.0.${100 + i}.1`));
    // 10,000 spoofed GETs (100 rounds x 10 sources x 10 tokens), a fresh coapkit client in between.
    let served = 0;
    let sent = 0;
    let received = 0;
    try {
      for (let round = 0; round < 100; round++) {
        for (const s of sources) for (let t = 0; t < 10; t++) get(s, ['res'], [], `f${t}`);
        if (round % 20 === 10) {
          const fresh = new CoapClient();
          try {
            const r = await fresh.get(`${base}/res`, { timeout: 10_000 });
            assert.equal(r.code, 0x45);
            assert.equal(r.payload.length, 1100);
          } finally {
            await fresh.close();
          }
          served++;
        } else await sleep(2);
      }
      assert.equal(served, 5);
      for (const s of sources) {
        await s.barrier();
        sent += s.bytesSent;
        received += s.bytesReceived;
      }
    } finally {
      for (const s of sources) s.close();
    }
    assert.ok(received <= 3 * sent, `${received} received for ${sent} sent`);
    const afterKb = rssKb(srv.child.pid!);
    // Spoofed requests leave nothing but block-wise cache entries (bounded, 30 s): within 40 MB.
    assert.ok(afterKb - baseline < 40_000, `RSS ${baseline} kB -> ${afterKb} kB`);
    console.log(
      `# amplification flood: sent ${sent} B, received ${received} B; RSS ${baseline} -> ${afterKb} kB`,
    );
  });
});
