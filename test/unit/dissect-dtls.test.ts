/** Passive DTLS decoding: key sources, failure reporting, fragmentation, alerts. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { toHex } from '../../src/capture/bytes.js';
import { decodeIp, decodeLinkLayer, decodeUdp } from '../../src/capture/network.js';
import { parseCapture } from '../../src/capture/reader.js';
import { dissect } from '../../src/dissect/dissect.js';
import { DtlsTracker, parseKeylog } from '../../src/dissect/dtls.js';
import { masterSecret, pskPremasterSecret } from '../../src/dtls/crypto/keys.js';
import { CIPHER_SUITES } from '../../src/dtls/crypto/suites.js';
import { HandshakeTranscript } from '../../src/dtls/handshake/hash.js';

const GOLIOTH = readFileSync(new URL('../vectors/captures/golioth_basics_psk.pcapng', import.meta.url));
const PSK = Buffer.from('69af1685ba9080be907922728c1e97c5');
const CLIENT = '192.168.1.26:35430';
const SERVER = '34.135.90.112:5684';
const PORTS = new Set([5684]);

/** UDP payloads of the capture, by frame number. */
const payloads: Buffer[] = [Buffer.alloc(0)];
for (const f of parseCapture(GOLIOTH).frames) {
  const ip = decodeIp(decodeLinkLayer(f.linkType, f.data).payload);
  payloads.push(Buffer.from(decodeUdp(ip.payload).payload));
}
const fromClient = (n: number): boolean => n % 2 === 1; // odd frames are client → server in this capture
const feed = (t: DtlsTracker, n: number, payload = payloads[n] as Buffer) =>
  fromClient(n)
    ? t.processDatagram(CLIENT, SERVER, payload, PORTS)
    : t.processDatagram(SERVER, CLIENT, payload, PORTS);

describe('DTLS key sources and failures', () => {
  it('without a key: handshake decoded, application data reported as not decrypted', () => {
    const r = dissect(GOLIOTH);
    const s = r.dtls[0];
    assert.equal(s?.decryption.status, 'no-key');
    assert.match(s?.decryption.detail ?? '', /--psk/);
    assert.equal(s?.cipherSuite?.id, 0x00a8);
    assert.equal(s?.pskIdentity, '20230614151602-linux@blush-unexpected-fox');
    assert.equal(r.coap.messages.length, 0);
    assert.ok(r.warnings.some((w) => /--psk/.test(w)));
    const app = r.frames[14]?.dtls?.records[0];
    assert.equal(app?.decrypted, undefined);
    assert.match(app?.note ?? '', /not decrypted/);
    assert.equal(r.frames[14]?.bytes.other, 127);
  });

  it('with a wrong PSK: authentication failure reported', () => {
    const r = dissect(GOLIOTH, { psk: Buffer.from('wrong') });
    assert.equal(r.dtls[0]?.decryption.status, 'wrong-key');
    assert.equal(r.coap.messages.length, 0);
    assert.match(r.frames[12]?.dtls?.records[2]?.note ?? '', /authentication failed/);
  });

  it('with an NSS key log instead of the PSK', () => {
    // Derive the master secret independently (RFC 7627 session hash over CH2..CKE).
    const suite = CIPHER_SUITES.get(0x00a8);
    assert.ok(suite);
    const t = new HandshakeTranscript();
    const msgs: [number, number][] = [
      [11, 25], // ClientHello (frame, offset of the handshake body in the datagram)
      [12, 25], // ServerHello
      [12, 13 + 61 + 13 + 12], // ServerHelloDone (second record)
      [13, 25], // ClientKeyExchange
    ];
    for (const [frame, off] of msgs) {
      const p = payloads[frame] as Buffer;
      const hdr = p.subarray(off - 12, off);
      const len = hdr.readUIntBE(1, 3);
      t.add(hdr[0] as number, hdr.readUInt16BE(4), p.subarray(off, off + len));
    }
    const clientRandom = (payloads[11] as Buffer).subarray(27, 59);
    const serverRandom = (payloads[12] as Buffer).subarray(27, 59);
    const master = masterSecret(
      suite,
      pskPremasterSecret(PSK),
      clientRandom,
      serverRandom,
      t.digest('sha256'),
    );
    const keylog = `# comment\nCLIENT_RANDOM ${toHex(clientRandom)} ${toHex(master)}\n`;
    assert.equal(parseKeylog(keylog).size, 1);
    const r = dissect(GOLIOTH, { keylog });
    assert.equal(r.dtls[0]?.decryption.status, 'decrypted');
    assert.equal(r.dtls[0]?.keySource, 'keylog');
    assert.equal(r.coap.messages.length, 64);
    assert.equal(r.frames[12]?.dtls?.records[2]?.handshake?.[0]?.verified, true);
    const other = dissect(GOLIOTH, { keylog: `CLIENT_RANDOM ${'00'.repeat(32)} ${'11'.repeat(48)}` });
    assert.equal(other.dtls[0]?.decryption.status, 'no-key');
  });

  it('missing handshake', () => {
    const t = new DtlsTracker({ psk: PSK });
    for (let n = 15; n <= 20; n++) feed(t, n);
    const s = t.sessions[0]?.summary;
    assert.equal(s?.decryption.status, 'missing-handshake');
    assert.match(s?.decryption.detail ?? '', /missing handshake/);
    assert.equal(s?.client, CLIENT); // guessed from the server port
  });

  it('unsupported suite and ECDHE_PSK without a key log', () => {
    for (const [suite, status, detail] of [
      [0xc02c, 'unsupported-suite', /unsupported cipher suite TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384/],
      [0xccac, 'no-key', /ECDHE.*--keylog/],
    ] as const) {
      const t = new DtlsTracker({ psk: PSK });
      for (let n = 9; n <= 15; n++) {
        const p = Buffer.from(payloads[n] as Buffer);
        if (n === 12) p.writeUInt16BE(suite, 60);
        feed(t, n, p);
      }
      const s = t.sessions[0]?.summary;
      assert.equal(s?.cipherSuite?.id, suite);
      assert.equal(s?.decryption.status, status);
      assert.match(s?.decryption.detail ?? '', detail);
    }
  });
});

describe('DTLS record and handshake decoding', () => {
  it('reassembles a fragmented ClientHello and flags retransmissions', () => {
    const ch = payloads[9] as Buffer; // one record, one ClientHello of 246 bytes
    const body = ch.subarray(25);
    const frag = (off: number, len: number, seq: number): Buffer => {
      const hs = Buffer.concat([Buffer.from(ch.subarray(13, 25)), body.subarray(off, off + len)]);
      hs.writeUIntBE(off, 6, 3);
      hs.writeUIntBE(len, 9, 3);
      const rec = Buffer.from(ch.subarray(0, 13));
      rec.writeUIntBE(seq, 5, 6);
      rec.writeUInt16BE(hs.length, 11);
      return Buffer.concat([rec, hs]);
    };
    const t = new DtlsTracker({});
    const a = t.processDatagram(CLIENT, SERVER, frag(100, 146, 0), PORTS);
    const h1 = a.records[0]?.handshake?.[0];
    assert.equal(h1?.fragmented, true);
    assert.equal(h1?.fragmentOffset, 100);
    assert.equal(h1?.cipherSuites, undefined);
    // Two fragments in one datagram, overlapping the first.
    const b = t.processDatagram(CLIENT, SERVER, Buffer.concat([frag(0, 60, 1), frag(50, 60, 2)]), PORTS);
    assert.equal(b.records.length, 2);
    const h2 = b.records[1]?.handshake?.[0];
    assert.equal(h2?.reassembled, true);
    assert.equal(h2?.cipherSuites?.length, 49);
    assert.equal(
      t.sessions[0]?.summary.clientRandom,
      'c794d065308001db189ce47a89e13fcac98d36c86a0479017cc1ef963781d34e',
    );
    const again = t.processDatagram(CLIENT, SERVER, ch, PORTS);
    assert.equal(again.records[0]?.handshake?.[0]?.retransmission, true);
  });

  it('decodes alerts, CCS and reports truncated records', () => {
    const t = new DtlsTracker({});
    const alert = Buffer.from([21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40]);
    const ccs = Buffer.from([20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 10, 0, 1, 1]);
    const r = t.processDatagram(
      SERVER,
      CLIENT,
      Buffer.concat([alert, ccs, Buffer.from([22, 0xfe, 0xfd, 0, 0])]),
      PORTS,
    );
    assert.deepEqual(r.records[0]?.alert, {
      level: 2,
      levelName: 'fatal',
      description: 40,
      descriptionName: 'handshake_failure',
    });
    assert.equal(r.records[1]?.changeCipherSpec, true);
    assert.match(r.error ?? '', /truncated DTLS record header/);
    const long = Buffer.from([23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 50, 1, 2, 3]);
    assert.match(
      t.processDatagram(SERVER, CLIENT, long, PORTS).error ?? '',
      /truncated DTLS record: length 50/,
    );
  });

  it('names offered extensions and the HelloVerifyRequest cookie', () => {
    const t = new DtlsTracker({});
    const ch = feed(t, 9).records[0]?.handshake?.[0];
    assert.deepEqual(
      ch?.extensions?.map((e) => e.name),
      [
        'server_name',
        'ec_point_formats',
        'supported_groups',
        'session_ticket',
        'encrypt_then_mac',
        'extended_master_secret',
        'signature_algorithms',
      ],
    );
    assert.equal(ch?.extensions?.[0]?.detail, 'coap.golioth.io');
    assert.equal(ch?.extensions?.[2]?.detail, 'x25519, secp256r1, x448, secp521r1, secp384r1');
    const hvr = feed(t, 10).records[0]?.handshake?.[0];
    assert.equal(hvr?.name, 'HelloVerifyRequest');
    assert.equal(hvr?.cookie, 'bdd8dff41e857cd949d7a435d1203da55283c664');
  });

  it('parses RFC 9146 connection-ID records after a connection_id negotiation', () => {
    const hs = (type: number, seq: number, body: Buffer): Buffer => {
      const h = Buffer.alloc(12);
      h[0] = type;
      h.writeUIntBE(body.length, 1, 3);
      h.writeUInt16BE(seq, 4);
      h.writeUIntBE(body.length, 9, 3);
      const r = Buffer.from([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, seq, 0, 0]);
      r.writeUInt16BE(h.length + body.length, 11);
      return Buffer.concat([r, h, body]);
    };
    const cidExt = (cid: Buffer): Buffer =>
      Buffer.concat([Buffer.from([0, 54, 0, cid.length + 1, cid.length]), cid]);
    const exts = (...e: Buffer[]): Buffer => {
      const all = Buffer.concat(e);
      return Buffer.concat([Buffer.from([all.length >> 8, all.length & 0xff]), all]);
    };
    const random = Buffer.alloc(32, 7);
    const clientHello = Buffer.concat([
      Buffer.from([0xfe, 0xfd]),
      random,
      Buffer.from([0, 0, 0, 2, 0xc0, 0xa8, 1, 0]),
      exts(cidExt(Buffer.from([0x01]))),
    ]);
    const serverHello = Buffer.concat([
      Buffer.from([0xfe, 0xfd]),
      random,
      Buffer.from([0, 0xc0, 0xa8, 0]),
      exts(cidExt(Buffer.from([0xaa, 0xbb]))),
    ]);
    const t = new DtlsTracker({});
    const ch = t.processDatagram(CLIENT, SERVER, hs(1, 0, clientHello), PORTS);
    assert.equal(ch.records[0]?.handshake?.[0]?.extensions?.[0]?.name, 'connection_id');
    assert.equal(ch.records[0]?.handshake?.[0]?.extensions?.[0]?.detail, 'cid 01');
    t.processDatagram(SERVER, CLIENT, hs(2, 1, serverHello), PORTS);
    // client -> server: carries the server's CID aabb; server -> client: the client's CID 01.
    const up = Buffer.from([25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0xaa, 0xbb, 0, 3, 1, 2, 3]);
    const down = Buffer.from([25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0x01, 0, 2, 9, 9]);
    const a = t.processDatagram(CLIENT, SERVER, Buffer.concat([up, up]), PORTS);
    assert.equal(a.error, undefined);
    assert.deepEqual(
      a.records.map((r) => [r.cid, r.length, r.headerLength]),
      [
        ['aabb', 3, 15],
        ['aabb', 3, 15],
      ],
    );
    // Without a key they stay encrypted (with one they are decrypted: test/integration/dissect-cid.test.ts).
    assert.match(a.records[0]?.note ?? '', /not decrypted: no key/);
    const b = t.processDatagram(SERVER, CLIENT, down, PORTS);
    assert.deepEqual([b.records[0]?.cid, b.records[0]?.length], ['01', 2]);
    // Without negotiation a tls12_cid record cannot be delimited.
    const fresh = new DtlsTracker({});
    assert.match(
      fresh.processDatagram(CLIENT, SERVER, up, PORTS).error ?? '',
      /no connection ID was negotiated/,
    );
  });
});
