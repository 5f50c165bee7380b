/**
 * The coapkit client commands against libcoap's coap-server (interop):
 * discover, PUT/GET/DELETE on its dynamic resources (-d), ping, Observe-free GET.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runInProcess } from './cli-helpers.js';

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('coapkit against libcoap coap-server-notls', () => {
  let server: ChildProcess | undefined;
  let U = '';
  let available = true;

  before(async () => {
    const port = await freePort();
    U = `coap://127.0.0.1:${port}`;
    try {
      server = spawn('coap-server-notls', ['-A', '127.0.0.1', '-p', String(port), '-d', '20'], {
        stdio: 'ignore',
      });
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.once('spawn', () => resolve());
      });
    } catch {
      available = false;
      return;
    }
    // Wait until it answers pings.
    for (let i = 0; i < 40; i++) {
      const r = await runInProcess(['ping', U, '--timeout', '0.25', '-q']);
      if (r.code === 0) return;
      await sleep(100);
    }
    throw new Error('coap-server-notls did not come up');
  });

  after(() => {
    server?.kill('SIGKILL');
  });

  it('discover parses its /.well-known/core', async (t) => {
    if (!available) return t.skip('coap-server-notls not installed');
    const r = await runInProcess(['discover', U, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const links = JSON.parse(r.out) as Array<{ href: string; rt?: string; obs?: boolean }>;
    const time = links.find((l) => l.href === '/time');
    assert.ok(time, r.out);
    assert.equal(time.obs, true);
    const byRt = await runInProcess(['discover', U, '--rt', 'ticks']);
    assert.match(byRt.out, /^<\/time> /m);
  });

  it('PUT creates (2.01), GET reads back, DELETE (2.02), GET 4.04 (exit 1)', async (t) => {
    if (!available) return t.skip('coap-server-notls not installed');
    const put = await runInProcess(['put', `${U}/interop`, '-p', 'hello libcoap', '-t', 'text', '-v']);
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stderr, /2\.01 Created/);
    const get = await runInProcess(['get', `${U}/interop`]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.out, 'hello libcoap');
    const del = await runInProcess(['delete', `${U}/interop`, '-v']);
    assert.match(del.stderr, /2\.02 Deleted/);
    const gone = await runInProcess(['get', `${U}/interop`]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /^coapkit: 4\.04 Not Found/);
  });

  it('ping gets RSTs', async (t) => {
    if (!available) return t.skip('coap-server-notls not installed');
    const r = await runInProcess(['ping', U, '-c', '2', '-i', '0.05']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.out, /2 sent, 2 received/);
  });
});
