/**
 * A capture of a DTLS session with Connection IDs (RFC 9146) in both
 * directions, whose client moves to a new port mid-session: `dissect` with
 * the key log decrypts the tls12_cid records (inner content type, CoAP inside)
 * and follows the session to the new address; tshark with the same key log
 * decrypts them too and flags no frame as malformed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { encodeMessage } from '../../src/codec/message.js';
import { dissect } from '../../src/dissect/dissect.js';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { keyLogLine } from '../../src/dtls/keylog.js';
import { DtlsServer } from '../../src/dtls/server.js';
import { type PcapPacket, pcapBytes } from '../helpers/pcap.js';
import { hasTshark } from '../vectors/captures/tshark.js';

const SERVER = { address: '10.9.0.1', port: 5684 };

/** A handshake and 4 CoAP exchanges over CID records; the client's port changes after the 2nd. */
function capture(): { pcap: Buffer; keylog: string } {
  const packets: PcapPacket[] = [];
  const keylog: string[] = [];
  const client = { address: '10.9.0.2', port: 40000 };
  let t = 1_700_000_000_000;
  const queue: (() => void)[] = [];
  let c!: DtlsClientConnection;
  const server = new DtlsServer(
    { pskLookup: () => Buffer.from('secret'), keyLog: (cr, ms) => keylog.push(keyLogLine(cr, ms)) },
    {
      send: (d, address, port) => {
        packets.push({ src: SERVER, dst: { address, port }, data: d, timeMs: t++ });
        queue.push(() => c.handleDatagram(d));
      },
      established: () => {},
      data: (d, conn) => {
        const req = d;
        // A 2.05 piggybacked ACK with the same message ID and token.
        conn.sendApplicationData(
          encodeMessage({
            type: 2,
            code: 69,
            messageId: req.readUInt16BE(2),
            token: req.subarray(4, 4 + (req[0]! & 0x0f)),
            payload: Buffer.from('ok'),
          }),
        );
      },
      closed: () => {},
    },
  );
  c = new DtlsClientConnection(
    {
      mtu: 1280,
      ipOverhead: 28,
      retransmitInitialMs: 1000,
      retransmitMaxMs: 60_000,
      handshakeTimeoutMs: 30_000,
      identity: Buffer.from('dev'),
      psk: Buffer.from('secret'),
      cipherSuites: [0xc0a8],
      cid: Buffer.from('c1c2c3', 'hex'),
    },
    {
      sendDatagram: (d) => {
        const from = { ...client };
        packets.push({ src: from, dst: SERVER, data: d, timeMs: t++ });
        queue.push(() => server.handleDatagram(d, from.address, from.port));
      },
      established: () => {},
      data: () => {},
      closed: () => {},
    },
  );
  const drain = () => {
    for (let i = 0; i < 1000 && queue.length > 0; i++) queue.shift()!();
  };
  c.start();
  drain();
  for (let i = 0; i < 4; i++) {
    if (i === 2) client.port = 40001; // the NAT rebinds
    c.sendApplicationData(
      encodeMessage({ type: 0, code: 1, messageId: 100 + i, token: Buffer.from([i]), options: [] }),
    );
    drain();
  }
  assert.equal(server.stats.moved, 1);
  c.destroy();
  server.close();
  return { pcap: pcapBytes(packets), keylog: `${keylog.join('\n')}\n` };
}

describe('captures with DTLS Connection IDs', () => {
  const { pcap, keylog } = capture();
  const tmp = mkdtempSync(join(tmpdir(), 'coapkit-cid-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('dissect decrypts tls12_cid records with the key log and follows the client to its new port', () => {
    const r = dissect(pcap, { keylog });
    assert.equal(r.dtls.length, 1, 'one session, although the client moved');
    const s = r.dtls[0]!;
    assert.equal(s.decryption.status, 'decrypted');
    assert.equal(s.client, '10.9.0.2:40001');
    const cidRecords = r.frames.flatMap((f) => f.dtls?.records ?? []).filter((x) => x.contentType === 25);
    // The client's Finished + 4 requests, the server's Finished + 4 responses + its close_notify.
    assert.equal(cidRecords.length, 11);
    assert.ok(cidRecords.every((x) => x.decrypted === true));
    assert.deepEqual([...new Set(cidRecords.map((x) => x.innerContentTypeName))].sort(), [
      'Alert',
      'ApplicationData',
      'Handshake',
    ]);
    assert.equal(r.coap.messages.length, 8);
    assert.equal(r.coap.exchanges.length, 4);
  });

  it('tshark decrypts them with the key log; no frame is malformed', {
    skip: !hasTshark && 'tshark not installed',
  }, async () => {
    const f = join(tmp, 'cid.pcap');
    const k = join(tmp, 'keys.log');
    writeFileSync(f, pcap);
    writeFileSync(k, keylog);
    const { stdout } = await promisify(execFile)(
      'tshark',
      [
        '-r',
        f,
        '-o',
        `tls.keylog_file:${k}`,
        '-d',
        'udp.port==5684,dtls',
        '-T',
        'fields',
        '-e',
        'frame.number',
        '-e',
        'dtls.record.content_type',
        '-e',
        'coap.code',
        '-e',
        '_ws.malformed',
      ],
      { timeout: 60_000 },
    );
    const rows = stdout
      .trim()
      .split('\n')
      .map((l) => l.split('\t'));
    assert.ok(
      rows.every((r) => (r[3] ?? '') === ''),
      `malformed frames: ${stdout}`,
    );
    const codes = rows.map((r) => r[2]).filter((c) => c !== undefined && c !== '');
    assert.deepEqual(codes, ['1', '69', '1', '69', '1', '69', '1', '69'], stdout);
  });
});
