/**
 * dissect recognises DTLS and CoAP by content on any UDP port (as tshark's
 * heuristics do), prefers the port's own protocol where content is ambiguous,
 * and `ports` (--port) still forces a port.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseCapture } from '../../src/capture/reader.js';
import { encodeMessage } from '../../src/codec/message.js';
import { coapByContent, dtlsByContent } from '../../src/dissect/detect.js';
import { dissect } from '../../src/dissect/dissect.js';
import { pcap, udpFrame } from '../vectors/captures/build.js';
import { hasTshark } from '../vectors/captures/tshark.js';

const dir = (f: string): string => fileURLToPath(new URL(`../vectors/captures/${f}`, import.meta.url));
const PSK = Buffer.from('secretPSK');

/** The capture with UDP port `from` rewritten to `to` (Ethernet + 20-byte IPv4 header). */
function movePort(file: string, from: number, to: number, first = 1): Buffer {
  const frames = parseCapture(readFileSync(file)).frames.filter((f) => f.number >= first);
  return pcap(
    frames.map((f) => {
      const data = Buffer.from(f.data);
      for (const o of [34, 36]) if (data.readUInt16BE(o) === from) data.writeUInt16BE(to, o);
      return { data, sec: f.seconds, frac: Math.floor(f.nanos / 1000) };
    }),
    { linkType: 1 },
  );
}

/** Everything but the port numbers and how frames were recognised. */
const shape = (r: ReturnType<typeof dissect>): string =>
  JSON.stringify({ ...r, frames: r.frames.map((f) => ({ ...f, udp: undefined, detectedBy: undefined })) })
    .replace(/127\.0\.0\.1:\d+/g, 'ep')
    .replace(/"(srcPort|dstPort)":\d+/g, '');

describe('DTLS recognised by content on unusual ports', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'coapkit-detect-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const [file, port, to] of [
    ['openssl/psk_ccm8.pcapng', 15701, 40443],
    ['openssl/psk_gcm_no_ems.pcapng', 15702, 23456],
    ['openssl/psk_ccm8_resumption.pcapng', 15704, 61000],
    ['openssl/dhe_psk_fragmented.pcapng', 15705, 20000],
  ] as const) {
    it(`${file} moved to port ${to}: same decoding as with --port`, async () => {
      const moved = movePort(dir(file), port, to);
      const byContent = dissect(moved, { psk: PSK });
      const byPort = dissect(moved, { psk: PSK, ports: [to] });
      assert.ok(byContent.dtls.length > 0);
      assert.ok(byContent.frames.every((f) => f.detectedBy === 'content' && f.protocol !== 'udp'));
      assert.ok(byPort.frames.every((f) => f.detectedBy === 'port'));
      assert.equal(shape(byContent), shape(byPort));
      const original = dissect(readFileSync(dir(file)), { psk: PSK, ports: [port] });
      assert.deepEqual(
        byContent.coap.messages.map((m) => m.summary),
        original.coap.messages.map((m) => m.summary),
      );
      assert.deepEqual(
        byContent.dtls.map((d) => [d.decryption.status, d.flights.length, d.applicationDataRecords]),
        original.dtls.map((d) => [d.decryption.status, d.flights.length, d.applicationDataRecords]),
      );
      assert.ok(byContent.dtls.every((s) => s.server.endsWith(`:${to}`)));
      if (hasTshark) {
        // tshark's dtls_udp heuristic sees the same frames as DTLS, with no decode-as.
        const f = join(tmp, 'moved.pcap');
        writeFileSync(f, moved);
        const { stdout } = await promisify(execFile)(
          'tshark',
          ['-r', f, '-T', 'fields', '-e', 'frame.number', '-e', 'dtls.record.content_type'],
          { timeout: 30_000 },
        );
        const tsharkDtls = stdout
          .trim()
          .split('\n')
          .map((l) => l.split('\t'))
          .filter(([, ct]) => ct !== undefined && ct !== '')
          .map(([n, ct]) => [Number(n), ct?.split(',').map(Number)]);
        assert.deepEqual(
          tsharkDtls,
          byContent.frames
            .filter((x) => x.dtls)
            .map((x) => [x.number, x.dtls?.records.map((rec) => rec.contentType)]),
        );
      }
    });
  }

  it('a capture that starts mid-session: the server is the lower, non-ephemeral port', () => {
    const cut = movePort(dir('openssl/psk_ccm8.pcapng'), 15701, 8443, 7);
    const r = dissect(cut, { psk: PSK });
    assert.equal(r.dtls.length, 1);
    assert.match(r.dtls[0]?.server ?? '', /:8443$/);
    assert.ok(r.frames.every((f) => f.protocol === 'dtls'));
  });

  it('keeps recognising a DTLS flow once known (a record cut short is reported, not skipped)', () => {
    const frames = parseCapture(readFileSync(dir('openssl/psk_ccm8.pcapng'))).frames;
    const last = frames[frames.length - 1];
    assert.ok(last);
    const broken = Buffer.from(last.data.subarray(0, last.data.length - 3));
    broken.writeUInt16BE(broken.readUInt16BE(38) - 3, 38); // UDP length
    broken.writeUInt16BE(broken.readUInt16BE(16) - 3, 16); // IPv4 total length
    const file = pcap([...frames.slice(0, -1).map((f) => ({ data: f.data })), { data: broken }], {
      linkType: 1,
    });
    const r = dissect(file, { psk: PSK });
    const f = r.frames[r.frames.length - 1];
    assert.equal(f?.protocol, 'dtls');
    assert.equal(f?.detectedBy, 'flow');
    assert.match(f?.errors[0] ?? '', /truncated DTLS record/);
  });

  it('a snap length that cut the datagram still lets the records be recognised', () => {
    const ch = parseCapture(readFileSync(dir('openssl/psk_ccm8.pcapng'))).frames[0];
    assert.ok(ch);
    const udpPayload = ch.data.subarray(42);
    assert.equal(dtlsByContent(udpPayload), true);
    assert.equal(dtlsByContent(udpPayload.subarray(0, 60)), false);
    assert.equal(dtlsByContent(udpPayload.subarray(0, 60), true), true);
  });
});

describe('CoAP recognised by content, other protocols left alone', () => {
  const get = encodeMessage({
    type: 0,
    code: 1,
    messageId: 7,
    token: Buffer.from([1]),
    options: [{ number: 11, value: Buffer.from('a') }],
  });

  it('plain CoAP on port 6000 is decoded; a malformed message on the same flow is reported', () => {
    const r = dissect(
      pcap(
        [
          { data: udpFrame('10.0.0.1', 40000, '10.0.0.2', 6000, get) },
          { data: udpFrame('10.0.0.2', 6000, '10.0.0.1', 40000, Buffer.from([0x41, 0x45, 0, 7, 1, 0xff])) },
        ],
        { linkType: 1 },
      ),
    );
    assert.equal(r.frames[0]?.detectedBy, 'content');
    assert.equal(r.coap.messages[0]?.summary, 'CON MID=7 TKN=01 GET /a');
    assert.equal(r.frames[1]?.detectedBy, 'flow');
    assert.match(r.frames[1]?.errors[0] ?? '', /not a valid CoAP message: .*payload marker/);
  });

  it('on ports of other protocols (QUIC 443, LLMNR 5355, SIP 5060...) only --port makes it CoAP', () => {
    for (const port of [443, 5355, 5060, 123]) {
      const file = pcap([{ data: udpFrame('10.0.0.1', 40000, '10.0.0.2', port, get) }], { linkType: 1 });
      assert.equal(dissect(file).coap.messages.length, 0, `port ${port}`);
      assert.equal(dissect(file).frames[0]?.protocol, 'udp');
      assert.equal(dissect(file, { ports: [port] }).coap.messages.length, 1);
      assert.equal(dissect(file, { ports: [port] }).frames[0]?.detectedBy, 'port');
    }
  });

  it('rejects what only resembles CoAP or DTLS', () => {
    const no = (b: number[]) => assert.equal(coapByContent(Uint8Array.from(b)), false, `${b}`);
    no([0x81, 0x01, 0, 1, 0]); // version 2
    no([0x49, 0x01, 0, 1]); // token length 9
    no([0x40, 0x21, 0, 1]); // class 1 (reserved)
    no([0x40, 0x08, 0, 1]); // method 0.08 (unassigned)
    no([0x40, 0x00, 0, 1, 0]); // Empty with a byte after the MID
    no([0x50, 0x00, 0, 1]); // Empty NON
    no([0x60, 0x01, 0, 1]); // request in an ACK (decoded on a known flow, not recognised)
    no([0x70, 0x45, 0, 1]); // response in a RST
    no([0x40, 0x01, 0, 1, 0xff]); // payload marker without payload
    no([0x40, 0x01, 0, 1, 0xc3, 1, 2, 3]); // Content-Format of 3 bytes
    assert.equal(coapByContent(get), true);
    assert.equal(coapByContent(Uint8Array.from([0x60, 0x00, 0x12, 0x34])), true); // empty ACK
    // A DTLS header whose length does not cover the datagram, an unknown version.
    const rec = Buffer.from('16fefd000000000000000000030102031703', 'hex');
    assert.equal(dtlsByContent(rec.subarray(0, 16)), true);
    assert.equal(dtlsByContent(rec), false);
    assert.equal(dtlsByContent(Buffer.from('16fefc00000000000000000003010203', 'hex')), false);
    assert.equal(dtlsByContent(Buffer.from('19fefd00000000000000000003010203', 'hex')), false); // tls12_cid
  });

  it('random datagrams are rarely taken for CoAP and never for DTLS (fixed seed)', () => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 16;
    };
    for (const len of [4, 8, 16, 40, 100, 500]) {
      let coap = 0;
      let dtls = 0;
      for (let i = 0; i < 5000; i++) {
        const b = new Uint8Array(len);
        for (let j = 0; j < len; j++) b[j] = rnd() & 255;
        if (coapByContent(b)) coap++;
        if (dtlsByContent(b)) dtls++;
      }
      assert.ok(coap < 50, `${coap} of 5000 random ${len}-byte datagrams taken for CoAP`);
      assert.equal(dtls, 0);
    }
  });
});
