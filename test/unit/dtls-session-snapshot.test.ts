/**
 * Per-connection snapshot / restore of an established DTLS session (socket-free):
 * the restored server decrypts the client's next records, refuses replays of
 * records the first server had accepted (the replay window came along), accepts
 * a late record within the window once, and writes with the sequence number
 * margin added (no nonce reused under the same keys); the client reads it.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { parseDatagram } from '../../src/dtls/record/record.js';
import { DtlsServer, type DtlsServerConnection } from '../../src/dtls/server.js';
import { DtlsError } from '../../src/errors.js';
import { memClientOptions } from '../helpers/dtls-raw.js';

const ADDRESS = '2001:db8::1';
const PORT = 1234;

function harness() {
  const toClient: Buffer[] = [];
  const received: string[][] = [[], []];
  const servers: DtlsServer[] = [];
  const makeServer = (i: number) => {
    const s = new DtlsServer(
      { pskLookup: (id) => (id === 'mem' ? Buffer.from('k') : undefined) },
      {
        send: (d) => toClient.push(d),
        established: () => {},
        data: (d) => received[i]!.push(d.toString()),
        closed: () => {},
      },
    );
    servers[i] = s;
    return s;
  };
  makeServer(0);
  const toServer: Buffer[] = [];
  const clientData: string[] = [];
  const client = new DtlsClientConnection(memClientOptions(), {
    sendDatagram: (d) => toServer.push(d),
    established: () => {},
    data: (d) => clientData.push(d.toString()),
    closed: () => {},
  });
  /** Delivers queued datagrams both ways, to server `i`. */
  const drain = (i: number) => {
    for (let n = 0; n < 1000 && (toServer.length > 0 || toClient.length > 0); n++) {
      const up = toServer.shift();
      if (up) servers[i]!.handleDatagram(up, ADDRESS, PORT);
      const down = toClient.shift();
      if (down) for (const r of parseDatagram(down)) client.handleRecord(r);
    }
  };
  return { client, servers, makeServer, toServer, toClient, received, clientData, drain };
}

test('a restored session keeps keys, identity, replay window and a write-sequence margin', () => {
  const h = harness();
  h.client.start();
  h.drain(0);
  assert.equal(h.client.state, 'established');
  const conn = h.servers[0]!.establishedSessions()[0]!;
  assert.equal(conn.identity, 'mem');
  // Three records: the first two reach server 0, the third is held back (late).
  h.client.sendApplicationData(Buffer.from('one'));
  h.client.sendApplicationData(Buffer.from('two'));
  h.client.sendApplicationData(Buffer.from('late'));
  const [one, two, late] = h.toServer.splice(0);
  h.servers[0]!.handleDatagram(one!, ADDRESS, PORT);
  h.servers[0]!.handleDatagram(two!, ADDRESS, PORT);
  assert.deepEqual(h.received[0], ['one', 'two']);
  conn.sendApplicationData(Buffer.from('from server 0'));
  const before = parseDatagram(h.toClient[0]!)[0]!.seq;
  h.drain(0);

  const snap = conn.snapshotSession(1000);
  assert.ok(snap !== undefined);
  assert.equal(snap.writeSeq, before + 1 + 1000);
  assert.equal(snap.identity, 'mem');
  h.servers[0]!.detach(conn);
  assert.equal(h.servers[0]!.sessionCount, 0);

  const s1 = h.makeServer(1);
  const { added, skipped } = s1.adopt([{ address: ADDRESS, port: PORT, snapshot: snap }]);
  assert.equal(added.length, 1);
  assert.equal(skipped, 0);
  assert.equal(added[0]!.identity, 'mem');
  // Replays of what server 0 accepted are dropped; the late record gets in once; new ones too.
  s1.handleDatagram(one!, ADDRESS, PORT);
  s1.handleDatagram(two!, ADDRESS, PORT);
  s1.handleDatagram(late!, ADDRESS, PORT);
  s1.handleDatagram(late!, ADDRESS, PORT);
  h.client.sendApplicationData(Buffer.from('after'));
  h.drain(1);
  assert.deepEqual(h.received[1], ['late', 'after']);
  // Server 1 writes past the margin; the client decrypts it.
  added[0]!.sendApplicationData(Buffer.from('from server 1'));
  const seq = parseDatagram(h.toClient[0]!)[0]!.seq;
  assert.equal(seq, before + 1 + 1000);
  h.drain(1);
  assert.deepEqual(h.clientData, ['from server 0', 'from server 1']);
  // No handshake with server 1: nothing but application data went between them.
  assert.equal(s1.handshakeCount, 0);
});

test('snapshots that do not fit are refused before anything is added', () => {
  const h = harness();
  h.client.start();
  h.drain(0);
  const conn = h.servers[0]!.establishedSessions()[0]!;
  // Until the client's first record shows it got the server's Finished, there is no snapshot.
  assert.equal(conn.snapshotSession(0), undefined);
  h.client.sendApplicationData(Buffer.from('hi'));
  h.drain(0);
  const snap = conn.snapshotSession(0)!;
  assert.ok(snap !== undefined);
  const s1 = h.makeServer(1);
  const bad = [
    { ...snap, suiteId: 0x1234 },
    { ...snap, role: 'client' as const },
    { ...snap, keys: snap.keys.subarray(0, 10) },
    { ...snap, writeSeq: -1 },
    { ...snap, writeSeq: 2 ** 48 },
    { ...snap, replayBits: 'zz' },
  ];
  for (const b of bad) {
    assert.throws(
      () =>
        s1.adopt([
          { address: '192.0.2.1', port: 1, snapshot: snap },
          { address: ADDRESS, port: PORT, snapshot: b },
        ]),
      DtlsError,
    );
    assert.equal(s1.sessionCount, 0, 'all or nothing');
  }
  // A restored connection cannot be restored again.
  const { added } = s1.adopt([{ address: ADDRESS, port: PORT, snapshot: snap }]);
  assert.throws(() => (added[0] as DtlsServerConnection).restoreSession(snap), /fresh connection/);
  // The same peer twice: the live session stays, the snapshot is skipped.
  assert.equal(s1.adopt([{ address: ADDRESS, port: PORT, snapshot: snap }]).skipped, 1);
});
