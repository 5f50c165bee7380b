/**
 * Certificate and raw-public-key modes (ECDHE_ECDSA, RFC 7252 §9.1.3.2/3, RFC 7250)
 * between coapkit's own DTLS client and server: the three suites, mutual
 * authentication and what handlers see (peer.auth), PSK and certificates on one
 * server, verifyPeer false, raw public key trust lists, refusals with the right
 * alert, typed credential errors, and a lossy path that fragments the Certificate.
 */
import * as assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { DtlsAlertError, DtlsCredentialError, DtlsError } from '../../src/errors.js';
import {
  type DtlsClientOptions,
  DtlsClientTransport,
  DtlsServerTransport,
  type DtlsServerTransportOptions,
} from '../../src/transport/dtls.js';
import { makePeer, type Peer } from '../../src/transport/transport.js';
import { LossyProxy, randomImpairments } from '../helpers/lossy-proxy.js';
import { makePki } from '../helpers/pki.js';
import { sleep, until, withTimeout } from '../helpers/timing.js';

const pki = makePki();
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(pki.dir, { recursive: true, force: true });
});

const SERVER_CERT = { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca };
const CLIENT_CERT = { cert: pki.clientCert, key: pki.clientKey, ca: pki.ca };

async function echoServer(opts: Partial<DtlsServerTransportOptions>) {
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    retransmitInitialMs: 50,
    ...opts,
  });
  cleanups.push(() => server.close());
  const received: { data: string; peer: Peer }[] = [];
  const errors: DtlsError[] = [];
  server.attach({
    message: (data, peer) => {
      received.push({ data: data.toString(), peer });
      server.send(Buffer.concat([Buffer.from('echo:'), data]), peer);
    },
    peerError: (_p, e) => errors.push(e as DtlsError),
  });
  return { server, port: server.localAddress().port, received, errors };
}

async function client(opts: Partial<DtlsClientOptions>) {
  const c = await DtlsClientTransport.create({ retransmitInitialMs: 50, handshakeTimeoutMs: 5000, ...opts });
  cleanups.push(() => c.close());
  const messages: string[] = [];
  c.attach({ message: (d) => messages.push(d.toString()), peerError: () => {} });
  return { c, messages };
}

async function roundTrip(opts: Partial<DtlsClientOptions>, port: number, text = 'hi'): Promise<string> {
  const { c, messages } = await client(opts);
  const peer = makePeer('127.0.0.1', port);
  await withTimeout(c.connect(peer), 5000, 'connect');
  c.send(Buffer.from(text), peer);
  await until(() => messages.length > 0, 'echo');
  await c.close();
  return messages[0]!;
}

for (const [id, name] of [
  [0xc0ae, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8'],
  [0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'],
  [0xc0ac, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM'],
] as const) {
  test(`mutual X.509 authentication: ${name}; the handler sees the certificate`, async () => {
    const es = await echoServer({ ...SERVER_CERT, cipherSuites: [id] });
    const { c, messages } = await client({ ...CLIENT_CERT });
    const peer = makePeer('127.0.0.1', es.port);
    await withTimeout(c.connect(peer), 5000, 'connect');
    assert.equal(c.sessionInfo(peer)?.suite, name);
    assert.equal(c.sessionInfo(peer)?.extendedMasterSecret, true);
    assert.equal(c.sessionInfo(peer)?.server?.identity, 'localhost');
    assert.equal(c.sessionInfo(peer)?.server?.mode, 'x509');
    const big = 'x'.repeat(c.maxMessageSize - 10);
    c.send(Buffer.from(big), peer);
    await until(() => messages.length > 0, 'echo');
    assert.equal(messages[0], `echo:${big}`);
    const auth = es.received[0]!.peer.auth!;
    assert.equal(auth.mode, 'x509');
    assert.equal(auth.identity, 'device-1');
    assert.equal(es.received[0]!.peer.identity, 'device-1');
    assert.equal(auth.subject, 'CN=device-1');
    assert.deepEqual(auth.san, ['DNS:localhost', 'IP Address:127.0.0.1']);
    assert.match(auth.fingerprint!, /^[0-9a-f]{64}$/);
  });
}

test('the default offer puts TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 first', async () => {
  const es = await echoServer({ ...SERVER_CERT, cipherSuites: [0xc02b, 0xc0ac, 0xc0ae] });
  const { c } = await client({ ...CLIENT_CERT });
  const peer = makePeer('127.0.0.1', es.port);
  await withTimeout(c.connect(peer), 5000, 'connect');
  // The server's order wins, but the client offered all three.
  assert.equal(c.sessionInfo(peer)?.suiteId, 0xc02b);
  const es2 = await echoServer({ ...SERVER_CERT });
  const { c: c2 } = await client({ ...CLIENT_CERT });
  const peer2 = makePeer('127.0.0.1', es2.port);
  await withTimeout(c2.connect(peer2), 5000, 'connect');
  assert.equal(c2.sessionInfo(peer2)?.suiteId, 0xc0ae);
});

test('one server offers PSK and certificates; each client gets what it offers', async () => {
  const es = await echoServer({ ...SERVER_CERT, psk: { identity: 'psk-dev', key: 'k3y' } });
  assert.equal(await roundTrip({ psk: { identity: 'psk-dev', key: 'k3y' } }, es.port, 'a'), 'echo:a');
  assert.equal(await roundTrip({ ...CLIENT_CERT }, es.port, 'b'), 'echo:b');
  assert.deepEqual(
    es.received.map((r) => [r.peer.auth?.mode, r.peer.identity]),
    [
      ['psk', 'psk-dev'],
      ['x509', 'device-1'],
    ],
  );
});

test('the server refuses client certificates it cannot trust, with the right alert, and keeps serving', async () => {
  const es = await echoServer({ ...SERVER_CERT });
  const cases = [
    { cert: pki.otherCaClientCert, key: pki.otherCaClientKey, alert: 48 },
    { cert: pki.expiredClientCert, key: pki.expiredClientKey, alert: 45 },
  ];
  for (const k of cases) {
    const { c } = await client({ cert: k.cert, key: k.key, ca: pki.ca });
    await assert.rejects(
      withTimeout(c.connect(makePeer('127.0.0.1', es.port)), 5000, 'refused'),
      (e: unknown) => {
        assert.ok(e instanceof DtlsAlertError, String(e));
        assert.equal(e.alert, k.alert);
        assert.ok(e.hint, 'a certificate hint');
        return true;
      },
    );
  }
  // No client certificate at all: handshake_failure.
  const { c } = await client({ ca: pki.ca });
  await assert.rejects(
    withTimeout(c.connect(makePeer('127.0.0.1', es.port)), 5000, 'no cert'),
    (e: unknown) => {
      assert.equal((e as DtlsError).alert, 40);
      return true;
    },
  );
  await until(() => es.errors.length >= 3, 'server reported the refusals');
  assert.deepEqual(
    es.errors.map((e) => e.alert),
    [48, 45, 40],
  );
  assert.equal(await roundTrip({ ...CLIENT_CERT }, es.port), 'echo:hi');
});

test('the client refuses a server certificate from a CA it does not trust (unknown_ca)', async () => {
  const es = await echoServer({ cert: pki.otherCaClientCert, key: pki.otherCaClientKey, verifyPeer: false });
  const { c } = await client({ ...CLIENT_CERT });
  await assert.rejects(
    withTimeout(c.connect(makePeer('127.0.0.1', es.port)), 5000, 'refused'),
    (e: unknown) => {
      assert.ok(e instanceof DtlsError && !(e instanceof DtlsAlertError), String(e));
      assert.equal(e.alert, 48);
      assert.match(e.message, /not signed by a trusted CA/);
      return true;
    },
  );
  await until(() => es.errors.some((e) => e.alert === 48), 'the server got unknown_ca');
});

test('verifyPeer false: a server without ca serves clients without certificates (no identity)', async () => {
  const es = await echoServer({ cert: pki.serverCert, key: pki.serverKey, verifyPeer: false });
  assert.equal(await roundTrip({ ca: pki.ca }, es.port), 'echo:hi');
  assert.equal(es.received[0]!.peer.identity, undefined);
  assert.equal(es.received[0]!.peer.auth, undefined);
  // A client that does not check the server either.
  assert.equal(
    await roundTrip({ verifyPeer: false, cert: pki.clientCert, key: pki.clientKey }, es.port),
    'echo:hi',
  );
});

test('raw public keys (RFC 7250): identity is the SPKI fingerprint; trust lists on both sides', async () => {
  const es = await echoServer({ rpk: pki.rpkServerKey, rpkTrust: [pki.rpkClientFingerprint] });
  assert.equal(
    await roundTrip({ rpk: pki.rpkClientKey, rpkTrust: [pki.rpkServerFingerprint] }, es.port),
    'echo:hi',
  );
  assert.deepEqual(es.received[0]!.peer.auth, {
    mode: 'rpk',
    identity: pki.rpkClientFingerprint,
    fingerprint: pki.rpkClientFingerprint,
  });
  // A key not in the server's list: bad_certificate.
  const { c } = await client({ rpk: pki.rpkServerKey });
  await assert.rejects(
    withTimeout(c.connect(makePeer('127.0.0.1', es.port)), 5000, 'untrusted'),
    (e: unknown) => {
      assert.equal((e as DtlsError).alert, 42);
      return true;
    },
  );
  // The client refuses a server key not in its list.
  const { c: c2 } = await client({ rpk: pki.rpkClientKey, rpkTrust: [pki.rpkClientFingerprint] });
  await assert.rejects(
    withTimeout(c2.connect(makePeer('127.0.0.1', es.port)), 5000, 'untrusted server'),
    /not in the trusted list/,
  );
});

test('a Certificate fragmented over a small MTU on a lossy, reordering path', async () => {
  const es = await echoServer({ ...SERVER_CERT, mtu: 200, retransmitInitialMs: 40 });
  const proxy = await LossyProxy.create({
    target: es.port,
    ...randomImpairments({ loss: 0.2, duplicate: 0.2, jitter: 0.4, maxDelayMs: 30, seed: 7 }),
  });
  cleanups.push(() => proxy.close());
  const { c, messages } = await client({
    ...CLIENT_CERT,
    mtu: 200,
    retransmitInitialMs: 40,
    handshakeTimeoutMs: 20_000,
  });
  const peer = makePeer('127.0.0.1', proxy.port);
  await withTimeout(c.connect(peer), 20_000, 'lossy connect');
  for (let i = 0; i < 40 && messages.length === 0; i++) {
    c.send(Buffer.from(`ping${i}`), peer);
    await sleep(25);
  }
  assert.ok(messages.length > 0, 'an echo came back');
  assert.equal(es.received[0]?.peer.identity, 'device-1');
});

test('unusable credentials are typed errors before anything is bound', async () => {
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
  const cases: [Partial<DtlsServerTransportOptions>, RegExp][] = [
    [{ cert: pki.serverCert, key: p384 }, /wrong curve.*P-256/],
    [{ cert: pki.serverKey, key: pki.serverKey, ca: pki.ca }, /not a certificate.*private key/],
    [{ cert: pki.serverCert, key: pki.serverCert, ca: pki.ca }, /not a private key.*certificate/],
    [{ cert: pki.serverCert, key: pki.clientKey, ca: pki.ca }, /key does not match cert/],
    [{ cert: pki.serverCert }, /cert given without key/],
    [{ cert: pki.serverCert, key: pki.serverKey }, /needs ca/],
    [{ cert: pki.serverCert, key: pki.serverKey, ca: pki.serverCert }, /is not a CA/],
    [{ rpk: pki.rpkServerKey, rpkTrust: ['abcd'] }, /neither a SHA-256 fingerprint/],
  ];
  for (const [opts, re] of cases) {
    await assert.rejects(
      DtlsServerTransport.create({ host: '127.0.0.1', port: 0, ...opts }),
      (e: unknown) => {
        assert.ok(e instanceof DtlsCredentialError, String(e));
        assert.match((e as Error).message, re);
        return true;
      },
    );
  }
  await assert.rejects(DtlsClientTransport.create({ cert: pki.clientCert, key: pki.clientKey }), /needs ca/);
});

test('certificate-mode decoders throw only DtlsError on mutated input', async () => {
  const m = await import('../../src/dtls/handshake/messages.js');
  const { parseCertificates } = await import('../../src/dtls/crypto/certs.js');
  const der = Buffer.from(parseCertificates(pki.clientCert)[0]!.raw);
  const samples = [
    m.encodeCertificate('x509', [der]),
    m.encodeCertificate('rpk', [], der.subarray(0, 91)),
    m.encodeCertificateRequest({
      certificateTypes: [64],
      signatureSchemes: [0x0403],
      authorities: [Buffer.from([0x30, 0])],
    }),
    m.encodeEcdsaServerKeyExchange(m.encodeEcdhParams(23, Buffer.alloc(65, 4)), 0x0403, Buffer.alloc(70, 1)),
    m.encodeCertificateVerify(0x0403, Buffer.alloc(71, 2)),
  ];
  const decoders = [
    (b: Buffer) => m.decodeCertificate(b, 'x509'),
    (b: Buffer) => m.decodeCertificate(b, 'rpk'),
    m.decodeCertificateRequest,
    m.decodeEcdsaServerKeyExchange,
    m.decodeCertificateVerify,
    m.decodeEcdhClientKeyExchange,
    m.decodeSignatureAlgorithms,
    m.decodeCertificateTypeList,
  ];
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(samples[rnd(samples.length)]!);
    const cut = rnd(4) === 0 ? b.subarray(0, rnd(b.length + 1)) : b;
    for (let k = rnd(4); k >= 0; k--) if (cut.length > 0) cut[rnd(cut.length)] = rnd(256);
    for (const d of decoders) {
      try {
        d(cut);
      } catch (e) {
        assert.ok(e instanceof DtlsError, `${d.name}: ${String(e)}`);
      }
    }
  }
});

test('a client certificate chain over maxHandshakeMessageBytes is refused; others keep being served', async () => {
  const es = await echoServer({ ...SERVER_CERT, maxHandshakeMessageBytes: 600 });
  // The chain (leaf + CA) makes a Certificate message of about 1 KB.
  const { c } = await client({ cert: pki.clientCert + pki.ca, key: pki.clientKey, ca: pki.ca });
  await assert.rejects(
    withTimeout(c.connect(makePeer('127.0.0.1', es.port)), 5000, 'refused'),
    (e: unknown) => {
      assert.equal((e as DtlsError).alert, 47);
      return true;
    },
  );
  assert.equal(await roundTrip({ ...CLIENT_CERT }, es.port), 'echo:hi');
});

test('a chain through an intermediate CA; the client checks the name in the server certificate', async () => {
  const { buildCertificate, certificatePem, generateP256, privateKeyPem } = await import(
    '../../src/dtls/crypto/x509-gen.js'
  );
  const root = generateP256();
  const mid = generateP256();
  const leaf = generateP256();
  const rootPem = certificatePem(buildCertificate({ cn: 'root', key: root.privateKey, ca: true }));
  const midPem = certificatePem(
    buildCertificate({
      cn: 'intermediate',
      key: mid.privateKey,
      ca: true,
      issuer: { cn: 'root', key: root.privateKey },
    }),
  );
  const leafFor = (san: string[]) =>
    certificatePem(
      buildCertificate({
        cn: 'srv',
        key: leaf.privateKey,
        san,
        issuer: { cn: 'intermediate', key: mid.privateKey },
      }),
    );
  // The server sends leaf + intermediate; the client trusts only the root.
  const es = await echoServer({
    cert: leafFor(['127.0.0.1']) + midPem,
    key: privateKeyPem(leaf.privateKey),
    verifyPeer: false,
  });
  assert.equal(await roundTrip({ ca: rootPem }, es.port), 'echo:hi');
  // Without the intermediate the chain does not reach the root.
  const es2 = await echoServer({
    cert: leafFor(['127.0.0.1']),
    key: privateKeyPem(leaf.privateKey),
    verifyPeer: false,
  });
  const { c } = await client({ ca: rootPem });
  await assert.rejects(
    withTimeout(c.connect(makePeer('127.0.0.1', es2.port)), 5000, 'no intermediate'),
    (e: unknown) => {
      assert.equal((e as DtlsError).alert, 48);
      return true;
    },
  );
  // A certificate for another name.
  const es3 = await echoServer({
    cert: leafFor(['other.example']) + midPem,
    key: privateKeyPem(leaf.privateKey),
    verifyPeer: false,
  });
  const { c: c3 } = await client({ ca: rootPem });
  await assert.rejects(
    withTimeout(c3.connect(makePeer('127.0.0.1', es3.port)), 5000, 'wrong name'),
    (e: unknown) => {
      assert.equal((e as DtlsError).alert, 42);
      assert.match((e as Error).message, /not for 127\.0\.0\.1 \(it names DNS:other\.example\)/);
      return true;
    },
  );
  // serverName names the host the certificate must carry.
  assert.equal(await roundTrip({ ca: rootPem, serverName: 'other.example' }, es3.port), 'echo:hi');
});

test('key usage: a CA certificate or a server-only certificate is refused as a client certificate (43)', async () => {
  const { buildCertificate, certificatePem, generateP256, privateKeyPem } = await import(
    '../../src/dtls/crypto/x509-gen.js'
  );
  const ca = generateP256();
  const caPem = certificatePem(buildCertificate({ cn: 'ku CA', key: ca.privateKey, ca: true }));
  const srvKey = generateP256();
  const srvPem = certificatePem(
    buildCertificate({
      cn: 'srv',
      key: srvKey.privateKey,
      san: ['127.0.0.1'],
      issuer: { cn: 'ku CA', key: ca.privateKey },
    }),
  );
  const es = await echoServer({ cert: srvPem, key: privateKeyPem(srvKey.privateKey), ca: caPem });
  const serverOnly = generateP256();
  const serverOnlyPem = certificatePem(
    buildCertificate({
      cn: 'not-a-client',
      key: serverOnly.privateKey,
      usage: ['server'],
      issuer: { cn: 'ku CA', key: ca.privateKey },
    }),
  );
  for (const [cert, key, re] of [
    [caPem, privateKeyPem(ca.privateKey), /keyUsage lacks digitalSignature/],
    [serverOnlyPem, privateKeyPem(serverOnly.privateKey), /extendedKeyUsage does not allow client/],
  ] as const) {
    const { c } = await client({ cert, key, ca: caPem });
    await assert.rejects(
      withTimeout(c.connect(makePeer('127.0.0.1', es.port)), 5000, 'refused'),
      (e: unknown) => {
        assert.equal((e as DtlsError).alert, 43);
        return true;
      },
    );
    await until(() => es.errors.some((e) => re.test(e.message)), `server error ${re}`);
  }
});

test('verifyPeer false with ca: the client certificate is optional, but one that is sent must be valid', async () => {
  const es = await echoServer({ ...SERVER_CERT, verifyPeer: false });
  assert.equal(await roundTrip({ ca: pki.ca }, es.port, 'anon'), 'echo:anon');
  assert.equal(await roundTrip({ ...CLIENT_CERT }, es.port, 'known'), 'echo:known');
  assert.deepEqual(
    es.received.map((r) => r.peer.identity),
    [undefined, 'device-1'],
  );
  const { c } = await client({ cert: pki.otherCaClientCert, key: pki.otherCaClientKey, ca: pki.ca });
  await assert.rejects(
    withTimeout(c.connect(makePeer('127.0.0.1', es.port)), 5000, 'refused'),
    (e: unknown) => {
      assert.equal((e as DtlsError).alert, 48);
      return true;
    },
  );
});
