/**
 * Issue 14: `coapkit serve --data DIR --state-key FILE` restarted twice with SIGTERM while
 * libcoap's coap-client-openssl observes a resource over coaps://. The observer keeps
 * receiving notifications after each restart. A restarted server cannot start a DTLS
 * handshake towards a client, so a notification that reaches the observer after a restart
 * went over its old session: that is the proof that no new handshake happened (the
 * server's handshake counter says the same).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../helpers/net.js';
import { findProgram } from '../helpers/proc.js';
import { until } from '../helpers/timing.js';
import { runCli, type ServeProcess, startServe } from '../integration/cli-helpers.js';

const OPENSSL = 'coap-client-openssl';
const PSK = ['--identity', 'dev', '--psk', 'restart-psk'];

describe('serve --state-key: a libcoap coaps:// observer across two SIGTERM restarts', {
  skip: findProgram(OPENSSL) === undefined ? `${OPENSSL} not installed (Debian libcoap3-bin)` : false,
  timeout: 120_000,
}, () => {
  let dir: string;
  let args: string[];
  let port: number;
  let srv: ServeProcess | undefined;
  let observer: ChildProcess | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-restart-'));
    writeFileSync(join(dir, 'state.key'), randomBytes(32));
    port = await freePort();
    const plainPort = await freePort();
    args = [
      '--host',
      '127.0.0.1',
      '--port',
      String(plainPort),
      '--secure-port',
      String(port),
      ...PSK,
      '--data',
      join(dir, 'data'),
      '--state-key',
      join(dir, 'state.key'),
      '-v',
    ];
  });
  after(async () => {
    if (observer && observer.exitCode === null) observer.kill('SIGKILL');
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const put = async (value: string) => {
    const r = await runCli(['put', `coaps://127.0.0.1:${port}/obs`, '-p', value, ...PSK]);
    assert.equal(r.code, 0, r.stderr);
  };

  it('notifications keep coming over the same session', async () => {
    srv = await startServe(args);
    await put('v0');
    let log = '';
    observer = spawn(
      OPENSSL,
      ['-v', '7', '-u', 'dev', '-k', 'restart-psk', '-s', '90', `coaps://127.0.0.1:${port}/obs`],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    observer.stdout!.on('data', (c: Buffer) => {
      log += c.toString('latin1');
    });
    observer.stderr!.on('data', (c: Buffer) => {
      log += c.toString('latin1');
    });
    await until(() => log.includes('v0'), 'the observer got v0', 30_000);
    const handshakeLog = log.length;
    for (const [round, value] of [
      [1, 'after-first-restart'],
      [2, 'after-second-restart'],
    ] as const) {
      assert.equal(await srv.stop('SIGTERM'), 0);
      srv = await startServe(args);
      assert.match(srv.banner, /DTLS sessions restored: 1/, `round ${round}: the observer's session`);
      assert.match(srv.banner, /1 observer/, `round ${round}: the observer's registration`);
      await put(value);
      await until(() => log.includes(value), `round ${round}: the observer got "${value}"`, 30_000);
    }
    const hellos = (log.slice(handshakeLog).match(/ClientHello|client hello/gi) ?? []).length;
    assert.equal(hellos, 0, 'the observer did not handshake again');
  });
});
