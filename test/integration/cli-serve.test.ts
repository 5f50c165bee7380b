/**
 * `coapkit serve` as a process: banner with the bound ports, dynamic
 * resources through coapkit and through libcoap's coap-client, limits,
 * coaps:// with PSK keys, graceful shutdown, startup errors.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseLinkFormat } from '../../src/codec/link-format.js';
import { findProgram } from '../helpers/proc.js';
import {
  LOOPBACK_PORTS,
  runCli,
  runInProcess,
  runProgram,
  type ServeProcess,
  startServe,
} from './cli-helpers.js';

describe('coapkit serve (coap://)', () => {
  let srv: ServeProcess;
  let U = '';
  let libcoap = false;

  before(async () => {
    srv = await startServe([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--max-resources',
      '6',
      '--max-size',
      '200',
    ]);
    U = `coap://127.0.0.1:${srv.port}`;
    libcoap = findProgram('coap-client-notls') !== undefined;
  });
  after(async () => {
    await srv?.stop('SIGKILL');
  });

  it('prints a banner with the actual port, and says coaps:// is off without keys', () => {
    assert.ok(srv.port > 0 && srv.port < 65536, srv.banner);
    assert.match(srv.banner, /^coapkit serve: listening on$/m);
    assert.match(srv.banner, new RegExp(`^  coap://127\\.0\\.0\\.1:${srv.port}$`, 'm'));
    assert.match(srv.banner, /coaps:\/\/ not started: no PSK configured/);
    assert.equal(srv.securePort, undefined);
  });

  it('built-in resources /, /time, /echo', async () => {
    const root = await runInProcess(['get', `${U}/`]);
    assert.equal(root.code, 0);
    assert.match(root.out, /dynamic resources/);
    const time = await runInProcess(['get', `${U}/time`]);
    assert.ok(Math.abs(Date.parse(time.out) - Date.now()) < 60_000, time.out);
    const echo = await runInProcess(['post', `${U}/echo`, '-p', '{"a":1}', '-t', 'json', '-v']);
    assert.equal(echo.out, '{"a":1}');
    assert.match(echo.stderr, /<\s+Content-Format: 50/);
    assert.match(echo.stderr, /2\.04 Changed/);
    assert.doesNotMatch(echo.stderr, /2\.05/);
    const put = await runInProcess(['put', `${U}/time`, '-p', 'x']);
    assert.equal(put.code, 1);
    assert.match(put.stderr, /4\.05 Method Not Allowed/);
  });

  it('PUT 2.01 / 2.04, GET, DELETE 2.02, then 4.04 (coapkit client)', async () => {
    const c = await runInProcess(['put', `${U}/dev/led`, '-p', 'on', '-t', 'text', '-v']);
    assert.match(c.stderr, /2\.01 Created/);
    const r = await runInProcess(['put', `${U}/dev/led`, '-p', 'off', '-t', 'text', '-v']);
    assert.match(r.stderr, /2\.04 Changed/);
    const g = await runInProcess(['get', `${U}/dev/led`]);
    assert.equal(g.out, 'off');
    const d = await runInProcess(['delete', `${U}/dev/led`, '-v']);
    assert.match(d.stderr, /2\.02 Deleted/);
    const gone = await runInProcess(['get', `${U}/dev/led`]);
    assert.equal(gone.code, 1);
  });

  it('bodies larger than one datagram go block-wise (RFC 7959) both ways, also with libcoap', async () => {
    const bw = await startServe(['--host', '127.0.0.1', '--port', '0']);
    const dir = mkdtempSync(join(tmpdir(), 'coapkit-bw-'));
    try {
      const B = `coap://127.0.0.1:${bw.port}`;
      const body = Buffer.alloc(3000);
      for (let i = 0; i < body.length; i++) body[i] = (i * 7 + 3) & 0xff;
      const file = join(dir, 'body.bin');
      writeFileSync(file, body);
      const put = await runInProcess(['put', `${B}/bw`, '-f', file, '-t', 'octet', '-v']);
      assert.equal(put.code, 0, put.stderr);
      assert.match(put.stderr, /Block1: 0\/1\/1024/);
      assert.match(put.stderr, /2\.31 Continue/);
      const out = join(dir, 'out.bin');
      const get = await runInProcess(['get', `${B}/bw`, '-o', out, '-v']);
      assert.equal(get.code, 0, get.stderr);
      assert.match(get.stderr, /Block2: 2\/0\/1024/);
      assert.deepEqual(readFileSync(out), body);
      if (libcoap) {
        const lib = join(dir, 'lib.bin');
        const r = await runProgram('coap-client-notls', ['-m', 'get', '-o', lib, `${B}/bw`]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(readFileSync(lib), body);
      }
    } finally {
      await bw.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('/.well-known/core lists dynamic resources with ct, sz, title, obs; discover filters', async () => {
    await runInProcess(['put', `${U}/cfg`, '-p', '{"x":1}', '-t', 'json']);
    const d = await runInProcess(['discover', U, '--json']);
    assert.equal(d.code, 0, d.stderr);
    const links = JSON.parse(d.out) as Array<Record<string, unknown>>;
    assert.deepEqual(
      links.find((l) => l.href === '/cfg'),
      { href: '/cfg', ct: '50', sz: '7', title: 'Dynamic resource', obs: true },
    );
    assert.ok(links.some((l) => l.href === '/time'));
    const f = await runInProcess(['discover', U, '--ct', '50']);
    assert.equal(f.out, '</cfg>  ct=50 sz=7 title="Dynamic resource" obs\n');
  });

  it('limits from the command line: 4.13 over --max-size, 5.03 past --max-resources', async () => {
    const big = await runInProcess(['put', `${U}/big`, '-p', 'x'.repeat(201), '-v']);
    assert.equal(big.code, 1);
    assert.match(big.stderr, /4\.13 Request Entity Too Large/);
    assert.match(big.stderr, /Size1: 200/);
    let last = await runInProcess(['post', `${U}/fill`, '-p', 'x']);
    for (let i = 0; i < 8 && last.code === 0; i++)
      last = await runInProcess(['post', `${U}/fill`, '-p', 'x']);
    assert.equal(last.code, 2);
    assert.match(last.stderr, /5\.03 Service Unavailable: resource limit reached \(6 resources\)/);
    // Freeing one makes room again.
    await runInProcess(['delete', `${U}/fill`]);
    assert.equal((await runInProcess(['put', `${U}/again`, '-p', 'x'])).code, 0);
  });

  it('interop: libcoap coap-client-notls GET /.well-known/core, PUT -e, GET, DELETE', async (t) => {
    if (!libcoap) return t.skip('coap-client-notls not installed');
    const wk = await runProgram('coap-client-notls', ['-m', 'get', `${U}/.well-known/core`]);
    assert.equal(wk.code, 0, wk.stderr);
    const targets = parseLinkFormat(wk.stdout.trim()).map((l) => l.target);
    assert.ok(targets.includes('/time') && targets.includes('/echo'), wk.stdout);
    const put = await runProgram('coap-client-notls', [
      '-m',
      'put',
      '-e',
      'data',
      '-t',
      'text',
      `${U}/lib/x`,
    ]);
    assert.equal(put.code, 0, put.stderr);
    const get = await runProgram('coap-client-notls', ['-m', 'get', `${U}/lib/x`]);
    assert.equal(get.stdout.trim(), 'data');
    const viaUs = await runInProcess(['get', `${U}/lib/x`, '-v']);
    assert.equal(viaUs.out, 'data');
    assert.match(viaUs.stderr, /Content-Format: 0 /);
    const del = await runProgram('coap-client-notls', ['-m', 'delete', `${U}/lib/x`]);
    assert.equal(del.code, 0, del.stderr);
    const after404 = await runProgram('coap-client-notls', ['-m', 'get', `${U}/lib/x`]);
    assert.match(after404.stderr + after404.stdout, /4\.04/);
  });

  it('dynamic resources are observable (RFC 7641): libcoap coap-client -s sees every PUT', async (t) => {
    if (!libcoap) return t.skip('coap-client-notls not installed');
    await runInProcess(['put', `${U}/watched`, '-p', 'v1']);
    const observer = runProgram('coap-client-notls', ['-s', '4', '-m', 'get', `${U}/watched`], 15_000);
    await sleep(1500);
    await runInProcess(['put', `${U}/watched`, '-p', 'v2']);
    await sleep(300);
    await runInProcess(['put', `${U}/watched`, '-p', 'v3']);
    const r = await observer;
    assert.match(r.stdout, /v1[\s\S]*v2[\s\S]*v3/, r.stdout + r.stderr);
    const wk = await runInProcess(['discover', U, '--href', '/watched']);
    assert.match(wk.out, /^<\/watched> .* obs$/m);
  });

  it('-v logs one line per request; stops cleanly on SIGTERM with exit 0', async () => {
    const s = await startServe(['--host', '127.0.0.1', '--port', '0', '-v']);
    const get = await runInProcess(['get', `coap://127.0.0.1:${s.port}/nothing-here`]);
    assert.equal(get.code, 1);
    for (let i = 0; i < 50 && !/nothing-here/.test(s.output()); i++) await sleep(50);
    assert.match(
      s.output(),
      /^\S+Z GET \/nothing-here from 127\.0\.0\.1:\d+ -> 4\.04 Not Found \([\d.]+ ms\)$/m,
    );
    const code = await s.stop('SIGTERM');
    assert.equal(code, 0);
    assert.match(s.output(), /SIGTERM, shutting down/);
  });
});

describe('coapkit serve (coaps://, PSK)', () => {
  let srv: ServeProcess;
  let dir = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-serve-'));
    const keys = join(dir, 'keys.txt');
    writeFileSync(keys, '# devices\nsensor-1:s3cret\n\nsensor-2:0x00112233445566778899\n');
    srv = await startServe([...LOOPBACK_PORTS, '--psk-file', keys, '--identity', 'cli', '--psk', 'clikey']);
  });
  after(async () => {
    await srv?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('banner lists both listeners', () => {
    assert.ok(srv.securePort !== undefined && srv.securePort > 0, srv.banner);
    assert.match(srv.banner, /coaps:\/\/127\.0\.0\.1:\d+ {2}\(DTLS PSK, 3 identities\)/);
  });

  it('coapkit get/put over coaps:// with keys from flags, env and hex', async () => {
    const S = `coaps://127.0.0.1:${srv.securePort}`;
    const put = await runInProcess([
      'put',
      `${S}/secret`,
      '-p',
      'shh',
      '--identity',
      'sensor-1',
      '--psk',
      's3cret',
    ]);
    assert.equal(put.code, 0, put.stderr);
    const get = await runInProcess(['get', `${S}/secret`], {
      env: { COAPKIT_PSK_IDENTITY: 'sensor-2', COAPKIT_PSK: '0x00112233445566778899' },
    });
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.out, 'shh');
    const hex = await runInProcess([
      'get',
      `${S}/secret`,
      '--identity',
      'cli',
      '--psk-hex',
      Buffer.from('clikey').toString('hex'),
    ]);
    assert.equal(hex.out, 'shh');
    // Same store on both listeners.
    const plain = await runInProcess(['get', `coap://127.0.0.1:${srv.port}/secret`]);
    assert.equal(plain.out, 'shh');
  });

  it('a wrong key fails with exit 3 and a hint (spawned)', async () => {
    const r = await runCli([
      'get',
      `coaps://127.0.0.1:${srv.securePort}/time`,
      '--identity',
      'sensor-1',
      '--psk',
      'nope',
      '--timeout',
      '5',
    ]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^coapkit: /);
    assert.match(r.stderr, /hint: /);
  });

  it('interop: libcoap coap-client-openssl with PSK', async (t) => {
    if (!findProgram('coap-client-openssl')) return t.skip('coap-client-openssl not installed');
    const S = `coaps://127.0.0.1:${srv.securePort}`;
    const put = await runProgram('coap-client-openssl', [
      '-u',
      'sensor-1',
      '-k',
      's3cret',
      '-m',
      'put',
      '-e',
      'fromlib',
      `${S}/lib`,
    ]);
    assert.equal(put.code, 0, put.stderr);
    const get = await runInProcess(['get', `${S}/lib`, '--identity', 'sensor-1', '--psk', 's3cret']);
    assert.equal(get.out, 'fromlib');
  });
});

describe('coapkit serve startup errors', { concurrency: 3 }, () => {
  it('unknown flag exits 64', async () => {
    const r = await runCli(['serve', '--bogus']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /unknown option '--bogus'/);
  });
  it('bad psk file line exits 64; missing psk file exits 66', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coapkit-serve-'));
    try {
      const bad = join(dir, 'bad.txt');
      writeFileSync(bad, 'no-colon-here\n');
      const r = await runInProcess(['serve', '--psk-file', bad, '--port', '0']);
      assert.equal(r.code, 64);
      assert.match(r.stderr, /bad\.txt:1: expected "identity:secret"/);
      const m = await runInProcess(['serve', '--psk-file', join(dir, 'none.txt')]);
      assert.equal(m.code, 66);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('a port in use exits 3 with a hint', async () => {
    const first = await startServe(['--host', '127.0.0.1', '--port', '0']);
    try {
      const r = await runCli(['serve', '--host', '127.0.0.1', '--port', String(first.port)]);
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /cannot listen for coap:\/\/ on 127\.0\.0\.1:\d+/);
      assert.match(r.stderr, /hint: another program uses that port/);
    } finally {
      await first.stop('SIGKILL');
    }
  });
});
