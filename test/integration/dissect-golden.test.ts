/**
 * Golden test: `dissect` on the public Golioth capture, compared field by
 * field with Wireshark's decoding (tshark run live).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type DissectResult, dissect } from '../../src/dissect/dissect.js';
import { renderText } from '../../src/dissect/render.js';
import {
  arr,
  compareCoapWithTshark,
  hasTshark,
  type J,
  tsharkJson,
  unColon,
} from '../vectors/captures/tshark.js';

const FILE = fileURLToPath(new URL('../vectors/captures/golioth_basics_psk.pcapng', import.meta.url));
const PSK = '69af1685ba9080be907922728c1e97c5';
const PSK_HEX = Buffer.from(PSK, 'ascii').toString('hex');

describe('dissect golden test against tshark (golioth_basics_psk.pcapng)', {
  skip: hasTshark ? false : 'tshark is not installed',
}, () => {
  let packets: J[] = [];
  let result: DissectResult;
  const layers = (n: number): J => packets[n - 1]?._source.layers;

  before(async () => {
    packets = await tsharkJson(FILE, ['-o', `dtls.psk:${PSK_HEX}`]);
    result = dissect(readFileSync(FILE), { psk: Buffer.from(PSK, 'ascii') });
  });

  it('has the same frames', () => {
    assert.equal(result.frames.length, packets.length);
    assert.equal(result.frames.length, 78);
    assert.equal(result.error, undefined);
    for (const f of result.frames) {
      const l = layers(f.number);
      assert.equal(f.originalLength, Number(l.frame['frame.len']), `frame ${f.number} length`);
      assert.equal(
        f.time.slice(0, 19),
        new Date(Number(l.frame['frame.time_epoch']) * 1000).toISOString().slice(0, 19),
      );
      assert.equal(f.ip?.src, l.ip['ip.src']);
      assert.equal(f.ip?.dst, l.ip['ip.dst']);
      assert.equal(f.udp?.srcPort, Number(l.udp['udp.srcport']));
      assert.equal(f.udp?.dstPort, Number(l.udp['udp.dstport']));
    }
  });

  it('decodes every CoAP message like tshark (type, MID, token, code, options, payload)', () => {
    assert.equal(compareCoapWithTshark(result, packets), 64);
    // Wireshark shows /logs on the piggybacked 2.03 too (path of the matched request).
    assert.equal(result.coap.messages[1]?.requestUriPath, '/logs');
  });

  it('decodes every DNS query and answer like tshark', () => {
    const dnsFrames = packets.filter((p) => p._source.layers.dns !== undefined);
    assert.equal(dnsFrames.length, 8);
    assert.deepEqual(
      result.dns,
      dnsFrames.map((p) => Number(p._source.layers.frame['frame.number'])),
    );
    for (const p of dnsFrames) {
      const l = p._source.layers;
      const d = l.dns;
      const n = Number(l.frame['frame.number']);
      const ours = result.frames[n - 1]?.dns;
      assert.ok(ours, `frame ${n} DNS`);
      assert.equal(ours.id, Number(d['dns.id']));
      assert.equal(ours.isResponse, d['dns.flags_tree']['dns.flags.response'] === '1');
      assert.equal(ours.rcode, Number(d['dns.flags_tree']['dns.flags.rcode'] ?? 0));
      assert.equal(ours.recursionDesired, d['dns.flags_tree']['dns.flags.recdesired'] === '1');
      const qs = Object.values(d.Queries ?? {}) as J[];
      assert.deepEqual(
        ours.questions.map((q) => [q.name, q.type, q.class]),
        qs.map((q) => [q['dns.qry.name'], Number(q['dns.qry.type']), Number(q['dns.qry.class'])]),
      );
      const answers = Object.values(d.Answers ?? {}) as J[];
      assert.equal(ours.answers.length, answers.length);
      answers.forEach((a, i) => {
        const o = ours.answers[i];
        assert.ok(o);
        assert.equal(o.name, a['dns.resp.name']);
        assert.equal(o.type, Number(a['dns.resp.type']));
        assert.equal(o.ttl, Number(a['dns.resp.ttl']));
        if (a['dns.a'] !== undefined) assert.equal(o.data, a['dns.a']);
        if (a['dns.aaaa'] !== undefined) assert.equal(o.data, a['dns.aaaa']);
      });
      const auth = Object.values(d['Authoritative nameservers'] ?? {}) as J[];
      assert.equal(ours.authority.length, auth.length);
      auth.forEach((a, i) => {
        const o = ours.authority[i];
        assert.ok(o);
        assert.equal(o.name, a['dns.resp.name']);
        assert.equal(o.type, 6);
        assert.equal(o.ttl, Number(a['dns.resp.ttl']));
        assert.deepEqual(o.data, {
          mname: a['dns.soa.mname'],
          rname: a['dns.soa.rname'],
          serial: Number(a['dns.soa.serial_number']),
          refresh: Number(a['dns.soa.refresh_interval']),
          retry: Number(a['dns.soa.retry_interval']),
          expire: Number(a['dns.soa.expire_limit']),
          minimum: Number(a['dns.soa.minimum_ttl']),
        });
      });
      const add = Object.values(d['Additional records'] ?? {}) as J[];
      assert.deepEqual(
        ours.additional.map((r) => [r.type, r.class]),
        add.map((a) => [Number(a['dns.resp.type']), Number(a['dns.rr.udp_payload_size'])]),
      );
    }
    // The story: A answer 34.135.90.112, AAAA answer empty with an SOA.
    const a = result.frames[6]?.dns;
    assert.equal(a?.answers[0]?.data, '34.135.90.112');
    assert.equal(result.frames[7]?.dns?.answers.length, 0);
    assert.equal(result.frames[7]?.dns?.authority[0]?.typeName, 'SOA');
  });

  it('decodes the DTLS handshake records and messages like tshark (suite 0x00A8)', () => {
    for (let n = 9; n <= 14; n++) {
      const records = arr(layers(n).dtls['dtls.record']);
      const ours = result.frames[n - 1]?.dtls?.records;
      assert.ok(ours, `frame ${n} DTLS`);
      assert.equal(ours.length, records.length, `frame ${n} record count`);
      records.forEach((r: J, i: number) => {
        const o = ours[i];
        assert.ok(o);
        assert.equal(o.contentType, Number(r['dtls.record.content_type']));
        assert.equal(o.version, Number(r['dtls.record.version']));
        assert.equal(o.epoch, Number(r['dtls.record.epoch']));
        assert.equal(o.seq, Number(r['dtls.record.sequence_number']));
        assert.equal(o.length, Number(r['dtls.record.length']));
        if (r['dtls.change_cipher_spec'] !== undefined) assert.equal(o.changeCipherSpec, true);
        const hs = r['dtls.handshake'];
        if (hs === undefined) return;
        const h = o.handshake?.[0];
        assert.ok(h, `frame ${n} record ${i} handshake`);
        assert.equal(h.msgType, Number(hs['dtls.handshake.type']));
        assert.equal(h.length, Number(hs['dtls.handshake.length']));
        assert.equal(h.messageSeq, Number(hs['dtls.handshake.message_seq']));
        assert.equal(h.fragmentOffset, Number(hs['dtls.handshake.fragment_offset']));
        assert.equal(h.fragmentLength, Number(hs['dtls.handshake.fragment_length']));
        if (hs['dtls.handshake.version']) assert.equal(h.version, Number(hs['dtls.handshake.version']));
        if (hs['dtls.handshake.random']) assert.equal(h.random, unColon(hs['dtls.handshake.random']));
        if (hs['dtls.handshake.cookie_length'] !== undefined) {
          assert.equal(h.cookie, unColon(hs['dtls.handshake.cookie']));
        }
        if (hs['dtls.handshake.ciphersuites']) {
          assert.deepEqual(
            h.cipherSuites?.map((s) => s.id),
            arr(hs['dtls.handshake.ciphersuites']['dtls.handshake.ciphersuite']).map(Number),
          );
          assert.ok(
            h.cipherSuites?.some((s) => s.id === 0x00a8 && s.name === 'TLS_PSK_WITH_AES_128_GCM_SHA256'),
          );
        }
        if (typeof hs['dtls.handshake.ciphersuite'] === 'string') {
          assert.equal(h.cipherSuite?.id, Number(hs['dtls.handshake.ciphersuite']));
          assert.equal(h.cipherSuite?.id, 0x00a8);
        }
        const exts = Object.entries(hs)
          .filter(([k]) => k.startsWith('Extension: '))
          .map(([, v]) => Number((v as J)['dtls.handshake.extension.type']));
        if (exts.length > 0)
          assert.deepEqual(
            h.extensions?.map((e) => e.type),
            exts,
          );
        const psk = hs['PSK Client Params'];
        if (psk) {
          assert.equal(
            Buffer.from(h.pskIdentity ?? '', 'utf8').toString('hex'),
            unColon(psk['dtls.handshake.identity']),
          );
          assert.equal(h.pskIdentity, '20230614151602-linux@blush-unexpected-fox');
        }
        if (h.msgType === 20) assert.equal(h.verified, true, `frame ${n} Finished verify_data`);
      });
    }
    const s = result.dtls[0];
    assert.ok(s);
    assert.equal(result.dtls.length, 1);
    assert.equal(s.cipherSuite?.id, 0x00a8);
    assert.equal(s.extendedMasterSecret, true);
    assert.equal(s.decryption.status, 'decrypted');
    assert.equal(s.cookie, 'bdd8dff41e857cd949d7a435d1203da55283c664');
    assert.deepEqual(
      s.flights.map((f) => [f.number, f.fromClient, f.frames]),
      [
        [1, true, [9]],
        [2, false, [10]],
        [3, true, [11]],
        [4, false, [12]],
        [5, true, [13]],
        [6, false, [14]],
      ],
    );
    assert.equal(s.applicationDataRecords, 64);
  });

  it('tells the story in one line per CoAP message', () => {
    const text = renderText(result, { color: false });
    assert.match(text, /#15 0\.392758 CON MID=43156 TKN=7d5b825d POST \/logs \(application\/json\)/);
    assert.match(text, /#16 0\.443945 ACK MID=43156 TKN=7d5b825d 2\.03 Valid \/logs/);
    assert.match(text, /CON MID=43185 TKN=7d5b827a DELETE /);
    assert.match(text, /ACK MID=43185 TKN=7d5b827a 4\.04 Not Found/);
    assert.match(text, /chosen cipher suite: 0x00a8 TLS_PSK_WITH_AES_128_GCM_SHA256/);
    assert.match(text, /PSK identity: "20230614151602-linux@blush-unexpected-fox"/);
    assert.match(text, /answer: coap\.golioth\.io A ttl 300 34\.135\.90\.112/);
    assert.doesNotMatch(text, /\x1b\[/);
    // The encapsulation chain of the first message, as in the article.
    assert.match(text, /The first CoAP message \(#15\), layer by layer:/);
    assert.match(
      text,
      /DTLS protection +24 B {2}explicit nonce \+ authentication tag \(TLS_PSK_WITH_AES_128_GCM_SHA256\)/,
    );
    assert.match(text, /= on the wire +184 B {2}of which 87 B \(47%\) are application payload/);
    // Layers: 184 = SLL 16 + IPv4 20 + UDP 8 + DTLS 13 + nonce/tag 24 + CoAP 16 + payload 87
    assert.match(
      text,
      /link 16 \+ IPv4 20 \+ UDP 8 \+ DTLS headers 13 \+ DTLS nonce\+tag 24 \+ CoAP header 16 \+ payload 87 = 184 B/,
    );
  });
});
