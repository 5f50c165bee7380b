/**
 * Interop, certificate and raw-public-key modes, with libcoap 4.3 (Debian libcoap3-bin):
 * coap-client-openssl / -gnutls `-c -j -C` against `coapkit serve --cert --key --ca`,
 * `coapkit get --cert --key --ca` against coap-server-openssl / -gnutls `-c -j -C`,
 * and raw public keys (`-M`, GnuTLS only: libcoap's OpenSSL build has no RPK) both ways.
 */
import * as assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { makePki, writeRpkKey } from '../helpers/pki.js';
import { findProgram } from '../helpers/proc.js';
import { until } from '../helpers/timing.js';
import { runCli, startServe } from '../integration/cli-helpers.js';
import { run, startLibcoapDtls, withTimeout } from './dtls-peers.js';

const pki = makePki();
after(() => rmSync(pki.dir, { recursive: true, force: true }));
const LOOPBACK = ['--host', '127.0.0.1', '--port', '0', '--secure-port', '0'];

for (const bin of ['coap-client-openssl', 'coap-client-gnutls']) {
  test(`${bin} -c -j -C → coapkit serve --cert --key --ca`, async (t) => {
    const path = findProgram(bin);
    if (!path) return t.skip(`${bin} not installed`);
    const serve = await startServe([
      ...LOOPBACK,
      '-v',
      '--cert',
      pki.file('serverCert'),
      '--key',
      pki.file('serverKey'),
      '--ca',
      pki.file('ca'),
    ]);
    try {
      assert.match(serve.banner, /DTLS X\.509, client certificate required/);
      const url = `coaps://127.0.0.1:${serve.securePort}/certs/${bin}`;
      const put = run(path, [
        '-c',
        pki.file('clientCert'),
        '-j',
        pki.file('clientKey'),
        '-C',
        pki.file('ca'),
        '-B',
        '8',
        '-m',
        'put',
        '-e',
        'via certificate',
        url,
      ]);
      assert.equal(await withTimeout(put.exited, 15_000, `${bin} put`), 0, put.output());
      const get = run(path, [
        '-c',
        pki.file('clientCert'),
        '-j',
        pki.file('clientKey'),
        '-C',
        pki.file('ca'),
        '-B',
        '8',
        url,
      ]);
      assert.equal(await withTimeout(get.exited, 15_000, `${bin} get`), 0, get.output());
      assert.match(get.output(), /via certificate/);
      // serve -v logs the authenticated identity: the client certificate's CN.
      assert.match(serve.output(), /GET \/certs\/\S+ from 127\.0\.0\.1:\d+ \(device-1\)/);
      // Without a client certificate the handshake is refused.
      const anon = run(path, ['-C', pki.file('ca'), '-B', '4', url]);
      await withTimeout(anon.exited, 15_000, `${bin} without a certificate`);
      assert.doesNotMatch(anon.output(), /via certificate/);
    } finally {
      await serve.stop();
    }
  });
}

for (const bin of ['coap-server-openssl', 'coap-server-gnutls']) {
  test(`coapkit get --cert --key --ca → ${bin} -c -j -C`, async (t) => {
    const path = findProgram(bin);
    if (!path) return t.skip(`${bin} not installed`);
    const { srv, port } = await startLibcoapDtls(path, (p) => [
      '-A',
      '127.0.0.1',
      '-p',
      String(p),
      '-c',
      pki.file('serverCert'),
      '-j',
      pki.file('serverKey'),
      '-C',
      pki.file('ca'),
      '-v',
      '7',
    ]);
    try {
      const r = await runCli([
        'get',
        `coaps://127.0.0.1:${port + 1}/`,
        '--cert',
        pki.file('clientCert'),
        '--key',
        pki.file('clientKey'),
        '--ca',
        pki.file('ca'),
        '--timeout',
        '8',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.out, /libcoap/);
      // A client certificate from another CA is refused by the server.
      const bad = await runCli([
        'get',
        `coaps://127.0.0.1:${port + 1}/`,
        '--cert',
        pki.file('otherCaClientCert'),
        '--key',
        pki.file('otherCaClientKey'),
        '--ca',
        pki.file('ca'),
        '--timeout',
        '8',
      ]);
      assert.notEqual(bad.code, 0);
    } finally {
      await srv.kill();
    }
  });
}

test('coap-client-gnutls -M → coapkit serve --rpk --rpk-trust (raw public keys)', async (t) => {
  const path = findProgram('coap-client-gnutls');
  if (!path) return t.skip('coap-client-gnutls not installed');
  const server = writeRpkKey(pki.dir, 'rpk-server');
  const client = writeRpkKey(pki.dir, 'rpk-client');
  const stranger = writeRpkKey(pki.dir, 'rpk-stranger');
  const serve = await startServe([...LOOPBACK, '-v', '--rpk', server.file, '--rpk-trust', client.file]);
  try {
    assert.match(serve.banner, /raw public key/);
    const url = `coaps://127.0.0.1:${serve.securePort}/time`;
    const ok = run(path, ['-M', client.file, '-B', '8', url]);
    assert.equal(await withTimeout(ok.exited, 15_000, 'rpk client'), 0, ok.output());
    assert.match(
      serve.output(),
      new RegExp(`GET /time from 127\\.0\\.0\\.1:\\d+ \\(${client.fingerprint}\\)`),
    );
    const refused = run(path, ['-M', stranger.file, '-B', '4', url]);
    await withTimeout(refused.exited, 15_000, 'untrusted rpk client');
    await until(() => serve.output().includes('is not in the trusted list'), 'refusal logged', 10_000);
    assert.match(
      serve.output(),
      new RegExp(
        `alert bad_certificate \\(42\\): the client's raw public key ${stranger.fingerprint} is not in the trusted list`,
      ),
    );
    assert.doesNotMatch(serve.output(), new RegExp(`\\(${stranger.fingerprint}\\) ->`));
  } finally {
    await serve.stop();
  }
});

test('coapkit get --rpk → coap-server-gnutls -M (raw public keys)', async (t) => {
  const path = findProgram('coap-server-gnutls');
  if (!path) return t.skip('coap-server-gnutls not installed');
  const server = writeRpkKey(pki.dir, 'rpk-server2');
  const client = writeRpkKey(pki.dir, 'rpk-client2');
  const { srv, port } = await startLibcoapDtls(path, (p) => [
    '-A',
    '127.0.0.1',
    '-p',
    String(p),
    '-M',
    server.file,
    '-v',
    '7',
  ]);
  try {
    const url = `coaps://127.0.0.1:${port + 1}/`;
    const r = await runCli(['get', url, '--rpk', client.file, '--timeout', '8']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.out, /libcoap/);
    // Trusting only another key: the server's key is refused.
    const other = writeRpkKey(pki.dir, 'rpk-other');
    const bad = await runCli(['get', url, '--rpk', client.file, '--rpk-trust', other.file, '--timeout', '8']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, new RegExp(`raw public key ${server.fingerprint} is not in the trusted list`));
  } finally {
    await srv.kill();
  }
});
