/**
 * OSCORE against libcoap (coap-client / coap-server built with OSCORE): both
 * directions, with the Echo freshness round of RFC 8613 Appendix B.1.2 that
 * both sides start with, inner block-wise and Observe. Debian's libcoap3-bin
 * 4.3.1 is built without OSCORE (its coap-client has no -E), so this runs when
 * COAPKIT_LIBCOAP_OSCORE names a folder with an OSCORE-capable coap-client and
 * coap-server (a libcoap build with ENABLE_OSCORE, see INTEROP.md), or when the
 * coap-client-openssl on the PATH takes -E; it skips saying so otherwise.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoapClient, CoapServer, enableOscore, OscoreContext } from '../../src/index.js';
import { freePort } from '../helpers/net.js';
import { findProgram, runProcess } from '../helpers/proc.js';

function libcoapWithOscore(): { client: string; server: string } | undefined {
  const dir = process.env.COAPKIT_LIBCOAP_OSCORE;
  if (dir) {
    const client = join(dir, 'coap-client');
    const server = join(dir, 'coap-server');
    if (existsSync(client) && existsSync(server)) return { client, server };
    return undefined;
  }
  const client = findProgram('coap-client-openssl');
  const server = findProgram('coap-server-openssl');
  if (client === undefined || server === undefined) return undefined;
  try {
    const help = spawnSync(client, [], { encoding: 'utf8', timeout: 5000 });
    return `${help.stdout}${help.stderr}`.includes('-E oscore_conf_file') ? { client, server } : undefined;
  } catch {
    return undefined;
  }
}
const peer = libcoapWithOscore();
const skip =
  peer === undefined
    ? 'no OSCORE-capable libcoap (Debian 4.3.1 is built without it; set COAPKIT_LIBCOAP_OSCORE to a build with ENABLE_OSCORE)'
    : false;

const SECRET = '0102030405060708090a0b0c0d0e0f10';
const SALT = '9e7ca92223786340';
const conf = (sender: string, recipient: string) =>
  `master_secret,hex,"${SECRET}"\nmaster_salt,hex,"${SALT}"\nsender_id,ascii,"${sender}"\nrecipient_id,ascii,"${recipient}"\n`;
const ctx = (sender: string, recipient: string) =>
  new OscoreContext({
    masterSecret: Buffer.from(SECRET, 'hex'),
    masterSalt: Buffer.from(SALT, 'hex'),
    senderId: Buffer.from(sender),
    recipientId: Buffer.from(recipient),
    // A fresh context on both sides still starts with the Echo round at libcoap's server.
    replayState: 'unknown',
  });

describe('OSCORE interop with libcoap', { skip }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-oscore-libcoap-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('coapkit client -> libcoap coap-server -E: GET, PUT, GET back, Observe', async () => {
    const file = join(dir, 'server.conf');
    writeFileSync(file, conf('srv', 'cli'));
    const port = await freePort();
    const server: ChildProcess = spawn(
      peer!.server,
      ['-A', '127.0.0.1', '-p', String(port), '-E', `${file},${join(dir, 'server.seq')}`],
      {
        stdio: 'ignore',
      },
    );
    const client = new CoapClient();
    try {
      const oscore = ctx('cli', 'srv');
      const base = `coap://127.0.0.1:${port}`;
      let time: Awaited<ReturnType<CoapClient['get']>> | undefined;
      // The server may still be starting: retry the first request (bounded).
      for (let i = 0; i < 20 && time === undefined; i++) {
        time = await client.get(`${base}/time`, { oscore, timeout: 1000 }).catch(() => undefined);
      }
      assert.ok(time, 'GET /time answered');
      assert.equal(time.code >> 5, 2);
      const put = await client.put(`${base}/example_data`, { oscore, payload: 'from coapkit' });
      assert.equal(put.code >> 5, 2, put.text());
      assert.equal((await client.get(`${base}/example_data`, { oscore })).text(), 'from coapkit');
      // Observe: libcoap's notifications carry an empty inner Observe; the Partial IV orders them.
      const seen: string[] = [];
      for await (const n of client.observe(`${base}/time`, { oscore })) {
        seen.push(n.text());
        if (seen.length === 3) break;
      }
      assert.equal(seen.length, 3);
    } finally {
      await client.close();
      server.kill('SIGKILL');
    }
  });

  it('libcoap coap-client -E -> coapkit server: PUT, GET, inner block-wise, Observe; unprotected refused', async () => {
    const file = join(dir, 'client.conf');
    writeFileSync(file, conf('cli', 'srv'));
    const server = new CoapServer();
    let notes = '';
    server.put('/notes', (req) => {
      notes = req.text();
      return { code: '2.04' };
    });
    server.get('/notes', (req) => `${notes} (kid ${req.oscore?.kid.toString()})`);
    server.get('/big', () => 'x'.repeat(500));
    enableOscore(server, { contexts: [ctx('srv', 'cli')], required: ['/**'] });
    const port = (await server.listen({ host: '127.0.0.1', port: 0 })).transport.localAddress().port;
    const run = (args: string[]) =>
      runProcess(peer!.client, ['-E', `${file},${join(dir, 'client.seq')}`, ...args], { timeoutMs: 15_000 });
    const base = `coap://127.0.0.1:${port}`;
    try {
      const put = await run(['-m', 'put', '-e', 'hello', `${base}/notes`]);
      assert.equal(put.code, 0, put.stderr);
      const get = await run([`${base}/notes`]);
      assert.equal(get.stdout.trim(), 'hello (kid cli)');
      const big = await run(['-b', '64', `${base}/big`]);
      assert.equal(big.stdout.trim(), 'x'.repeat(500));
      let n = 0;
      server.get('/count', () => `[${n}]`, { obs: true });
      const timer = setInterval(() => {
        n++;
        server.observe!.notify('/count');
      }, 200);
      const obs = await run(['-s', '2', `${base}/count`]).finally(() => clearInterval(timer));
      assert.ok((obs.stdout.match(/\[\d+\]/g) ?? []).length >= 3, `notifications: ${obs.stdout}`);
      const plain = await runProcess(peer!.client, [`${base}/notes`], { timeoutMs: 15_000 });
      assert.match(plain.stdout + plain.stderr, /4\.02/);
    } finally {
      await server.close();
    }
  });
});
