/**
 * DTLS Connection ID (RFC 9146): the tls12_cid record format and additional
 * data byte by byte, the connection_id extension, negotiation in both
 * directions (client and server, empty CIDs) and the address update rules of
 * §6 (authenticated + newest, no amplification towards an unverified address).
 */
import * as assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { CIPHER_SUITES } from '../../src/dtls/crypto/suites.js';
import {
  acceptCidAnswer,
  CONNECTION_ID_EXTENSION,
  decodeCidExtension,
  encodeCidExtension,
  makeCid,
} from '../../src/dtls/handshake/cid-ext.js';
import {
  cidAdditionalData,
  cidRecordAt,
  cidRecordEnd,
  decodeInnerPlaintext,
  encodeInnerPlaintext,
  TLS12_CID,
} from '../../src/dtls/record/cid.js';
import { protectionFromKeyBlock } from '../../src/dtls/record/protection.js';
import { DtlsServer, type DtlsServerConnection } from '../../src/dtls/server.js';
import { DtlsError } from '../../src/errors.js';
import { VirtualClock } from '../../src/util/clock.js';
import { memClientOptions } from '../helpers/dtls-raw.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('additional data: seq_num_placeholder, tls12_cid, cid_length, tls12_cid, version, epoch, seq, cid, length', () => {
  const ad = cidAdditionalData(1, 5, hex('01020304'), 10);
  assert.deepEqual(ad, hex(`ffffffffffffffff 19 04 19 fefd 0001 000000000005 01020304 000a`));
  // Empty CID (a peer that sends CIDs but wants none is not given tls12_cid records; the
  // additional data is still defined): cid_length 0, no CID bytes.
  assert.deepEqual(
    cidAdditionalData(1, 0x0102030405, Buffer.alloc(0), 1),
    hex('ffffffffffffffff 19 00 19 fefd 0001 000102030405 0001'),
  );
});

test('inner plaintext: content | real_type | zeros; all zeros has no type', () => {
  const inner = encodeInnerPlaintext(Buffer.from('hi'), 23, 3);
  assert.deepEqual(inner, hex('6869 17 000000'));
  const d = decodeInnerPlaintext(inner);
  assert.equal(d?.type, 23);
  assert.deepEqual(d?.content, Buffer.from('hi'));
  assert.deepEqual(decodeInnerPlaintext(hex('17'))?.content, Buffer.alloc(0));
  assert.equal(decodeInnerPlaintext(hex('000000')), undefined);
  assert.equal(decodeInnerPlaintext(Buffer.alloc(0)), undefined);
  assert.equal(decodeInnerPlaintext(hex('19')), undefined, 'a tls12_cid inside a tls12_cid');
});

test('a sealed tls12_cid record, byte by byte, and what an independent AES-CCM_8 decryption finds in it', () => {
  const suite = CIPHER_SUITES.get(0xc0a8)!; // TLS_PSK_WITH_AES_128_CCM_8
  // Key block: no MAC keys; client key, server key, client IV (4), server IV (4).
  const kb = Buffer.concat([
    hex('00112233445566778899aabbccddeeff'),
    Buffer.alloc(16, 0x22),
    hex('a0a1a2a3'),
    hex('b0b1b2b3'),
  ]);
  const w = protectionFromKeyBlock(suite, kb, 'client', 'write');
  const cid = hex('c1d2e3f405060708');
  const rec = w.sealCid(23, 1, 7, cid, Buffer.from('hello'));
  // Header: type 25, DTLS 1.2, epoch 1, seq 7, the CID, length = 8 (explicit nonce) + 6 (inner) + 8 (tag).
  assert.deepEqual(
    rec.subarray(0, 13 + 8),
    Buffer.concat([hex('19 fefd 0001 000000000007'), cid, hex('0016')]),
  );
  assert.equal(rec.length, 13 + 8 + 22);
  // Explicit nonce = epoch | seq.
  const frag = rec.subarray(21);
  assert.deepEqual(frag.subarray(0, 8), hex('0001000000000007'));
  // Decrypt with node:crypto directly: nonce = client IV | explicit nonce, AAD per RFC 9146 §5.
  const d = createDecipheriv(
    'aes-128-ccm',
    kb.subarray(0, 16),
    Buffer.concat([hex('a0a1a2a3'), frag.subarray(0, 8)]),
    {
      authTagLength: 8,
    },
  );
  d.setAuthTag(frag.subarray(8 + 6));
  d.setAAD(hex(`ffffffffffffffff 19 08 19 fefd 0001 000000000007 c1d2e3f405060708 0006`), {
    plaintextLength: 6,
  });
  const inner = Buffer.concat([d.update(frag.subarray(8, 14)), d.final()]);
  assert.deepEqual(inner, Buffer.concat([Buffer.from('hello'), hex('17')]));
  // And our own reader: the record's end, the record object, the inner plaintext.
  assert.equal(cidRecordEnd(rec, 0, 8), rec.length);
  assert.equal(cidRecordEnd(rec, 0, 9), -1, 'a wrong CID length reads a length beyond the datagram');
  const r = cidRecordAt(rec, 0, rec.length, 8);
  assert.equal(r.type, TLS12_CID);
  assert.equal(r.seq, 7);
  const rd = protectionFromKeyBlock(suite, kb, 'server', 'read');
  assert.deepEqual(rd.openCid(1, 7, cid, r.fragment, 0, r.fragment.length), inner);
  // A different CID (or sequence number) in the additional data does not authenticate.
  assert.equal(rd.openCid(1, 7, hex('c1d2e3f405060709'), r.fragment, 0, r.fragment.length), undefined);
  assert.equal(rd.openCid(1, 8, cid, r.fragment, 0, r.fragment.length), undefined);
});

test('every suite seals and opens tls12_cid records (AEAD, ChaCha20, CBC + HMAC)', () => {
  for (const suite of CIPHER_SUITES.values()) {
    const kb = randomBytes(2 * suite.macKeyLength + 2 * suite.encKeyLength + 2 * suite.fixedIvLength);
    const w = protectionFromKeyBlock(suite, kb, 'server', 'write');
    const r = protectionFromKeyBlock(suite, kb, 'client', 'read');
    const cid = hex('0a0b');
    const rec = w.sealCid(21, 1, 300, cid, hex('0100'));
    const end = cidRecordEnd(rec, 0, 2);
    assert.equal(end, rec.length, suite.name);
    const f = cidRecordAt(rec, 0, end, 2).fragment;
    const inner = r.openCid(1, 300, cid, f, 0, f.length);
    assert.deepEqual(decodeInnerPlaintext(inner!)?.content, hex('0100'), suite.name);
    assert.equal(decodeInnerPlaintext(inner!)?.type, 21, suite.name);
    const bad = Buffer.from(f);
    bad[bad.length - 1]! ^= 1;
    assert.equal(r.openCid(1, 300, cid, bad, 0, bad.length), undefined, suite.name);
  }
});

test('connection_id extension: type 54, opaque cid<0..255>', () => {
  const e = encodeCidExtension(hex('0102'));
  assert.equal(e.type, 54);
  assert.equal(CONNECTION_ID_EXTENSION, 54);
  assert.deepEqual(e.data, hex('02 0102'));
  assert.deepEqual(encodeCidExtension(Buffer.alloc(0)).data, hex('00'));
  assert.deepEqual(decodeCidExtension(hex('03 aabbcc')), hex('aabbcc'));
  for (const bad of ['', '03aabb', '01aabb']) {
    assert.throws(
      () => decodeCidExtension(hex(bad)),
      (e: unknown) => e instanceof DtlsError && e.alert === 50,
    );
  }
  // An answer to an offer we did not make.
  assert.throws(
    () => acceptCidAnswer(encodeCidExtension(hex('01')), undefined),
    (e: unknown) => e instanceof DtlsError && e.alert === 110,
  );
  // Server CIDs: prefix + random, never one in use.
  const seen = new Set<string>();
  const cid = makeCid({ length: 8, prefix: hex('0102') }, (c) => seen.has(c.toString('hex')));
  assert.equal(cid.length, 8);
  assert.deepEqual(cid.subarray(0, 2), hex('0102'));
  assert.throws(() => makeCid({ length: 1 }, () => true), DtlsError);
});

// ------------------------------------------------------------ in memory

interface PairOptions {
  clientCid?: Buffer | undefined;
  serverCid?: { length?: number; prefix?: Uint8Array } | false;
}

/** A client and a DtlsServer joined in memory; `from` is where the client's datagrams come from. */
function pair(o: PairOptions = {}) {
  const queue: (() => void)[] = [];
  const toClient: { d: Buffer; address: string; port: number }[] = [];
  const toServer: Buffer[] = [];
  const data: string[] = [];
  const from = { address: '192.0.2.1', port: 40000 };
  let client!: DtlsClientConnection;
  const server = new DtlsServer(
    {
      pskLookup: (id) => (id === 'mem' ? Buffer.from('k') : undefined),
      ...(o.serverCid !== undefined ? { cid: o.serverCid } : {}),
    },
    {
      send: (d, address, port) => {
        toClient.push({ d, address, port });
        queue.push(() => client.handleDatagram(d));
      },
      established: () => {},
      data: (d, conn) => {
        data.push(d.toString());
        // Echo back, so the tests see where the server answers.
        conn.sendApplicationData(Buffer.from(`re:${d.toString()}`));
      },
      closed: () => {},
    },
  );
  const clientData: string[] = [];
  client = new DtlsClientConnection(memClientOptions({ cid: o.clientCid }), {
    sendDatagram: (d) => {
      toServer.push(d);
      const { address, port } = from;
      queue.push(() => server.handleDatagram(d, address, port));
    },
    established: () => {},
    data: (d) => clientData.push(d.toString()),
    closed: () => {},
  });
  const drain = () => {
    for (let i = 0; i < 1000 && queue.length > 0; i++) queue.shift()!();
  };
  const conn = () =>
    [...(server as unknown as { conns: Map<string, DtlsServerConnection> }).conns.values()][0];
  const done = () => {
    client.destroy();
    server.close();
  };
  return { server, client, drain, data, clientData, toClient, toServer, from, conn, done };
}

test('CID in both directions: the handshake agrees, epoch-1 records are tls12_cid both ways', () => {
  const p = pair({ clientCid: hex('beef') });
  try {
    p.client.start();
    p.drain();
    assert.equal(p.client.state, 'established');
    const conn = p.conn()!;
    assert.equal(conn.cidNegotiated, true);
    assert.equal(conn.cidReceive?.length, 8, 'the server hands out 8-byte CIDs by default');
    assert.deepEqual(p.client.cidReceive, hex('beef'));
    // The client's Finished already travelled in a tls12_cid record carrying the server's CID.
    const fin = p.toServer.at(-1)!;
    const at = fin.indexOf(TLS12_CID);
    assert.ok(at > 0);
    assert.deepEqual(fin.subarray(at + 11, at + 19), conn.cidReceive);
    p.toServer.length = 0;
    p.toClient.length = 0;
    p.client.sendApplicationData(Buffer.from('ping'));
    p.drain();
    assert.deepEqual(p.data, ['ping']);
    assert.deepEqual(p.clientData, ['re:ping']);
    assert.equal(p.toServer[0]![0], TLS12_CID);
    assert.deepEqual(p.toServer[0]!.subarray(11, 19), conn.cidReceive);
    const down = p.toClient[0]!.d;
    assert.equal(down[0], TLS12_CID);
    assert.deepEqual(down.subarray(11, 13), hex('beef'), 'the server sends the client its own CID');
  } finally {
    p.done();
  }
});

test('zero-length client CID: the client sends tls12_cid records, the server answers with plain ones', () => {
  const p = pair({ clientCid: Buffer.alloc(0) });
  try {
    p.client.start();
    p.drain();
    assert.equal(p.client.state, 'established');
    assert.equal(p.client.cidReceive, undefined);
    p.toServer.length = 0;
    p.toClient.length = 0;
    p.client.sendApplicationData(Buffer.from('a'));
    p.drain();
    assert.deepEqual(p.clientData, ['re:a']);
    assert.equal(p.toServer[0]![0], TLS12_CID);
    assert.equal(p.toClient[0]!.d[0], 23);
    // Plain records are not accepted any more once our CID is agreed (RFC 9146 §4).
  } finally {
    p.done();
  }
});

test('zero-length server CID and no CID at all: plain records; no offer, no answer', () => {
  const z = pair({ clientCid: hex('01'), serverCid: { length: 0 } });
  try {
    z.client.start();
    z.drain();
    assert.equal(z.client.state, 'established');
    z.toServer.length = 0;
    z.toClient.length = 0;
    z.client.sendApplicationData(Buffer.from('b'));
    z.drain();
    assert.deepEqual(z.clientData, ['re:b']);
    assert.equal(z.toServer[0]![0], 23, 'the server wants no CID: plain records to it');
    assert.equal(z.toClient[0]!.d[0], TLS12_CID, 'the client asked for one: it gets it');
  } finally {
    z.done();
  }
  for (const o of [{ clientCid: hex('01'), serverCid: false as const }, {}]) {
    const p = pair(o);
    try {
      p.client.start();
      p.drain();
      assert.equal(p.client.state, 'established');
      assert.equal(p.client.cidNegotiated, false);
      assert.equal(p.conn()!.cidNegotiated, false);
      p.toServer.length = 0;
      p.client.sendApplicationData(Buffer.from('c'));
      p.drain();
      assert.equal(p.toServer[0]![0], 23);
    } finally {
      p.done();
    }
  }
});

test('§6: a newer authenticated record from a new address moves the session; replays and forgeries do not', () => {
  const p = pair({ clientCid: Buffer.alloc(0) });
  try {
    p.client.start();
    p.drain();
    p.client.sendApplicationData(Buffer.from('1'));
    p.drain();
    // The NAT rebinds: same session, new port.
    p.from.port = 40001;
    p.toClient.length = 0;
    p.client.sendApplicationData(Buffer.from('2'));
    p.drain();
    assert.deepEqual(p.data, ['1', '2']);
    assert.equal(p.server.stats.moved, 1);
    assert.deepEqual(
      p.toClient.map((t) => t.port),
      [40001],
      'the answer goes to the new address',
    );
    assert.equal(p.conn()!.peerLabel, '192.0.2.1%40001');
    // An older record (captured before) replayed from elsewhere: dropped by the replay window.
    const captured = p.toServer.at(-1)!;
    p.server.handleDatagram(captured, '203.0.113.9', 9999);
    assert.equal(p.server.stats.moved, 1);
    // A forged record with the right CID from elsewhere: does not authenticate, nothing moves.
    p.client.sendApplicationData(Buffer.from('3'));
    const real = p.toServer.at(-1)!;
    const forged = Buffer.from(real);
    forged[forged.length - 1]! ^= 0xff;
    p.server.handleDatagram(forged, '203.0.113.9', 9999);
    assert.equal(p.server.stats.moved, 1);
    assert.equal(p.conn()!.port, 40001);
    // A reordered older record from the old address is processed but does not move the session back.
    p.drain();
    const stale = p.toServer.at(-1)!;
    p.client.sendApplicationData(Buffer.from('4'));
    p.drain();
    assert.equal(p.conn()!.port, 40001);
    p.server.handleDatagram(stale, '192.0.2.1', 40000);
    assert.equal(p.conn()!.port, 40001, 'not newer: no move');
    // The server still reaches the session under the key it had before it moved.
    assert.equal(p.server.send('192.0.2.1%40000', Buffer.from('push')), true);
  } finally {
    p.done();
  }
});

test('§6: at most 3x the received bytes go to a new address until the peer answers from it', () => {
  const p = pair({ clientCid: Buffer.alloc(0) });
  try {
    p.client.start();
    p.drain();
    p.from.port = 40002;
    p.toClient.length = 0;
    // One small record from the new address: the echo fits the budget, a 1000-byte push does not.
    const conn = p.conn()!;
    p.client.sendApplicationData(Buffer.from('x'));
    p.drain();
    assert.equal(p.toClient.length, 1);
    assert.equal(p.server.stats.moved, 1);
    conn.sendApplicationData(Buffer.alloc(1000));
    assert.equal(p.toClient.length, 1, 'not sent: the new address is not verified');
    assert.equal(p.server.stats.amplificationDropped, 1);
    // The peer sends again from the new address after our answer: the path counts as verified.
    p.client.sendApplicationData(Buffer.from('y'));
    p.drain();
    conn.sendApplicationData(Buffer.alloc(1000));
    assert.equal(p.toClient.at(-1)!.d.length > 1000, true);
    assert.equal(conn.pathCredit, -1);
  } finally {
    p.done();
  }
});

test('without CID a session does not follow its peer to a new address', () => {
  const p = pair({});
  try {
    p.client.start();
    p.drain();
    p.from.port = 40003;
    p.client.sendApplicationData(Buffer.from('lost'));
    p.drain();
    assert.deepEqual(p.data, []);
    assert.equal(p.server.stats.moved, 0);
  } finally {
    p.done();
  }
});

test('tls12_cid records with an unknown CID are counted and dropped; bad CID options are refused', () => {
  const server = new DtlsServer(
    { pskLookup: () => undefined },
    {
      send: () => {},
      established: () => {},
      data: () => {},
      closed: () => {},
    },
  );
  try {
    const rec = Buffer.concat([hex('19 fefd 0001 000000000001'), Buffer.alloc(8, 7), hex('0004 00000000')]);
    server.handleDatagram(rec, '192.0.2.1', 1);
    assert.equal(server.stats.unknownCid, 1);
    // Truncated: not even counted.
    server.handleDatagram(rec.subarray(0, 15), '192.0.2.1', 1);
    assert.equal(server.stats.unknownCid, 1);
  } finally {
    server.close();
  }
  const sink = { send() {}, established() {}, data() {}, closed() {} };
  assert.throws(() => new DtlsServer({ pskLookup: () => undefined, cid: { length: 256 } }, sink), /0\.\.255/);
  assert.throws(
    () => new DtlsServer({ pskLookup: () => undefined, cid: { length: 6, prefix: hex('010203') } }, sink),
    /random/,
  );
});

test('without CID: the fresh handshake after a rebinding is a new session; the old one is reclaimed by idle timeout', () => {
  const clock = new VirtualClock();
  const queue: (() => void)[] = [];
  const clients = new Map<number, DtlsClientConnection>();
  const server = new DtlsServer(
    { pskLookup: () => Buffer.from('k'), idleTimeoutMs: 10_000, clock },
    {
      send: (d, _a, port) => queue.push(() => clients.get(port)?.handleDatagram(d)),
      established: () => {},
      data: () => {},
      closed: () => {},
    },
  );
  const device = (port: number) => {
    const c = new DtlsClientConnection(
      {
        mtu: 1280,
        ipOverhead: 28,
        retransmitInitialMs: 1000,
        retransmitMaxMs: 60_000,
        handshakeTimeoutMs: 30_000,
        clock,
        identity: Buffer.from('dev'),
        psk: Buffer.from('k'),
        cipherSuites: [0xc0a8],
      },
      {
        sendDatagram: (d) => queue.push(() => server.handleDatagram(d, '192.0.2.1', port)),
        established: () => {},
        data: () => {},
        closed: () => {},
      },
    );
    clients.set(port, c);
    c.start();
    for (let i = 0; i < 1000 && queue.length > 0; i++) queue.shift()!();
    assert.equal(c.state, 'established');
    return c;
  };
  try {
    device(40000);
    clock.advanceSync(4000);
    // The NAT rebinds: the device's records from 40001 find no session; it handshakes again.
    const fresh = device(40001);
    assert.equal(server.sessionCount, 2, 'the old session is still held');
    for (let t = 0; t < 4; t++) {
      clock.advanceSync(3000);
      fresh.sendApplicationData(Buffer.from('tick'));
      for (let i = 0; i < 100 && queue.length > 0; i++) queue.shift()!();
    }
    clock.advanceSync(1000);
    assert.equal(server.sessionCount, 1, 'the old session was reclaimed by the idle sweep');
    assert.equal(server.stats.evictedIdle, 1);
    assert.ok(server.connection('192.0.2.1%40001'));
  } finally {
    for (const c of clients.values()) c.destroy();
    server.close();
  }
});
