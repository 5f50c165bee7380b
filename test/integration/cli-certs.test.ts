/**
 * Certificate mode from the command line: `coapkit serve --generate-cert DIR`
 * (files, modes, the printed client command works, a second run reuses them),
 * `get --cert/--key/--ca`, `--trace` showing the certificate handshake, and
 * clear errors for missing or unusable credential files.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makePki } from '../helpers/pki.js';
import { until } from '../helpers/timing.js';
import { LOOPBACK_PORTS, runCli, type ServeProcess, startServe } from './cli-helpers.js';

describe('coapkit serve --generate-cert', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-gencert-'));
  const certs = join(dir, 'certs');
  let srv: ServeProcess;
  before(async () => {
    srv = await startServe([...LOOPBACK_PORTS, '-v', '--generate-cert', certs]);
  });
  after(async () => {
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes a CA, server and client certificate and prints a client command that works', async () => {
    assert.match(
      srv.banner,
      /coaps:\/\/127\.0\.0\.1:\d+ {2}\(DTLS X\.509, client certificates from the generated CA required\)/,
    );
    assert.match(srv.banner, new RegExp(`Certificates generated in ${certs}`));
    for (const f of ['ca.pem', 'server.pem', 'client.pem']) assert.ok(statSync(join(certs, f)).isFile());
    for (const f of ['server.key', 'client.key']) assert.equal(statSync(join(certs, f)).mode & 0o777, 0o600);
    const line = /^Try: \S+(?: \S+)? get (coaps:\/\/\S+) (.*)$/m.exec(srv.banner);
    assert.ok(line, srv.banner);
    const r = await runCli(['put', `${line[1]}cert-test`, '-e', 'hello', ...line[2]!.split(' ')]);
    assert.equal(r.code, 0, r.stderr);
    const g = await runCli(['get', `${line[1]}cert-test`, ...line[2]!.split(' ')]);
    assert.equal(g.out.trim(), 'hello');
    assert.match(srv.output(), /PUT \/cert-test from 127\.0\.0\.1:\d+ \(client\)/);
  });

  it('--trace shows the certificate handshake (with -c/-j/-C)', async () => {
    const r = await runCli([
      '--trace',
      'get',
      `coaps://127.0.0.1:${srv.securePort}/time`,
      // libcoap's short flags
      '-c',
      join(certs, 'client.pem'),
      '-j',
      join(certs, 'client.key'),
      '-C',
      join(certs, 'ca.pem'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /server flight: ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone/,
    );
    assert.match(
      r.stderr,
      /client flight: Certificate, ClientKeyExchange, CertificateVerify, ChangeCipherSpec, Finished/,
    );
    assert.match(r.stderr, /certificate: O=coapkit, CN=localhost|certificate: CN=localhost/);
    assert.match(r.stderr, /peer certificate: "localhost"/);
  });

  it('a client without a certificate is refused; a second serve run reuses the folder', async () => {
    const r = await runCli([
      'get',
      `coaps://127.0.0.1:${srv.securePort}/time`,
      '--ca',
      join(certs, 'ca.pem'),
      '--timeout',
      '5',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /handshake_failure/);
    const again = await startServe([...LOOPBACK_PORTS, '--generate-cert', certs]);
    try {
      assert.match(again.banner, new RegExp(`Certificates reused from ${certs}`));
    } finally {
      await again.stop();
    }
  });

  it('the generated server certificate serves coaps+tcp:// too (--tls-port), as --cert would', async () => {
    const tls = await startServe([...LOOPBACK_PORTS, '--generate-cert', certs, '--tls-port', '0']);
    try {
      const url = /coaps\+tcp:\/\/127\.0\.0\.1:(\d+)/.exec(tls.banner);
      assert.ok(url, tls.banner);
      // As over coaps://, the client shows a certificate from the generated CA.
      const r = await runCli([
        'get',
        `coaps+tcp://localhost:${url[1]}/time`,
        '--ca',
        join(certs, 'ca.pem'),
        '--cert',
        join(certs, 'client.pem'),
        '--key',
        join(certs, 'client.key'),
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.out, /\d/);
    } finally {
      await tls.stop();
    }
  });
});

describe('certificate flags: errors', () => {
  const pki = makePki();
  after(() => rmSync(pki.dir, { recursive: true, force: true }));
  const url = 'coaps://127.0.0.1:9/x';

  it('--cert without --key is a usage error', async () => {
    const r = await runCli(['get', url, '--cert', pki.file('clientCert')]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /--cert needs --key/);
  });

  it('a key file given as --cert names the file and says what it is', async () => {
    const r = await runCli(['get', url, '--cert', pki.file('clientKey'), '--key', pki.file('clientKey')]);
    assert.equal(r.code, 66);
    assert.match(r.stderr, /cert is not a certificate.*\(this is a private key\)/);
    assert.match(r.stderr, /--cert \S+clientKey\.pem/);
  });

  it('a key that does not belong to the certificate', async () => {
    const r = await runCli([
      'get',
      url,
      '--cert',
      pki.file('clientCert'),
      '--key',
      pki.file('serverKey'),
      '--ca',
      pki.file('ca'),
    ]);
    assert.equal(r.code, 66);
    assert.match(r.stderr, /key does not match cert/);
  });

  it('a missing file', async () => {
    const r = await runCli(['get', url, '--rpk', join(pki.dir, 'nope.pem')]);
    assert.equal(r.code, 66);
    assert.match(r.stderr, /cannot read --rpk file/);
  });

  it('coaps:// without any credential mentions the certificate flags', async () => {
    const r = await runCli(['get', url]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /--cert FILE --key FILE --ca FILE/);
  });

  it('serve --ca without --cert is a usage error', async () => {
    const r = await runCli(['serve', ...LOOPBACK_PORTS, '--ca', pki.file('ca')]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /--ca and --rpk-trust need --cert\/--key or --rpk/);
  });
});

describe('coapkit serve --cert --key --ca --tls-port: coaps+tcp:// asks for a client certificate as coaps:// does', () => {
  const pki = makePki();
  let srv: ServeProcess;
  let url = '';
  before(async () => {
    srv = await startServe([
      ...LOOPBACK_PORTS,
      '-v',
      '--cert',
      pki.file('serverCert'),
      '--key',
      pki.file('serverKey'),
      '--ca',
      pki.file('ca'),
      '--tls-port',
      '0',
    ]);
    const m = /coaps\+tcp:\/\/127\.0\.0\.1:(\d+)/.exec(srv.banner);
    assert.ok(m, srv.banner);
    url = `coaps+tcp://localhost:${m[1]}/time`;
  });
  after(async () => {
    await srv?.stop();
    rmSync(pki.dir, { recursive: true, force: true });
  });

  it('a client certificate from --ca is required, and names the client', async () => {
    const ok = await runCli([
      'get',
      url,
      '--ca',
      pki.file('ca'),
      '--cert',
      pki.file('clientCert'),
      '--key',
      pki.file('clientKey'),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    await until(
      () => /GET \/time from 127\.0\.0\.1:\d+ \(device-1\)/.test(srv.output()),
      'the request logged with its identity',
    );
    const none = await runCli(['get', url, '--ca', pki.file('ca'), '--timeout', '5']);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /TLS: .*certificate required \(alert 116\)/);
    assert.match(none.stderr, /hint: the server asks for a client certificate/);
    const other = await runCli([
      'get',
      url,
      '--ca',
      pki.file('ca'),
      '--cert',
      pki.file('otherCaClientCert'),
      '--key',
      pki.file('otherCaClientKey'),
      '--timeout',
      '5',
    ]);
    // TLS 1.3: the server refuses the certificate after the client's Finished; the client sees
    // the connection closed.
    assert.equal(other.code, 3, other.stderr);
    assert.doesNotMatch(srv.output(), /\(intruder\)/);
  });
});
