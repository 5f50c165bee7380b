/**
 * Interop: certificate mode (TLS_ECDHE_ECDSA, P-256, mutual authentication)
 * between coapkit and OpenSSL 3 `s_server` / `s_client -dtls1_2`, for the three
 * suites both ways; a client certificate from another CA, an expired one and a
 * wrong key are refused with the right alert while other clients keep being served.
 */
import * as assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { parseCertificates, parsePrivateKey, spkiOf } from '../../src/dtls/crypto/certs.js';
import { DtlsAlertError, type DtlsError } from '../../src/errors.js';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer, type Peer } from '../../src/transport/transport.js';
import { freePort } from '../helpers/net.js';
import { makePki } from '../helpers/pki.js';
import { findProgram } from '../helpers/proc.js';
import { until } from '../helpers/timing.js';
import { opensslDtlsClient, opensslDtlsServer, pingPongSServer, withTimeout } from './dtls-peers.js';

const OPENSSL = findProgram('openssl');
const pki = makePki();
after(() => rmSync(pki.dir, { recursive: true, force: true }));

/** s_server's certificate and key, requiring a client certificate from the test CA. */
const mutualServer = () => ({ cert: pki.file('serverCert'), key: pki.file('serverKey'), ca: pki.file('ca') });

export const CERT_SUITES: { id: number; openssl: string }[] = [
  { id: 0xc0ae, openssl: 'ECDHE-ECDSA-AES128-CCM8' },
  { id: 0xc02b, openssl: 'ECDHE-ECDSA-AES128-GCM-SHA256' },
  { id: 0xc0ac, openssl: 'ECDHE-ECDSA-AES128-CCM' },
];

for (const suite of CERT_SUITES) {
  test(`coapkit client → openssl s_server, mutual auth (${suite.openssl})`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const port = await freePort();
    const srv = opensslDtlsServer(OPENSSL, port, { ...mutualServer(), cipher: suite.openssl });
    const client = await DtlsClientTransport.create({
      cert: pki.clientCert,
      key: pki.clientKey,
      ca: pki.ca,
      cipherSuites: [suite.id],
      retransmitInitialMs: 200,
      handshakeTimeoutMs: 10_000,
    });
    try {
      await pingPongSServer(client, srv, port, suite, () =>
        assert.match(srv.output(), /subject=CN ?= ?device-1/),
      );
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
  return opensslDtlsClient(OPENSSL!, port, { cert, key, ca: pki.file('ca'), cipher });
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
      // CertificateRequest names the CA we accept (certificate_authorities).
      assert.match(cli.output(), /Acceptable client certificate CA names\s+CN ?= ?coapkit test CA/);
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

/**
 * A coapkit DTLS client connection whose certificate and private key do not match:
 * the transport refuses to load such a pair (DtlsCredentialError), so the
 * credential is put together by hand to see what the peer does with it.
 */
async function mismatchedClient(
  port: number,
): Promise<{ failed: Promise<DtlsError | undefined>; close(): void }> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  const wrong = parsePrivateKey(pki.otherCaClientKey);
  const chain = parseCertificates(pki.clientCert).map((c) => Buffer.from(c.raw));
  let settle: (e: DtlsError | undefined) => void = () => {};
  const failed = new Promise<DtlsError | undefined>((r) => {
    settle = r;
  });
  const conn = new DtlsClientConnection(
    {
      mtu: 1280,
      ipOverhead: 28,
      retransmitInitialMs: 200,
      retransmitMaxMs: 2000,
      handshakeTimeoutMs: 8000,
      // GCM: OpenSSL's default cipher list has no CCM_8.
      cipherSuites: [0xc02b],
      certs: {
        x509: { type: 'x509', chain, spki: spkiOf(wrong), key: wrong },
        trust: { ca: parseCertificates(pki.ca), verifyPeer: true },
      },
    },
    {
      sendDatagram: (d) => socket.send(d, port, '127.0.0.1'),
      established: () => settle(undefined),
      data: () => {},
      closed: (e) => settle(e),
    },
  );
  socket.on('message', (m) => conn.handleDatagram(m));
  conn.start();
  return {
    failed,
    close: () => {
      conn.destroy();
      socket.close();
    },
  };
}

test('openssl s_server refuses a client whose key does not match its certificate (decrypt_error)', async (t) => {
  if (!OPENSSL) return t.skip('openssl not installed');
  const port = await freePort();
  const srv = opensslDtlsServer(OPENSSL, port, mutualServer());
  try {
    await srv.waitFor('ACCEPT', 10_000);
    const c = await mismatchedClient(port);
    const e = await withTimeout(c.failed, 10_000, 'refusal');
    c.close();
    assert.ok(e instanceof DtlsAlertError, String(e));
    assert.equal(e.alert, 51); // decrypt_error: the CertificateVerify signature does not verify
  } finally {
    await srv.kill();
  }
});

const REFUSALS: { name: string; cert?: string; key?: string; alert: number; text?: RegExp }[] = [
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
  { name: 'a key that does not match the certificate', alert: 51 },
];

for (const r of REFUSALS) {
  test(`coapkit server refuses ${r.name} (alert ${r.alert}) and keeps serving others`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const { server, received, errors } = await certServer();
    const port = server.localAddress().port;
    const cli =
      r.cert !== undefined
        ? sClient(
            port,
            pki.file(r.cert as 'clientCert'),
            pki.file(r.key as 'clientKey'),
            'ECDHE-ECDSA-AES128-CCM8',
          )
        : undefined;
    const raw = r.cert === undefined ? await mismatchedClient(port) : undefined;
    const good = sClient(port, pki.file('clientCert'), pki.file('clientKey'), 'ECDHE-ECDSA-AES128-CCM8');
    try {
      if (cli) await cli.waitFor(r.text!, 10_000);
      if (raw) {
        const e = await withTimeout(raw.failed, 10_000, 'refusal');
        assert.equal(e?.alert, r.alert);
      }
      await until(
        () => errors.some((e) => (e as { alert?: number }).alert === r.alert),
        `alert ${r.alert}`,
        5000,
      );
      await good.waitFor(/Cipher is /, 10_000);
      good.child.stdin.write('still served\n');
      await good.waitFor('reply from coapkit', 5000);
      assert.equal(received.at(-1)?.peer.identity, 'device-1');
    } finally {
      raw?.close();
      await cli?.kill();
      await good.kill();
      await server.close();
    }
  });
}

for (const r of [
  {
    name: 'from another CA',
    cert: 'otherCaClientCert',
    key: 'otherCaClientKey',
    alert: 48,
    text: /alert unknown ca/i,
  },
  {
    name: 'that expired',
    cert: 'expiredClientCert',
    key: 'expiredClientKey',
    alert: 45,
    text: /alert certificate expired/i,
  },
] as const) {
  test(`coapkit client refuses an openssl s_server certificate ${r.name} (alert ${r.alert})`, async (t) => {
    if (!OPENSSL) return t.skip('openssl not installed');
    const port = await freePort();
    const srv = opensslDtlsServer(OPENSSL, port, { cert: pki.file(r.cert), key: pki.file(r.key) });
    const client = await DtlsClientTransport.create({
      cert: pki.clientCert,
      key: pki.clientKey,
      ca: pki.ca,
      retransmitInitialMs: 200,
      handshakeTimeoutMs: 10_000,
    });
    try {
      await srv.waitFor('ACCEPT', 10_000);
      client.attach({ message: () => {}, peerError: () => {} });
      await assert.rejects(
        withTimeout(client.connect(makePeer('127.0.0.1', port)), 10_000, 'refusal'),
        (e: unknown) => {
          assert.equal((e as DtlsError).alert, r.alert);
          return true;
        },
      );
      await srv.waitFor(r.text, 5000);
    } finally {
      await client.close();
      await srv.kill();
    }
  });
}
