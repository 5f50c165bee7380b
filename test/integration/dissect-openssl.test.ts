/**
 * dissect() on captures of OpenSSL DTLS sessions (CCM_8, GCM without EMS,
 * ECDHE_PSK with a key log), checked against tshark where tshark can decrypt
 * and against the known plaintext.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseCapture } from '../../src/capture/reader.js';
import { dissect } from '../../src/dissect/dissect.js';
import { pcap } from '../vectors/captures/build.js';

const dir = (f: string): string =>
  fileURLToPath(new URL(`../vectors/captures/openssl/${f}`, import.meta.url));
const PSK = Buffer.from('secretPSK');
const PLAINTEXT = '41021234abb178ff68656c6c6f0a';
const hasTshark = spawnSync('tshark', ['-v'], { timeout: 10_000 }).status === 0;

function checkCoap(r: ReturnType<typeof dissect>): void {
  assert.equal(r.coap.messages.length, 1);
  const m = r.coap.messages[0];
  assert.ok(m);
  assert.equal(m.summary, 'CON MID=4660 TKN=ab POST /x');
  assert.equal(m.transport, 'dtls');
  assert.equal(m.payload.hex, Buffer.from('hello\n').toString('hex'));
  assert.equal((m.headerLength + m.payload.length) * 2, PLAINTEXT.length);
}

function checkHandshake(r: ReturnType<typeof dissect>, suite: number, ems: boolean): void {
  const s = r.dtls[0];
  assert.ok(s);
  assert.equal(s.cipherSuite?.id, suite);
  assert.equal(s.extendedMasterSecret, ems);
  assert.equal(s.pskIdentity, 'dev-1');
  assert.equal(s.decryption.status, 'decrypted');
  assert.equal(s.handshakeComplete, true);
  const finished = r.frames
    .flatMap((f) => f.dtls?.records ?? [])
    .flatMap((x) => x.handshake ?? [])
    .filter((h) => h.msgType === 20);
  assert.deepEqual(
    finished.map((h) => h.verified),
    [true, true],
  );
  const alerts = r.frames.flatMap((f) => f.dtls?.records ?? []).filter((x) => x.alert);
  assert.deepEqual(
    alerts.map((x) => x.alert?.descriptionName),
    ['close_notify', 'close_notify'],
  );
  assert.deepEqual(
    s.flights.map((f) => f.kind),
    ['handshake', 'handshake', 'handshake', 'handshake', 'handshake', 'handshake', 'alert', 'alert'],
  );
}

async function tsharkFields(file: string, port: number): Promise<string[][]> {
  const { stdout } = await promisify(execFile)(
    'tshark',
    [
      '-r',
      file,
      '-o',
      `dtls.psk:${PSK.toString('hex')}`,
      '-d',
      `udp.port==${port},dtls`,
      '-T',
      'fields',
      '-e',
      'dtls.handshake.type',
      '-e',
      'data.data',
      '-e',
      'dtls.record.epoch',
    ],
    { timeout: 30_000 },
  );
  return stdout
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => l.split('\t'));
}

for (const [file, port, suite, ems] of [
  ['psk_ccm8.pcapng', 15701, 0xc0a8, true],
  ['psk_gcm_no_ems.pcapng', 15702, 0x00a8, false],
] as const) {
  describe(`OpenSSL capture ${file}`, () => {
    const r = dissect(readFileSync(dir(file)), { psk: PSK, ports: [port] });

    it('decrypts with the PSK and follows the handshake', () => {
      checkHandshake(r, suite, ems);
      checkCoap(r);
    });

    it('matches tshark: handshake messages per frame and decrypted application data', {
      skip: hasTshark ? false : 'tshark is not installed',
    }, async () => {
      const rows = await tsharkFields(dir(file), port);
      assert.equal(rows.length, r.frames.length);
      rows.forEach(([types, data, epochs], i) => {
        const f = r.frames[i];
        assert.ok(f?.dtls);
        const ours = f.dtls.records.flatMap((x) => (x.handshake ?? []).map((h) => h.msgType));
        assert.deepEqual(ours, types ? types.split(',').map(Number) : [], `frame ${i + 1} handshake types`);
        assert.deepEqual(
          f.dtls.records.map((x) => x.epoch),
          (epochs ?? '').split(',').map(Number),
        );
        if (data) {
          assert.equal(data, PLAINTEXT);
          assert.equal(f.coap?.length, 1);
        }
      });
    });
  });
}

describe('OpenSSL capture ecdhe_psk_chacha20.pcapng', () => {
  const bytes = readFileSync(dir('ecdhe_psk_chacha20.pcapng'));
  it('needs the key log: a PSK alone is reported as not enough', () => {
    const r = dissect(bytes, { psk: PSK, ports: [15703] });
    assert.equal(r.dtls[0]?.decryption.status, 'no-key');
    assert.match(r.dtls[0]?.decryption.detail ?? '', /ECDHE.*--keylog/);
    assert.equal(r.coap.messages.length, 0);
    const ske = r.frames[3]?.dtls?.records.flatMap((x) => x.handshake ?? []).find((h) => h.msgType === 12);
    assert.equal(ske?.pskIdentityHint, 'srv-hint');
    assert.equal(ske?.curve?.name, 'x25519');
    assert.equal(ske?.publicKey?.length, 64);
  });

  it('decrypts with the key log', () => {
    const r = dissect(bytes, {
      keylog: readFileSync(dir('ecdhe_psk_chacha20.keylog'), 'utf8'),
      ports: [15703],
    });
    checkHandshake(r, 0xccac, true);
    assert.equal(r.dtls[0]?.keySource, 'keylog');
    checkCoap(r);
  });
});

describe('OpenSSL capture psk_ccm8_resumption.pcapng (session resumption)', () => {
  const file = dir('psk_ccm8_resumption.pcapng');
  const r = dissect(readFileSync(file), { psk: PSK, ports: [15704] });

  it('decrypts the resumed sessions with the master secret of the first one', () => {
    assert.equal(r.dtls.length, 6);
    assert.deepEqual(
      r.dtls.map((s) => [s.resumed ?? false, s.decryption.status]),
      [
        [false, 'decrypted'],
        [true, 'decrypted'],
        [true, 'decrypted'],
        [true, 'decrypted'],
        [true, 'decrypted'],
        [true, 'decrypted'],
      ],
    );
    const finished = r.frames
      .flatMap((f) => f.dtls?.records ?? [])
      .flatMap((x) => x.handshake ?? [])
      .filter((h) => h.msgType === 20);
    assert.equal(finished.length, 12);
    assert.ok(finished.every((h) => h.verified === true));
    const nst = r.frames
      .flatMap((f) => f.dtls?.records ?? [])
      .flatMap((x) => x.handshake ?? [])
      .find((h) => h.msgType === 4);
    assert.equal(nst?.ticketLength, 176);
    assert.equal(nst?.ticketLifetimeHint, 7200);
  });

  it('matches tshark: every record decrypted to the same alerts and handshake messages', {
    skip: hasTshark ? false : 'tshark is not installed',
  }, async () => {
    const { stdout } = await promisify(execFile)(
      'tshark',
      [
        '-r',
        file,
        '-o',
        `dtls.psk:${PSK.toString('hex')}`,
        '-d',
        'udp.port==15704,dtls',
        '-T',
        'fields',
        '-e',
        'dtls.handshake.type',
        '-e',
        'dtls.alert_message.desc',
      ],
      { timeout: 30_000 },
    );
    const rows = stdout
      .replace(/\n$/, '')
      .split('\n')
      .map((l) => l.split('\t'));
    assert.equal(rows.length, r.frames.length);
    rows.forEach(([types, alerts], i) => {
      const recs = r.frames[i]?.dtls?.records ?? [];
      assert.deepEqual(
        recs.flatMap((x) => (x.handshake ?? []).map((h) => h.msgType)),
        types ? types.split(',').map(Number) : [],
        `frame ${i + 1}`,
      );
      assert.deepEqual(
        recs.filter((x) => x.alert).map((x) => x.alert?.description),
        alerts ? alerts.split(',').map(Number) : [],
        `frame ${i + 1} alerts`,
      );
    });
  });

  it('without the first full handshake the resumed sessions cannot be decrypted', () => {
    const frames = parseCapture(readFileSync(file)).frames.filter((f) => f.number > 8);
    const cut = pcap(
      frames.map((f) => ({ data: f.data, sec: f.seconds, frac: Math.floor(f.nanos / 1000) })),
      { linkType: 1 },
    );
    const rr = dissect(cut, { psk: PSK, ports: [15704] });
    const s = rr.dtls.find((x) => x.resumed);
    assert.equal(s?.decryption.status, 'missing-handshake');
    assert.match(
      s?.decryption.detail ?? '',
      /abbreviated handshake resuming a session whose keys are unknown/,
    );
  });
});

describe('OpenSSL capture dhe_psk_fragmented.pcapng (handshake fragmentation)', () => {
  const file = dir('dhe_psk_fragmented.pcapng');
  const r = dissect(readFileSync(file), { psk: PSK, ports: [15705] });

  it('reassembles the fragmented ServerKeyExchange and reports the unsupported suite', () => {
    const ske = r.frames
      .flatMap((f) => f.dtls?.records ?? [])
      .flatMap((x) => x.handshake ?? [])
      .filter((h) => h.msgType === 12);
    assert.deepEqual(
      ske.map((h) => [h.fragmentOffset, h.fragmentLength, h.fragmented, h.reassembled ?? false]),
      [
        [0, 125, true, false],
        [125, 203, true, false],
        [328, 201, true, true],
      ],
    );
    assert.equal(ske[2]?.pskIdentityHint, 'srv-hint');
    assert.equal(ske[2]?.publicKey?.length, 512); // 256-byte DH public value
    const s = r.dtls[0];
    assert.equal(s?.cipherSuite?.name, 'TLS_DHE_PSK_WITH_AES_128_GCM_SHA256');
    assert.equal(s?.decryption.status, 'unsupported-suite');
    assert.ok(r.warnings.some((w) => /unsupported cipher suite/.test(w)));
  });

  it('matches tshark: record types, handshake types and fragment fields per frame', {
    skip: hasTshark ? false : 'tshark is not installed',
  }, async () => {
    const fields = [
      'dtls.record.content_type',
      'dtls.handshake.type',
      'dtls.handshake.fragment_offset',
      'dtls.handshake.fragment_length',
      'dtls.handshake.message_seq',
    ];
    const { stdout } = await promisify(execFile)(
      'tshark',
      [
        '-r',
        file,
        '-o',
        `dtls.psk:${PSK.toString('hex')}`,
        '-d',
        'udp.port==15705,dtls',
        '-T',
        'fields',
        ...fields.flatMap((f) => ['-e', f]),
      ],
      { timeout: 30_000 },
    );
    const rows = stdout
      .replace(/\n$/, '')
      .split('\n')
      .map((l) => l.split('\t').map((x) => (x ? x.split(',').map(Number) : [])));
    assert.equal(rows.length, r.frames.length);
    rows.forEach(([types, hsTypes, offsets, lengths, seqs], i) => {
      const recs = r.frames[i]?.dtls?.records ?? [];
      const hs = recs.flatMap((x) => x.handshake ?? []);
      assert.deepEqual(
        recs.map((x) => x.contentType),
        types,
        `frame ${i + 1} records`,
      );
      assert.deepEqual(
        hs.map((h) => h.msgType),
        hsTypes,
        `frame ${i + 1} handshake types`,
      );
      assert.deepEqual(
        hs.map((h) => h.fragmentOffset),
        offsets,
      );
      assert.deepEqual(
        hs.map((h) => h.fragmentLength),
        lengths,
      );
      assert.deepEqual(
        hs.map((h) => h.messageSeq),
        seqs,
      );
    });
  });
});
