/**
 * Known-answer tests against DTLS 1.2 sessions produced by OpenSSL
 * (s_client ↔ s_server, captured by test/vectors/dtls-gen-openssl-vectors.mts
 * with OpenSSL's own key log). Checks, per suite: transcript hash (Finished
 * verify_data), master secret derivation (PSK suites, incl. extended master
 * secret), key block expansion, and record decryption — and that coapkit's
 * encryption reproduces OpenSSL's record bytes for the deterministic AEAD suites.
 */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  finishedVerifyData,
  keyBlock,
  masterSecret,
  pskPremasterSecret,
} from '../../src/dtls/crypto/keys.js';
import { CIPHER_SUITES } from '../../src/dtls/crypto/suites.js';
import {
  type HandshakeMessage,
  HandshakeReassembler,
  parseHandshakeFragments,
} from '../../src/dtls/handshake/fragment.js';
import { HandshakeTranscript } from '../../src/dtls/handshake/hash.js';
import { decodeClientHello, decodeServerHello } from '../../src/dtls/handshake/messages.js';
import { createRecordProtection } from '../../src/dtls/record/protection.js';
import { type DtlsRecord, parseDatagram } from '../../src/dtls/record/record.js';

interface Session {
  suite: number;
  cipher: string;
  psk: string;
  clientRandom: string;
  masterSecret: string;
  datagrams: { dir: 'c2s' | 's2c'; hex: string }[];
}

const sessions: Session[] = JSON.parse(
  readFileSync(new URL('../vectors/dtls-openssl-sessions.json', import.meta.url), 'utf8'),
);

for (const s of sessions) {
  test(`OpenSSL session known answers: ${s.cipher}`, () => {
    const suite = CIPHER_SUITES.get(s.suite)!;
    const records = { c2s: [] as DtlsRecord[], s2c: [] as DtlsRecord[] };
    for (const d of s.datagrams) records[d.dir].push(...parseDatagram(Buffer.from(d.hex, 'hex')));
    // Reassemble epoch-0 handshake messages per direction (deduplicated by message_seq).
    const msgs = { c2s: new Map<number, HandshakeMessage>(), s2c: new Map<number, HandshakeMessage>() };
    for (const dir of ['c2s', 's2c'] as const) {
      const r = new HandshakeReassembler(0, 64);
      for (const rec of records[dir]) {
        if (rec.type !== 22 || rec.epoch !== 0) continue;
        for (const f of parseHandshakeFragments(rec.fragment))
          for (const m of r.add(f)) msgs[dir].set(m.messageSeq, m);
      }
    }
    const client = [...msgs.c2s.values()];
    const server = [...msgs.s2c.values()];
    const hvr = server.find((m) => m.msgType === 3);
    const transcript = new HandshakeTranscript();
    const ch = client.filter((m) => m.msgType === 1).at(-1)!;
    if (hvr) assert.ok(decodeClientHello(ch.body).cookie.length > 0, 'second ClientHello carries the cookie');
    const sh = server.find((m) => m.msgType === 2)!;
    for (const m of [
      ch,
      ...server.filter((m) => m.msgType === 2 || m.msgType === 12 || m.msgType === 14),
      ...client.filter((m) => m.msgType === 16),
    ]) {
      transcript.add(m.msgType, m.messageSeq, m.body);
    }
    const clientRandom = decodeClientHello(ch.body).random;
    assert.equal(clientRandom.toString('hex'), s.clientRandom);
    const serverHello = decodeServerHello(sh.body);
    assert.equal(serverHello.cipherSuite, s.suite);
    const ems = serverHello.extensions.some((e) => e.type === 23);
    const master = Buffer.from(s.masterSecret, 'hex');
    if (suite.keyExchange === 'psk') {
      const derived = masterSecret(
        suite,
        pskPremasterSecret(Buffer.from(s.psk, 'hex')),
        clientRandom,
        serverHello.random,
        ems ? transcript.digest(suite.prfHash) : undefined,
      );
      assert.equal(derived.toString('hex'), s.masterSecret, 'master secret matches OpenSSL key log');
    }
    const kb = keyBlock(suite, master, clientRandom, serverHello.random);
    const read = {
      c2s: createRecordProtection(suite, kb, 'server', 'read'),
      s2c: createRecordProtection(suite, kb, 'client', 'read'),
    };
    const write = {
      c2s: createRecordProtection(suite, kb, 'client', 'write'),
      s2c: createRecordProtection(suite, kb, 'server', 'write'),
    };
    const plain = {
      c2s: [] as { rec: DtlsRecord; pt: Buffer }[],
      s2c: [] as { rec: DtlsRecord; pt: Buffer }[],
    };
    for (const dir of ['c2s', 's2c'] as const) {
      for (const rec of records[dir]) {
        if (rec.epoch !== 1) continue;
        plain[dir].push({ rec, pt: read[dir].decrypt(rec.type, rec.epoch, rec.seq, rec.fragment) });
      }
    }
    // Finished messages: verify_data over the transcript.
    const cfin = plain.c2s.find((p) => p.rec.type === 22)!;
    const [cf] = parseHandshakeFragments(cfin.pt);
    assert.equal(cf?.msgType, 20);
    assert.deepEqual(
      cf.body,
      finishedVerifyData(suite, master, 'client finished', transcript.digest(suite.prfHash)),
    );
    transcript.add(20, cf.messageSeq, cf.body);
    // OpenSSL's s_server sends a NewSessionTicket (type 4) between the two Finished messages.
    for (const m of server.filter((m) => m.msgType === 4)) transcript.add(m.msgType, m.messageSeq, m.body);
    const sfin = plain.s2c.find((p) => p.rec.type === 22)!;
    const [sf] = parseHandshakeFragments(sfin.pt);
    assert.deepEqual(
      sf?.body,
      finishedVerifyData(suite, master, 'server finished', transcript.digest(suite.prfHash)),
    );
    // Application data.
    const c2sApp = plain.c2s.filter((p) => p.rec.type === 23).map((p) => p.pt.toString());
    const s2cApp = plain.s2c.filter((p) => p.rec.type === 23).map((p) => p.pt.toString());
    assert.ok(c2sApp.includes('hello from s_client\n'), `client data ${JSON.stringify(c2sApp)}`);
    assert.ok(s2cApp.includes('hello from s_server\n'), `server data ${JSON.stringify(s2cApp)}`);
    // Byte-exact re-encryption where the nonce is deterministic: CCM (OpenSSL sends
    // epoch+seq as explicit nonce, like coapkit) and ChaCha20 (RFC 7905 nonce).
    // GCM's explicit nonce is the sender's choice and CBC uses a random IV.
    if (suite.cipher !== 'aes-128-cbc' && suite.cipher !== 'aes-128-gcm') {
      for (const dir of ['c2s', 's2c'] as const) {
        for (const { rec, pt } of plain[dir]) {
          assert.equal(
            write[dir].encrypt(rec.type, rec.epoch, rec.seq, pt).toString('hex'),
            rec.fragment.toString('hex'),
          );
        }
      }
    }
  });
}
