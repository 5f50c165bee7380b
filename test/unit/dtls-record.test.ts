import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fc from 'fast-check';
import {
  fragmentMessage,
  HandshakeReassembler,
  parseHandshakeFragments,
} from '../../src/dtls/handshake/fragment.js';
import {
  decodeClientHello,
  decodeClientKeyExchange,
  decodeEcPointFormats,
  decodeFinished,
  decodeHelloVerifyRequest,
  decodeServerHello,
  decodeServerKeyExchange,
  decodeServerName,
  decodeSupportedGroups,
  encodeClientHello,
  encodeClientKeyExchange,
  encodeServerHello,
  encodeServerKeyExchange,
  encodeServerName,
} from '../../src/dtls/handshake/messages.js';
import { encodeRecord, parseDatagram, parseRecord } from '../../src/dtls/record/record.js';
import { ReplayWindow } from '../../src/dtls/record/replay.js';
import { DtlsError } from '../../src/errors.js';

const onlyDtlsError = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof DtlsError)) throw e;
  }
};

test('record header encode/parse round trip, several records per datagram', () => {
  const a = encodeRecord(22, 0, 5, Buffer.from('abc'));
  assert.equal(a.toString('hex'), '16fefd0000000000000005000361' + '6263');
  const b = encodeRecord(23, 1, 0xffffffffffff - 1, Buffer.alloc(0));
  const recs = parseDatagram(Buffer.concat([a, b]));
  assert.equal(recs.length, 2);
  assert.deepEqual(
    recs.map((r) => [r.type, r.epoch, r.seq, r.fragment.toString('hex')]),
    [
      [22, 0, 5, '616263'],
      [23, 1, 0xffffffffffff - 1, ''],
    ],
  );
  // DTLS 1.0 record version accepted (OpenSSL's HelloVerifyRequest)
  assert.equal(parseDatagram(encodeRecord(22, 0, 0, Buffer.from('x'), 0xfeff)).length, 1);
  // truncated second record: the first one is kept, the remainder dropped
  assert.equal(parseDatagram(Buffer.concat([a, b.subarray(0, 10)])).length, 1);
  // length beyond the datagram
  const bad = Buffer.from(a);
  bad.writeUInt16BE(100, 11);
  assert.equal(parseDatagram(bad).length, 0);
  // bad content type / version
  assert.equal(parseDatagram(encodeRecord(99, 0, 0, Buffer.alloc(1))).length, 0);
  assert.equal(parseDatagram(encodeRecord(22, 0, 0, Buffer.alloc(1), 0x0303)).length, 0);
  assert.throws(() => parseRecord(Buffer.alloc(5)), DtlsError);
});

test('parsers of random bytes only ever throw DtlsError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, ecdhe) => {
      const b = Buffer.from(bytes);
      onlyDtlsError(() => parseDatagram(b));
      onlyDtlsError(() => parseRecord(b));
      onlyDtlsError(() => parseHandshakeFragments(b));
      onlyDtlsError(() => decodeClientHello(b));
      onlyDtlsError(() => decodeServerHello(b));
      onlyDtlsError(() => decodeHelloVerifyRequest(b));
      onlyDtlsError(() => decodeServerKeyExchange(b, ecdhe));
      onlyDtlsError(() => decodeClientKeyExchange(b, ecdhe));
      onlyDtlsError(() => decodeFinished(b));
      onlyDtlsError(() => decodeServerName(b));
      onlyDtlsError(() => decodeSupportedGroups(b));
      onlyDtlsError(() => decodeEcPointFormats(b));
      const r = new HandshakeReassembler(0);
      onlyDtlsError(() => {
        for (const f of parseHandshakeFragments(b)) r.add(f);
      });
    }),
    { numRuns: 2000 },
  );
});

test('mutated valid ClientHello only throws DtlsError', () => {
  const ch = encodeClientHello({
    version: 0xfefd,
    random: Buffer.alloc(32, 7),
    sessionId: Buffer.alloc(0),
    cookie: Buffer.alloc(32, 1),
    cipherSuites: [0xc0a8, 0xccac],
    compressionMethods: Buffer.from([0]),
    extensions: [
      { type: 0, data: encodeServerName('example.com') },
      { type: 23, data: Buffer.alloc(0) },
    ],
  });
  const decoded = decodeClientHello(ch);
  assert.deepEqual(decoded.cipherSuites, [0xc0a8, 0xccac]);
  assert.equal(decodeServerName(decoded.extensions[0]!.data), 'example.com');
  fc.assert(
    fc.property(
      fc.nat(ch.length - 1),
      fc.integer({ min: 0, max: 255 }),
      fc.nat(ch.length),
      (pos, val, cut) => {
        const m = Buffer.from(ch);
        m[pos] = val;
        onlyDtlsError(() => decodeClientHello(m.subarray(0, cut)));
        onlyDtlsError(() => decodeClientHello(m));
      },
    ),
    { numRuns: 2000 },
  );
  // duplicate extension is a decode error
  const dup = encodeClientHello({
    ...decoded,
    extensions: [
      { type: 23, data: Buffer.alloc(0) },
      { type: 23, data: Buffer.alloc(0) },
    ],
  });
  assert.throws(
    () => decodeClientHello(dup),
    (e: unknown) => e instanceof DtlsError && e.alert === 50,
  );
});

test('other message codecs round trip', () => {
  const sh = {
    version: 0xfefd,
    random: Buffer.alloc(32, 3),
    sessionId: Buffer.alloc(0),
    cipherSuite: 0xc0a8,
    compressionMethod: 0,
    extensions: [],
  };
  assert.deepEqual(decodeServerHello(encodeServerHello(sh)), sh);
  const ske = { identityHint: Buffer.from('hint'), ecdhe: { group: 29, publicKey: Buffer.alloc(32, 9) } };
  assert.deepEqual(decodeServerKeyExchange(encodeServerKeyExchange(ske), true), ske);
  assert.deepEqual(
    decodeServerKeyExchange(encodeServerKeyExchange({ identityHint: Buffer.from('h') }), false),
    {
      identityHint: Buffer.from('h'),
    },
  );
  const cke = { identity: Buffer.from('id'), ecdhePublic: Buffer.alloc(65, 4) };
  assert.deepEqual(decodeClientKeyExchange(encodeClientKeyExchange(cke), true), cke);
  assert.equal(encodeClientKeyExchange({ identity: Buffer.from('id') }).toString('hex'), '00026964');
});

test('anti-replay window (RFC 6347 §4.1.2.6)', () => {
  const w = new ReplayWindow(64);
  assert.ok(w.check(0), 'assertion at line 158');
  w.update(0);
  assert.ok(!w.check(0), 'duplicate rejected');
  assert.ok(w.check(5), 'assertion at line 161');
  w.update(5);
  assert.ok(w.check(3), 'in-window gap accepted');
  w.update(3);
  assert.ok(!w.check(3), 'assertion at line 165');
  w.update(100);
  assert.ok(!w.check(36), 'left of window rejected (100-36 = 64)');
  assert.ok(w.check(37), 'right edge of window still accepted');
  assert.ok(!w.check(5), 'old seen');
  assert.ok(!w.check(100), 'assertion at line 170');
  // large jump clears the window; numbers beyond 2^32 work
  const big = 2 ** 40;
  w.update(big);
  assert.ok(w.check(big - 1), 'assertion at line 174');
  assert.ok(!w.check(big - 64), 'assertion at line 175');
  assert.ok(!w.check(big), 'assertion at line 176');
  assert.equal(w.highest, big);
  // model-based check against a Set
  fc.assert(
    fc.property(fc.array(fc.nat(300), { maxLength: 200 }), (seqs) => {
      const win = new ReplayWindow(32);
      const seen = new Set<number>();
      let max = -1;
      for (const s of seqs) {
        const expected = !seen.has(s) && (s > max || max - s < 32);
        assert.equal(win.check(s), expected);
        if (expected) {
          win.update(s);
          seen.add(s);
          max = Math.max(max, s);
        }
      }
    }),
  );
});

test('reassembly under random fragmentation, duplication and reordering', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ minLength: 0, maxLength: 400 }), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 1, max: 120 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (bodies, maxBody, shuffle, dups) => {
        const frags = bodies.flatMap((b, i) => fragmentMessage(1 + i, i, b, maxBody));
        // random overlapping re-fragmentation of message 0 as well
        const parsed = frags.flatMap((f) => parseHandshakeFragments(f));
        for (const d of dups) parsed.push(parsed[d % parsed.length]!);
        for (let i = 0; i < shuffle.length && parsed.length > 1; i++) {
          const a = shuffle[i]! % parsed.length;
          const b = (i * 7 + 3) % parsed.length;
          [parsed[a], parsed[b]] = [parsed[b]!, parsed[a]!];
        }
        const r = new HandshakeReassembler(0);
        const out = parsed.flatMap((f) => r.add(f));
        assert.equal(out.length, bodies.length);
        out.forEach((m, i) => {
          assert.equal(m.messageSeq, i);
          assert.equal(m.msgType, 1 + i);
          assert.deepEqual(m.body, Buffer.from(bodies[i]!));
        });
        assert.equal(r.nextSeq, bodies.length);
      },
    ),
    { numRuns: 300 },
  );
});

test('reassembler rejects inconsistent fragments and ignores old / far-future ones', () => {
  const r = new HandshakeReassembler(2, 4);
  const [f1] = parseHandshakeFragments(fragmentMessage(1, 2, Buffer.alloc(10, 1), 5)[0]!);
  assert.deepEqual(r.add(f1!), []);
  const [bad] = parseHandshakeFragments(fragmentMessage(1, 2, Buffer.alloc(11, 1), 5)[1]!);
  assert.throws(() => r.add(bad!), DtlsError);
  const [old] = parseHandshakeFragments(fragmentMessage(1, 1, Buffer.alloc(3), 5)[0]!);
  assert.ok(r.isOld(old!), 'assertion at line 236');
  assert.deepEqual(r.add(old!), []);
  const [far] = parseHandshakeFragments(fragmentMessage(1, 9, Buffer.alloc(3), 5)[0]!);
  assert.deepEqual(r.add(far!), []);
  // fragment beyond its message length
  const f = fragmentMessage(1, 0, Buffer.alloc(4), 4)[0]!;
  f.writeUIntBE(2, 6, 3);
  assert.throws(() => parseHandshakeFragments(f), DtlsError);
});
