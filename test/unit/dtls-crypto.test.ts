import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  finishedVerifyData,
  keyBlock,
  masterSecret,
  pskPremasterSecret,
} from '../../src/dtls/crypto/keys.js';
import { prf } from '../../src/dtls/crypto/prf.js';
import { CIPHER_SUITES } from '../../src/dtls/crypto/suites.js';
import { HandshakeTranscript, handshakeHeader } from '../../src/dtls/handshake/hash.js';
import { createRecordProtection } from '../../src/dtls/record/protection.js';
import { DtlsError } from '../../src/errors.js';

const hex = (s: string) => Buffer.from(s.replace(/[\s:]/g, ''), 'hex');

// Published TLS 1.2 PRF test vectors (IETF TLS WG, also reproduced by `openssl kdf TLS1-PRF`).
test('TLS 1.2 PRF SHA-256 vector', () => {
  const out = prf(
    'sha256',
    hex('9bbe436ba940f017b17652849a71db35'),
    'test label',
    hex('a0ba9f936cda311827a6f796ffd5198c'),
    100,
  );
  assert.equal(
    out.toString('hex'),
    'e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66',
  );
});

test('TLS 1.2 PRF SHA-384 vector', () => {
  const out = prf(
    'sha384',
    hex('b80b733d6ceefcdc71566ea48e5567df'),
    'test label',
    hex('cd665cf6a8447dd6ff8b27555edb7465'),
    148,
  );
  assert.equal(
    out.toString('hex'),
    '7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cde9ca0faa60be9fe34f82b1233c9146a0e534cb400fed2700884f9dc236f80edd8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d9184259b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee691c8f3a26854308d5eaa3be85e0990703d73e56f',
  );
});

test('PSK premaster secret layout (RFC 4279 §2)', () => {
  const psk = hex('0102030405');
  assert.equal(pskPremasterSecret(psk).toString('hex'), '0005' + '0000000000' + '0005' + '0102030405');
  const ecdh = hex('aabb');
  assert.equal(pskPremasterSecret(psk, ecdh).toString('hex'), '0002aabb00050102030405');
});

test('key block lengths and split per suite', () => {
  const cr = Buffer.alloc(32, 1);
  const sr = Buffer.alloc(32, 2);
  for (const suite of CIPHER_SUITES.values()) {
    const ms = masterSecret(suite, pskPremasterSecret(hex('00112233')), cr, sr);
    assert.equal(ms.length, 48);
    // master secret equals the raw PRF output
    assert.deepEqual(
      ms,
      prf('sha256', pskPremasterSecret(hex('00112233')), 'master secret', Buffer.concat([cr, sr]), 48),
    );
    const kb = keyBlock(suite, ms, cr, sr);
    assert.equal(kb.clientWriteKey.length, suite.encKeyLength);
    assert.equal(kb.serverWriteIv.length, suite.fixedIvLength);
    assert.equal(kb.clientWriteMacKey.length, suite.macKeyLength);
    const total = 2 * (suite.macKeyLength + suite.encKeyLength + suite.fixedIvLength);
    const raw = prf('sha256', ms, 'key expansion', Buffer.concat([sr, cr]), total);
    assert.deepEqual(
      Buffer.concat([
        kb.clientWriteMacKey,
        kb.serverWriteMacKey,
        kb.clientWriteKey,
        kb.serverWriteKey,
        kb.clientWriteIv,
        kb.serverWriteIv,
      ]),
      raw,
    );
    assert.equal(finishedVerifyData(suite, ms, 'client finished', Buffer.alloc(32)).length, 12);
  }
  const suite = CIPHER_SUITES.get(0xc0a8)!;
  const ems = masterSecret(suite, hex('0001'), cr, sr, Buffer.alloc(32, 7));
  assert.deepEqual(ems, prf('sha256', hex('0001'), 'extended master secret', Buffer.alloc(32, 7), 48));
});

test('transcript hashes messages with unfragmented 12-byte headers', () => {
  assert.equal(handshakeHeader(1, 2, 0x010203).toString('hex'), '01010203000200000001' + '0203');
  const t = new HandshakeTranscript();
  t.add(1, 0, Buffer.from('ab', 'hex'));
  t.reset();
  t.add(14, 3, Buffer.alloc(0));
  assert.equal(t.length, 1);
  assert.equal(t.digest('sha256').length, 32);
});

for (const suite of CIPHER_SUITES.values()) {
  test(`record protection round trip and tamper detection: ${suite.name}`, () => {
    const kb = keyBlock(suite, Buffer.alloc(48, 9), Buffer.alloc(32, 1), Buffer.alloc(32, 2));
    const cw = createRecordProtection(suite, kb, 'client', 'write');
    const sr = createRecordProtection(suite, kb, 'server', 'read');
    const sw = createRecordProtection(suite, kb, 'server', 'write');
    for (const len of [0, 1, 15, 16, 17, 100, 1000]) {
      const pt = Buffer.alloc(len, len & 0xff);
      const frag = cw.encrypt(23, 1, 5n, pt);
      assert.deepEqual(sr.decrypt(23, 1, 5, frag), pt);
      // wrong seq / type / epoch / direction must fail with DtlsError alert 20
      for (const bad of [
        () => sr.decrypt(23, 1, 6, frag),
        () => sr.decrypt(22, 1, 5, frag),
        () => sr.decrypt(23, 2, 5, frag),
        () => createRecordProtection(suite, kb, 'client', 'read').decrypt(23, 1, 5, frag),
      ]) {
        assert.throws(bad, (e: unknown) => e instanceof DtlsError && e.alert === 20);
      }
      for (let i = 0; i < frag.length; i += Math.max(1, frag.length >> 3)) {
        const t = Buffer.from(frag);
        t[i]! ^= 0x01;
        assert.throws(() => sr.decrypt(23, 1, 5, t), DtlsError);
      }
      assert.throws(() => sr.decrypt(23, 1, 5, frag.subarray(0, frag.length - 1)), DtlsError);
    }
    const f = sw.encrypt(23, 1, 0, Buffer.from('hi'));
    assert.deepEqual(
      createRecordProtection(suite, kb, 'client', 'read').decrypt(23, 1, 0, f),
      Buffer.from('hi'),
    );
    if (suite.recordIvLength === 8) assert.equal(f.subarray(0, 8).toString('hex'), '0001000000000000');
    const expectedLen = suite.cipher === 'aes-128-cbc' ? 16 + 48 : suite.recordIvLength + 2 + suite.tagLength;
    assert.equal(f.length, expectedLen);
  });
}
