/**
 * Connection floods against `coapkit serve --tcp-port` (RFC 8323): an attacker
 * address (127.0.200.x) opens many more connections than its share, holds
 * half-sent frames (slowloris), announces a 2 GiB frame, sends no CSM, and
 * pipelines requests without reading. Meanwhile a legitimate client on
 * 127.0.0.1 is served, and the server's memory comes back near its baseline.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { encodeCsm, encodeFrame } from '../../src/codec/reliable.js';
import { rssKb } from '../helpers/proc.js';
import { sleep, until } from '../helpers/timing.js';
import { type ServeProcess, startServe } from '../integration/cli-helpers.js';

function open(port: number, localAddress: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', () => resolve(undefined));
    s.once('connect', () => resolve(s));
  });
}

describe('connection floods (coapkit serve --tcp-port)', { timeout: 120_000 }, () => {
  let srv: ServeProcess;
  let port = 0;
  let client: CoapClient;
  before(async () => {
    srv = await startServe(['--host', '127.0.0.1', '--port', '0', '--tcp-port', '0']);
    port = Number(/coap\+tcp:\/\/127\.0\.0\.1:(\d+)/.exec(srv.banner)?.[1]);
    client = new CoapClient();
  });
  after(async () => {
    await client?.close();
    await srv?.stop();
  });

  test('an address over its share is refused; a legitimate client keeps being served; memory comes back', async () => {
    const base = `coap+tcp://127.0.0.1:${port}`;
    assert.equal((await client.put(`${base}/v`, { payload: 'legit' })).code, 0x41); // 2.01 Created
    const baseline = rssKb(srv.child.pid!);
    const held: net.Socket[] = [];
    let refused = 0;
    // 200 connections from one attacker address: the share is 32.
    for (let i = 0; i < 200; i++) {
      const s = await open(port, '127.0.200.1');
      if (s === undefined) {
        refused++;
        continue;
      }
      held.push(s);
      const closed = new Promise<boolean>((r) => {
        s.once('close', () => r(true));
        setTimeout(() => r(false), 50).unref();
      });
      // Alternate attacks: no CSM at all; a half-sent frame; a 2 GiB frame announced; pipelining without reading.
      if (i % 4 === 1)
        s.write(Buffer.concat([encodeCsm(undefined, false, false), Buffer.from([0xe0, 0x03])]));
      if (i % 4 === 2)
        s.write(
          Buffer.concat([
            encodeCsm(undefined, false, false),
            Buffer.from([0xf0, 0x7f, 0xff, 0xff, 0xff, 0x01]),
          ]),
        );
      if (i % 4 === 3) {
        s.pause();
        const get = encodeFrame({
          code: 1,
          token: Buffer.from([1]),
          options: [{ number: 11, value: Buffer.from('time') }],
        });
        s.write(
          Buffer.concat([encodeCsm(undefined, false, false), ...Array.from({ length: 500 }, () => get)]),
        );
      }
      if (await closed) refused++;
      if (i % 50 === 0)
        assert.equal((await client.get(`${base}/v`)).text(), 'legit', `served during the flood (${i})`);
    }
    assert.ok(refused >= 150, `most attacker connections refused or closed: ${refused}/200`);
    assert.equal((await client.get(`${base}/v`)).text(), 'legit');
    // The half-open ones are aborted after the CSM timeout (10 s); all are given back.
    for (const s of held) s.destroy();
    await sleep(200);
    assert.equal((await client.get(`${base}/v`)).text(), 'legit');
    await until(
      () => rssKb(srv.child.pid!) < baseline + 32 * 1024,
      'RSS back within 32 MiB of the baseline',
      20_000,
    );
  });
});
