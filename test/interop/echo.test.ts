/**
 * What other clients do when a coapkit server challenges them with 4.01 +
 * Echo (RFC 9175 §2.4 amplification rule: a 1 KB resource, a fresh address).
 * - libcoap 4.3.1 coap-client-notls repeats the request with the Echo value
 *   (new token) and gets the resource; observe registrations likewise.
 * - node-coap 1.5 does not know Echo: the application gets the 4.01 (with the
 *   Echo option, named "252"); repeating the request with that option gets
 *   the resource (node-coap may send it from a new port: verification is per
 *   IP address, so that works).
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { afterEach, beforeEach, describe, test } from 'node:test';
import coap from 'coap';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { enableObserve } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import { findProgram } from '../helpers/proc.js';

function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (_err, stdout, stderr) =>
      resolve({ stdout, stderr }),
    );
  });
}

const BIG = 'k'.repeat(1000);

describe('other clients against a challenging coapkit server', () => {
  // A new server per test: verification is per IP address, and every client here is 127.0.0.1.
  let server: CoapServer;
  let port: number;

  beforeEach(async () => {
    server = new CoapServer();
    const bw = enableBlockwise(server);
    enableObserve(server, { blockwise: bw });
    server.get('/big', () => BIG, { obs: true });
    port = (await server.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
  });
  afterEach(() => server.close());

  test('libcoap coap-client-notls answers the challenge (GET and observe)', {
    skip: !findProgram('coap-client-notls') && 'coap-client-notls not installed',
  }, async () => {
    const before = server.amplification!.stats.challenges;
    const get = await run('coap-client-notls', ['-v', '7', `coap://127.0.0.1:${port}/big`]);
    assert.ok(get.stdout.includes(BIG), get.stderr.slice(-2000));
    assert.match(get.stdout + get.stderr, /c:4\.01[^\n]*Echo/, 'the challenge was seen');
    assert.ok(server.amplification!.stats.challenges > before);
    server.amplification!.clear(); // forget 127.0.0.1: the registration is challenged as well
    const obs = await run('coap-client-notls', [
      '-v',
      '7',
      '-s',
      '2',
      '-B',
      '3',
      `coap://127.0.0.1:${port}/big`,
    ]);
    assert.ok(obs.stdout.includes(BIG), obs.stderr.slice(-2000));
    assert.match(obs.stdout + obs.stderr, /Observe[^\n]*Echo/, 'registration repeated with Echo');
  });

  test('node-coap surfaces the 4.01 + Echo; repeating with the Echo option gets the resource', async () => {
    const agent = new coap.Agent({ type: 'udp4' });
    const ask = (echo?: Buffer) =>
      new Promise<{ code: string; payload: Buffer; echo: Buffer | undefined }>((resolve, reject) => {
        const req = coap.request({ hostname: '127.0.0.1', port, pathname: '/big', agent } as never);
        if (echo) req.setOption('252', echo);
        const timer = setTimeout(() => reject(new Error('node-coap timed out')), 8000);
        req.on(
          'response',
          (res: { code: string; payload: Buffer; options: Array<{ name: string; value: Buffer }> }) => {
            clearTimeout(timer);
            const e = res.options.find((o) => o.name === '252' || o.name === 'Echo');
            resolve({ code: res.code, payload: res.payload, echo: e?.value });
          },
        );
        req.on('error', reject);
        req.end();
      });
    try {
      const first = await ask();
      assert.equal(first.code, '4.01');
      assert.equal(first.payload.length, 0);
      assert.equal(first.echo?.length, 6);
      const second = await ask(first.echo);
      assert.equal(second.code, '2.05');
      assert.equal(second.payload.toString(), BIG);
    } finally {
      agent.close();
    }
  });
});
