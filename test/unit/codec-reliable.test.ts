/**
 * RFC 8323 framing: byte-exact frames for each Len form, the WebSocket
 * variant, datagram conversion both ways, and the streaming decoder whatever
 * the chunking (property), bounded by Max-Message-Size.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeMessage } from '../../src/codec/message.js';
import {
  applyCsm,
  datagramToFrame,
  decodeFrame,
  encodeAbort,
  encodeCsm,
  encodeFrame,
  FrameDecoder,
  FrameTooLargeError,
  frameToDatagram,
  type PeerCapabilities,
  SignalCode,
} from '../../src/codec/reliable.js';
import { MessageFormatError } from '../../src/errors.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('§3.2 vectors: GET /a with a 1-byte token, CSM, and each Extended Length form', () => {
  // Len=2 (option Uri-Path "a": b1 61), TKL=1, Code 0.01, token 01.
  const get = encodeFrame({
    code: 1,
    token: Buffer.from([1]),
    options: [{ number: 11, value: Buffer.from('a') }],
  });
  assert.equal(hex(get), '210101b161');
  // CSM: Max-Message-Size 1152 (option 2, 0x0480) and Block-Wise-Transfer (option 4, empty).
  assert.equal(hex(encodeCsm(1152, true, false)), '40e122048020');
  assert.equal(hex(encodeCsm(1152, true, true)), '00e122048020');
  // Len=13: one Extended Length byte holding len-13.
  const p12 = encodeFrame({ code: 0x45, payload: Buffer.alloc(12, 0x61) });
  assert.equal(hex(p12.subarray(0, 4)), 'd00045ff');
  assert.equal(p12.length, 2 + 1 + 13);
  const p14 = encodeFrame({ code: 0x45, payload: Buffer.alloc(14, 0x61) });
  assert.equal(hex(p14.subarray(0, 4)), 'd00245ff');
  // Len=14: two bytes holding len-269.
  const p268 = encodeFrame({ code: 0x45, payload: Buffer.alloc(268) });
  assert.equal(hex(p268.subarray(0, 5)), 'e0000045ff');
  const p300 = encodeFrame({ code: 0x45, payload: Buffer.alloc(300) });
  assert.equal(hex(p300.subarray(0, 5)), 'e00020' + '45ff');
  assert.equal(p300.readUInt16BE(1), 301 - 269);
  // Len=15: four bytes holding len-65805.
  const big = encodeFrame({ code: 0x45, payload: Buffer.alloc(65804) });
  assert.equal(hex(big.subarray(0, 7)), 'f00000000045ff');
  const big2 = encodeFrame({ code: 0x45, payload: Buffer.alloc(70000) });
  assert.equal(big2.readUInt32BE(1), 70001 - 65805);
  assert.equal(big2.length, 1 + 4 + 1 + 70001);
  // WebSocket framing: Len 0, no Extended Length whatever the size.
  const ws = encodeFrame({ code: 0x45, payload: Buffer.alloc(300) }, true);
  assert.equal(hex(ws.subarray(0, 3)), '0045ff');
  assert.equal(ws.length, 2 + 301);
});

test('decodeFrame reads back what encodeFrame wrote (both framings)', () => {
  const arb = fc.record({
    code: fc.integer({ min: 1, max: 255 }),
    token: fc.uint8Array({ maxLength: 8 }),
    options: fc.array(
      fc.record({ number: fc.integer({ min: 0, max: 2000 }), value: fc.uint8Array({ maxLength: 300 }) }),
      { maxLength: 5 },
    ),
    payload: fc.uint8Array({ maxLength: 70000 }),
  });
  fc.assert(
    fc.property(arb, fc.boolean(), (m, ws) => {
      const frame = encodeFrame(m, ws);
      const d = decodeFrame(frame, ws);
      assert.equal(d.code, m.code);
      assert.equal(hex(d.token), hex(m.token));
      assert.deepEqual(
        d.options.map((o) => [o.number, hex(o.value)]),
        [...m.options].sort((a, b) => a.number - b.number).map((o) => [o.number, hex(o.value)]),
      );
      assert.equal(hex(d.payload), hex(m.payload));
    }),
    { numRuns: 60 },
  );
});

test('datagram <-> frame: Type and Message ID dropped, an incoming frame becomes NON with Message ID 0', () => {
  const dg = encodeMessage({
    type: 0,
    code: 0x45,
    messageId: 0x1234,
    token: Buffer.from([9, 8]),
    options: [{ number: 12, value: Buffer.from([0]) }],
    payload: Buffer.from('hi'),
  });
  const frame = datagramToFrame(dg, false)!;
  assert.equal(hex(frame), '52450908c100ff6869');
  const back = frameToDatagram(frame, false);
  assert.equal(hex(back), `5245${'0000'}0908c100ff6869`);
  // Empty messages (ACK, RST, ping) do not exist on reliable transports.
  assert.equal(datagramToFrame(Buffer.from([0x60, 0, 1, 2]), false), undefined);
  assert.equal(datagramToFrame(Buffer.from([0x70, 0, 1, 2]), true), undefined);
});

test('FrameDecoder: any chunking of a stream of frames yields the same frames', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ code: fc.integer({ min: 1, max: 255 }), payload: fc.uint8Array({ maxLength: 400 }) }),
        {
          minLength: 1,
          maxLength: 8,
        },
      ),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
      (msgs, cuts) => {
        const frames = msgs.map((m) => encodeFrame(m));
        const stream = Buffer.concat(frames);
        const dec = new FrameDecoder(1000);
        const out: string[] = [];
        let pos = 0;
        let i = 0;
        while (pos < stream.length) {
          const n = cuts[i++ % cuts.length]!;
          dec.push(stream.subarray(pos, pos + n), (f) => out.push(hex(f)));
          pos += n;
        }
        assert.deepEqual(out, frames.map(hex));
        assert.equal(dec.buffered, 0);
      },
    ),
    { numRuns: 200 },
  );
});

test('FrameDecoder: a header announcing more than Max-Message-Size throws before buffering it', () => {
  const dec = new FrameDecoder(1152);
  // Len=15, Extended Length 0x7fffffff: a 2 GiB frame announced in 6 bytes.
  assert.throws(
    () => dec.push(Buffer.from([0xf0, 0x7f, 0xff, 0xff, 0xff, 0x01]), () => {}),
    (e) => e instanceof FrameTooLargeError && e instanceof MessageFormatError && e.size > 2 ** 31,
  );
  // Split header: still detected as soon as the header is complete.
  const dec2 = new FrameDecoder(100);
  dec2.push(Buffer.from([0xe0]), () => {});
  assert.throws(() => dec2.push(Buffer.from([0x01, 0x00, 0x45]), () => {}), FrameTooLargeError);
  // Exactly at the limit is fine.
  const dec3 = new FrameDecoder(2 + 1 + 13);
  let got = 0;
  dec3.push(encodeFrame({ code: 0x45, payload: Buffer.alloc(12) }), () => got++);
  assert.equal(got, 1);
});

test('malformed frames are MessageFormatError, never a crash', () => {
  assert.throws(() => decodeFrame(Buffer.from([0x09, 0x01])), MessageFormatError); // TKL 9
  assert.throws(() => decodeFrame(Buffer.from([0x10, 0x01]), true), MessageFormatError); // WS with Len
  assert.throws(() => decodeFrame(Buffer.from([0x00]), true), MessageFormatError);
  assert.throws(() => decodeFrame(Buffer.from([0x12, 0x01, 0xaa])), MessageFormatError); // truncated token
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.boolean(), (bytes, ws) => {
      try {
        decodeFrame(Buffer.from(bytes), ws);
      } catch (e) {
        assert.ok(e instanceof MessageFormatError, String(e));
      }
    }),
  );
});

test('CSM: values apply, an unknown critical option is reported, Abort carries Bad-CSM-Option', () => {
  const caps: PeerCapabilities = { maxMessageSize: 1152, blockWiseTransfer: false };
  assert.equal(applyCsm(caps, decodeFrame(encodeCsm(4096, true, false))), undefined);
  assert.deepEqual(caps, { maxMessageSize: 4096, blockWiseTransfer: true });
  const odd = decodeFrame(
    encodeFrame({ code: SignalCode.CSM, options: [{ number: 9, value: Buffer.alloc(0) }] }),
  );
  assert.equal(applyCsm(caps, odd), 9);
  const abort = decodeFrame(encodeAbort('bad', false, 9));
  assert.equal(abort.code, SignalCode.Abort);
  assert.deepEqual(
    abort.options.map((o) => [o.number, hex(o.value)]),
    [[2, '09']],
  );
  assert.equal(abort.payload.toString(), 'bad');
});
