/**
 * The established-traffic fast path of the DTLS record layer (no record
 * objects, no key strings, in-place decryption) must behave exactly like the
 * general path: header validation, 48-bit sequence numbers, anti-replay,
 * silent discard of forged records, several records per datagram, and the
 * server's per-port session index with several peers sharing a port.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import * as fc from 'fast-check';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { CIPHER_SUITES } from '../../src/dtls/crypto/suites.js';
import { protectionFromKeyBlock } from '../../src/dtls/record/protection.js';
import {
  encodeRecord,
  parseDatagram,
  RECORD_HEADER_LENGTH,
  recordEnd,
  recordSeq,
} from '../../src/dtls/record/record.js';
import { DtlsServer } from '../../src/dtls/server.js';

/** The header checks as the record layer always did them, with Buffer's readers. */
function referenceParse(data: Buffer) {
  const out: { type: number; version: number; epoch: number; seq: number; fragment: string }[] = [];
  let o = 0;
  while (data.length - o >= 13) {
    const type = data[o]!;
    const version = data.readUInt16BE(o + 1);
    const epoch = data.readUInt16BE(o + 3);
    const seq = data.readUIntBE(o + 5, 6);
    const length = data.readUInt16BE(o + 11);
    const end = o + 13 + length;
    if (end > data.length || type < 20 || type > 23) break;
    if (version !== 0xfefd && version !== 0xfeff) break;
    if (length > 16384 + 2048) break;
    out.push({ type, version, epoch, seq, fragment: data.subarray(o + 13, end).toString('hex') });
    o = end;
  }
  return out;
}

test('record header parsing agrees with the Buffer-reader reference (random datagrams)', () => {
  const record = fc
    .tuple(
      fc.integer({ min: 18, max: 25 }),
      fc.constantFrom(0xfefd, 0xfeff, 0x0303, 0xfefe),
      fc.integer({ min: 0, max: 0xffff }),
      fc.oneof(
        fc.integer({ min: 0, max: 0xffffffffffff }),
        fc.constantFrom(0x7fffffff, 0x80000000, 0xffffffff, 0x100000000, 0x8000_0000_0000, 0xffffffffffff),
      ),
      fc.uint8Array({ maxLength: 40 }),
      fc.integer({ min: -2, max: 2 }),
    )
    .map(([type, version, epoch, seq, body, lenDelta]) => {
      const b = Buffer.alloc(13 + body.length);
      b[0] = type;
      b.writeUInt16BE(version, 1);
      b.writeUInt16BE(epoch, 3);
      b.writeUIntBE(seq, 5, 6);
      b.writeUInt16BE(Math.max(0, body.length + lenDelta), 11);
      b.set(body, 13);
      return b;
    });
  fc.assert(
    fc.property(fc.array(record, { minLength: 1, maxLength: 4 }), fc.nat(3), (recs, cut) => {
      const all = Buffer.concat(recs);
      const data = all.subarray(0, Math.max(0, all.length - cut));
      const got = parseDatagram(data).map((r) => ({ ...r, fragment: r.fragment.toString('hex') }));
      assert.deepEqual(got, referenceParse(data));
      // recordEnd / recordSeq walk the same records
      let o = 0;
      let n = 0;
      for (let end = recordEnd(data, o); end >= 0; o = end, end = recordEnd(data, o)) {
        assert.equal(recordSeq(data, o), data.readUIntBE(o + 5, 6));
        n++;
      }
      assert.equal(n, got.length);
    }),
    { numRuns: 2000 },
  );
});

test('protected records carry epoch + 48-bit seq byte-exactly (explicit nonce) and round-trip', () => {
  for (const id of [0xc0a8, 0xc0a4, 0x00a8, 0xccac, 0xc037]) {
    const suite = CIPHER_SUITES.get(id)!;
    const kb = Buffer.alloc(2 * (suite.macKeyLength + suite.encKeyLength + suite.fixedIvLength));
    for (let i = 0; i < kb.length; i++) kb[i] = (i * 37 + 11) & 0xff;
    const w = protectionFromKeyBlock(suite, kb, 'client', 'write');
    const r = protectionFromKeyBlock(suite, kb, 'server', 'read');
    for (const seq of [
      0,
      1,
      0xff,
      0x7fffffff,
      0x80000000,
      0xffffffff,
      0x100000000,
      2 ** 47 + 3,
      2 ** 48 - 2,
    ]) {
      const pt = Buffer.from(`seq ${seq}`);
      const rec = w.encryptRecord(23, 1, seq, pt);
      const ref = Buffer.alloc(8);
      ref.writeUInt16BE(1, 0);
      ref.writeUIntBE(seq, 2, 6);
      assert.deepEqual(rec.subarray(3, 11), ref, `header epoch+seq ${seq}`);
      assert.equal(rec.readUInt16BE(11), rec.length - RECORD_HEADER_LENGTH);
      if (suite.recordIvLength === 8) assert.deepEqual(rec.subarray(13, 21), ref, `explicit nonce ${seq}`);
      // decrypted in place from the datagram, and through the fragment API
      const padded = Buffer.concat([Buffer.from([9, 9, 9]), rec]);
      assert.deepEqual(r.open(23, 1, seq, padded, 3 + 13, rec.length - 13), pt);
      assert.deepEqual(r.decrypt(23, 1, BigInt(seq), rec.subarray(13)), pt);
      // the AAD covers epoch, seq and type
      assert.equal(r.open(23, 1, seq + 1, rec, 13, rec.length - 13), undefined);
      assert.equal(r.open(22, 1, seq, rec, 13, rec.length - 13), undefined);
      assert.equal(r.open(23, 2, seq, rec, 13, rec.length - 13), undefined);
    }
  }
});

/** An in-memory server and any number of clients (address, port) talking to it. */
function world() {
  const queue: (() => void)[] = [];
  const clients = new Map<string, DtlsClientConnection>();
  const received: string[] = [];
  const closed: string[] = [];
  const server = new DtlsServer(
    { pskLookup: () => Buffer.from('k'), cipherSuites: [0xc0a8] },
    {
      send: (d, address, port) => queue.push(() => clients.get(`${address}%${port}`)?.handleDatagram(d)),
      established: () => {},
      data: (d, conn) => {
        received.push(`${conn.address}%${conn.port}:${d.toString()}`);
        conn.sendApplicationData(Buffer.concat([Buffer.from('echo:'), d]));
      },
      closed: (conn) => closed.push(`${conn.address}%${conn.port}`),
    },
  );
  const drain = () => {
    for (let i = 0; i < 1000 && queue.length > 0; i++) queue.shift()!();
  };
  const connect = (address: string, port: number) => {
    const wire: Buffer[] = [];
    const echoes: string[] = [];
    const conn = new DtlsClientConnection(
      {
        mtu: 1280,
        ipOverhead: 28,
        retransmitInitialMs: 1000,
        retransmitMaxMs: 60_000,
        handshakeTimeoutMs: 30_000,
        identity: Buffer.from('id'),
        psk: Buffer.from('k'),
        cipherSuites: [0xc0a8],
      },
      {
        sendDatagram: (d) => {
          wire.push(d);
          queue.push(() => server.handleDatagram(d, address, port));
        },
        established: () => {},
        data: (d) => echoes.push(d.toString()),
        closed: () => {},
      },
    );
    clients.set(`${address}%${port}`, conn);
    conn.start();
    drain();
    assert.equal(conn.state, 'established');
    wire.length = 0;
    return { conn, wire, echoes };
  };
  return { server, drain, connect, received, closed };
}

test('server fast path: sessions sharing a port (different addresses) and sharing an address', () => {
  const w = world();
  try {
    const a = w.connect('10.0.0.1', 5000);
    const b = w.connect('10.0.0.2', 5000);
    const c = w.connect('10.0.0.1', 5001);
    assert.equal(w.server.sessionCount, 3);
    for (let i = 0; i < 3; i++) {
      for (const [name, x] of [
        ['a', a],
        ['b', b],
        ['c', c],
      ] as const) {
        x.conn.sendApplicationData(Buffer.from(`${name}${i}`));
        w.drain();
      }
    }
    assert.deepEqual(w.received, [
      '10.0.0.1%5000:a0',
      '10.0.0.2%5000:b0',
      '10.0.0.1%5001:c0',
      '10.0.0.1%5000:a1',
      '10.0.0.2%5000:b1',
      '10.0.0.1%5001:c1',
      '10.0.0.1%5000:a2',
      '10.0.0.2%5000:b2',
      '10.0.0.1%5001:c2',
    ]);
    assert.deepEqual(a.echoes, ['echo:a0', 'echo:a1', 'echo:a2']);
    assert.deepEqual(b.echoes, ['echo:b0', 'echo:b1', 'echo:b2']);
    // b's record delivered as if from a's address: a cannot decrypt it, nothing delivered, both live on
    b.conn.sendApplicationData(Buffer.from('misrouted'));
    const misrouted = b.wire.at(-1)!;
    w.server.handleDatagram(misrouted, '10.0.0.1', 5000);
    assert.equal(w.received.length, 9);
    // the same record from b's own address is fine
    w.server.handleDatagram(misrouted, '10.0.0.2', 5000);
    assert.equal(w.received.at(-1), '10.0.0.2%5000:misrouted');
    // a closes: b (same port) keeps working, a's port finds nothing
    a.conn.close();
    w.drain();
    assert.deepEqual(w.closed, ['10.0.0.1%5000']);
    b.conn.sendApplicationData(Buffer.from('after'));
    w.drain();
    assert.equal(w.received.at(-1), '10.0.0.2%5000:after');
    const stale = a.wire[0]!;
    w.server.handleDatagram(stale, '10.0.0.1', 5000);
    assert.equal(w.received.at(-1), '10.0.0.2%5000:after');
    assert.equal(w.server.sessionCount, 2);
  } finally {
    w.server.close();
  }
});

test('fast path: replayed, forged and coalesced application records', () => {
  const w = world();
  try {
    const a = w.connect('192.0.2.7', 7000);
    a.conn.sendApplicationData(Buffer.from('one'));
    a.conn.sendApplicationData(Buffer.from('two'));
    const [one, two] = a.wire;
    // two records in one datagram, delivered in order
    w.server.handleDatagram(Buffer.concat([one!, two!]), '192.0.2.7', 7000);
    assert.deepEqual(w.received, ['192.0.2.7%7000:one', '192.0.2.7%7000:two']);
    // replays (alone and coalesced) are dropped by the anti-replay window
    w.server.handleDatagram(one!, '192.0.2.7', 7000);
    w.server.handleDatagram(Buffer.concat([two!, one!]), '192.0.2.7', 7000);
    assert.equal(w.received.length, 2);
    // a forged record is dropped silently, does not move the window, and the session survives
    a.conn.sendApplicationData(Buffer.from('three'));
    const three = a.wire.at(-1)!;
    const forged = Buffer.from(three);
    forged[forged.length - 1]! ^= 1;
    w.server.handleDatagram(forged, '192.0.2.7', 7000);
    assert.equal(w.received.length, 2);
    w.server.handleDatagram(three, '192.0.2.7', 7000);
    assert.deepEqual(w.received.at(-1), '192.0.2.7%7000:three');
    // a record truncated inside a datagram stops parsing there; the records before it count
    a.conn.sendApplicationData(Buffer.from('four'));
    const four = a.wire.at(-1)!;
    w.server.handleDatagram(Buffer.concat([four, three.subarray(0, 20)]), '192.0.2.7', 7000);
    assert.deepEqual(w.received.at(-1), '192.0.2.7%7000:four');
    // application data coalesced with close_notify: data delivered, then the session ends
    a.conn.sendApplicationData(Buffer.from('last'));
    const last = a.wire.at(-1)!;
    a.conn.close();
    const notify = a.wire.at(-1)!;
    w.server.handleDatagram(Buffer.concat([last, notify]), '192.0.2.7', 7000);
    assert.deepEqual(w.received.at(-1), '192.0.2.7%7000:last');
    assert.deepEqual(w.closed, ['192.0.2.7%7000']);
    assert.equal(w.server.sessionCount, 0);
    w.server.handleDatagram(three, '192.0.2.7', 7000);
    assert.equal(w.received.length, 5);
    assert.equal(encodeRecord(23, 1, 0, Buffer.alloc(0)).length, RECORD_HEADER_LENGTH);
  } finally {
    w.server.close();
  }
});
