/**
 * Amplification (RFC 7252 §11.3, RFC 9175 §2.4) against `coapkit serve`:
 * fresh UDP sockets on loopback stand in for spoofed sources (the server
 * cannot tell them apart: they never answer an Echo challenge). Every byte
 * they receive is counted: at most 3x what they sent, per datagram and in
 * total, including Observe registrations followed by changes of the
 * resource. Meanwhile a coapkit client gets the full resource and observes it
 * (after the Echo round trip), and the server's memory comes back.
 */

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { encodeUint } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { sleep, withTimeout } from '../helpers/timing.js';
import { type ServeProcess, startServe } from '../integration/cli-helpers.js';

const RESOURCE = 'r'.repeat(1100);

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]);
}

/** A source that never answers: counts bytes sent and received, per datagram. */
class Spoofed {
  readonly socket = dgram.createSocket('udp4');
  sent = 0;
  received = 0;
  datagrams: Buffer[] = [];
  private mid = Math.floor(Math.random() * 60000);
  private waiters: Array<() => void> = [];

  constructor(private readonly port: number) {
    this.socket.on('message', (m) => {
      this.received += m.length;
      this.datagrams.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
  }
  /** Verification is per IP address: each source gets a loopback address the coapkit client does not use. */
  async bind(address = '127.0.200.1'): Promise<this> {
    await new Promise<void>((r) => this.socket.bind(0, address, r));
    return this;
  }
  send(
    code: number,
    path: string[],
    extra: Array<{ number: number; value: Buffer }> = [],
    token = '',
  ): number {
    const bytes = encodeMessage({
      type: 0,
      code,
      messageId: this.mid++ & 0xffff,
      token: Buffer.from(token),
      options: [...path.map((p) => ({ number: OptionNumber.UriPath, value: Buffer.from(p) })), ...extra],
    });
    this.sent += bytes.length;
    this.socket.send(bytes, this.port, '127.0.0.1');
    return bytes.length;
  }
  /** A CoAP ping: the RST comes after every reply the server sent before it (one socket, in order). */
  async barrier(): Promise<void> {
    const n = this.datagrams.length;
    const bytes = Buffer.from([0x40, 0, 0xff, 0xfe]);
    this.sent += 4;
    this.socket.send(bytes, this.port, '127.0.0.1');
    await this.until(() => this.datagrams.slice(n).some((d) => (d[0]! & 0x30) === 0x30), 'RST to the ping');
  }
  async until(cond: () => boolean, what: string): Promise<void> {
    await withTimeout(
      (async () => {
        while (!cond()) await new Promise<void>((r) => this.waiters.push(r));
      })(),
      10_000,
      what,
    );
  }
  close(): void {
    this.socket.close();
  }
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
    const s = await new Spoofed(srv.port).bind();
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
        const size = s.send(1, path, [], token);
        await s.until(() => s.datagrams.length > n, `reply to GET /${path.join('/')}`);
        const reply = s.datagrams[n]!;
        assert.ok(reply.length <= 3 * size, `GET /${path.join('/')}: ${reply.length} bytes for ${size}`);
        console.log(
          `# GET /${path.join('/')} token ${token.length} B: ${size} B sent, ${reply.length} B received`,
        );
        assert.equal(decodeMessage(reply).payload.length <= 3 * size, true);
      }
      await s.barrier();
      assert.ok(s.received <= 3 * s.sent, `${s.received} received for ${s.sent} sent`);
    } finally {
      s.close();
    }
  });

  test('spoofed Observe registrations get nothing from later changes; a coapkit observer does', async () => {
    const observe0 = [{ number: OptionNumber.Observe, value: encodeUint(0) }];
    const sources: Spoofed[] = [];
    // 200 registrations from 20 sources (10 tokens each), on the large resource and on /time.
    for (let i = 0; i < 20; i++) sources.push(await new Spoofed(srv.port).bind(`127.0.${1 + i}.1`));
    const legit = client.observe(`${base}/res`);
    try {
      for (const s of sources) {
        for (let t = 0; t < 10; t++) s.send(1, t % 2 ? ['time'] : ['res'], observe0, `t${t}`);
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
        assert.ok(s.received <= 3 * s.sent, `${s.received} received for ${s.sent} sent`);
        const codes = s.datagrams.map((d) => decodeMessage(d).code).filter((c) => c !== 0);
        assert.ok(
          codes.every((c) => c === 0x81),
          `only 4.01 challenges: ${codes.map((c) => c.toString(16))}`,
        );
        assert.equal(codes.length, 10);
      }
    } finally {
      await legit.cancel();
      for (const s of sources) s.close();
    }
  });

  test('a flood of spoofed GETs: the client is served meanwhile, bounded replies, memory comes back', async () => {
    const baseline = rssKb(srv.child.pid!);
    const sources: Spoofed[] = [];
    for (let i = 0; i < 10; i++) sources.push(await new Spoofed(srv.port).bind(`127.0.${100 + i}.1`));
    // 10,000 spoofed GETs (100 rounds x 10 sources x 10 tokens), a fresh coapkit client in between.
    let served = 0;
    for (let round = 0; round < 100; round++) {
      for (const s of sources) for (let t = 0; t < 10; t++) s.send(1, ['res'], [], `f${t}`);
      if (round % 20 === 10) {
        const fresh = new CoapClient();
        const r = await fresh.get(`${base}/res`, { timeout: 10_000 });
        await fresh.close();
        assert.equal(r.code, 0x45);
        assert.equal(r.payload.length, 1100);
        served++;
      } else await sleep(2);
    }
    assert.equal(served, 5);
    let sent = 0;
    let received = 0;
    for (const s of sources) {
      await s.barrier();
      sent += s.sent;
      received += s.received;
      s.close();
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
