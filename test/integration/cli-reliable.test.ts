/**
 * The CLI over RFC 8323: `coapkit serve --tcp-port 0 --ws-port 0` and
 * `coapkit get/put/ping/discover` with coap+tcp:// and coap+ws:// URIs;
 * -v shows no Type or Message ID (the frames have none); flag errors.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateCertificates } from '../../src/cli/credentials.js';
import { runInProcess, type ServeProcess, startServe } from './cli-helpers.js';

describe('coapkit over coap+tcp:// and coap+ws://', { timeout: 60_000 }, () => {
  let serve: ServeProcess;
  let tcp = 0;
  let ws = 0;
  before(async () => {
    serve = await startServe(['--host', '127.0.0.1', '--port', '0', '--tcp-port', '0', '--ws-port', '0']);
    tcp = Number(/coap\+tcp:\/\/127\.0\.0\.1:(\d+)/.exec(serve.banner)?.[1]);
    ws = Number(/coap\+ws:\/\/127\.0\.0\.1:(\d+)/.exec(serve.banner)?.[1]);
    assert.ok(tcp > 0 && ws > 0, serve.banner);
  });
  after(async () => {
    await serve?.stop();
  });

  it('PUT over WebSockets, GET over TCP: one store behind every transport', async () => {
    const put = await runInProcess(['put', `coap+ws://127.0.0.1:${ws}/shared`, '-p', 'same store']);
    assert.equal(put.code, 0, put.stderr);
    const get = await runInProcess(['get', `coap+tcp://127.0.0.1:${tcp}/shared`]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.out.trim(), 'same store');
    const big = 'z'.repeat(5000);
    assert.equal((await runInProcess(['put', `coap+tcp://127.0.0.1:${tcp}/big`, '-p', big])).code, 0);
    assert.equal((await runInProcess(['get', `coap+ws://127.0.0.1:${ws}/big`])).out.trim(), big);
  });

  it('-v prints the frames without Type or Message ID', async () => {
    const r = await runInProcess(['get', `coap+tcp://127.0.0.1:${tcp}/time`, '-v']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^> GET Token=0x[0-9a-f]+/m);
    assert.match(r.stderr, /^< 2\.05 Content Token=/m);
    assert.doesNotMatch(r.stderr, /MID=|CON |NON /);
  });

  it('ping answers with Pong; discover lists the resources', async () => {
    const p = await runInProcess(['ping', `coap+ws://127.0.0.1:${ws}`]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.out, /^Pong from/m);
    const d = await runInProcess(['discover', `coap+tcp://127.0.0.1:${tcp}`]);
    assert.match(d.out, /<\/time>/);
  });

  it('flag errors: --ca for coap://, --tls-port without a certificate', async () => {
    const a = await runInProcess(['get', `coap://127.0.0.1:${serve.port}/time`, '--ca', '/nonexistent']);
    assert.equal(a.code, 64);
    assert.match(a.stderr, /coaps\+tcp/);
    const b = await runInProcess(['serve', '--tls-port', '0']);
    assert.equal(b.code, 64);
    assert.match(b.stderr, /--tls-cert/);
  });
});

describe('serve --cert/--key: one certificate for coaps:// (DTLS) and coaps+tcp:// (TLS)', {
  timeout: 60_000,
}, () => {
  it('the coaps+tcp listener uses --cert/--key when --tls-cert is not given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coapkit-tls-cert-'));
    const { files } = generateCertificates(dir);
    const serve = await startServe([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--secure-port',
      '0',
      '--cert',
      files.serverCert,
      '--key',
      files.serverKey,
      '--tls-port',
      '0',
    ]);
    try {
      const tls = Number(/coaps\+tcp:\/\/127\.0\.0\.1:(\d+)/.exec(serve.banner)?.[1]);
      assert.ok(tls > 0, serve.banner);
      // The client checks the server's certificate against the throwaway CA: it is the DTLS one.
      const get = await runInProcess(['get', `coaps+tcp://localhost:${tls}/time`, '--ca', files.ca]);
      assert.equal(get.code, 0, get.stderr);
      assert.match(get.out, /\d/);
    } finally {
      await serve.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
