/**
 * Byte-exact vectors for the CoAP message codec.
 *
 * Part 1: every message of RFC 7252 Appendix A (Figures 16-23), written out
 * by hand from the figures (header, token, options, payload marker).
 * Part 2: hand-built option encodings (§3.1) around every boundary of the
 * delta/length nibbles, plus the format errors of §3 and §4.1.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMessage, type EncodableMessage, encodeEmpty, encodeMessage } from '../../src/codec/message.js';
import { encodeUint } from '../../src/codec/options.js';
import { MessageType } from '../../src/constants/codes.js';
import { InvalidArgumentError, MessageFormatError } from '../../src/errors.js';

/** Builds bytes from hex strings (spaces allowed) and quoted ASCII strings: b('40 01', '"temperature"'). */
function b(...parts: string[]): Buffer {
  return Buffer.concat(
    parts.map((p) =>
      p.startsWith('"') ? Buffer.from(p.slice(1, -1), 'latin1') : Buffer.from(p.replace(/\s+/g, ''), 'hex'),
    ),
  );
}

const TEMPERATURE = Buffer.from('temperature');
const PAYLOAD = Buffer.from('22.3 C');

interface Vector {
  name: string;
  msg: EncodableMessage;
  bytes: Buffer;
}

function checkVector(v: Vector): void {
  assert.deepEqual(encodeMessage(v.msg), v.bytes, `${v.name}: encode`);
  const d = decodeMessage(v.bytes);
  assert.equal(d.type, v.msg.type, `${v.name}: type`);
  assert.equal(d.code, v.msg.code, `${v.name}: code`);
  assert.equal(d.messageId, v.msg.messageId, `${v.name}: MID`);
  assert.deepEqual(d.token, Buffer.from(v.msg.token ?? []), `${v.name}: token`);
  assert.deepEqual(
    d.options.map((o) => [o.number, Buffer.from(o.value)]),
    (v.msg.options ?? []).map((o) => [o.number, Buffer.from(o.value)]),
    `${v.name}: options`,
  );
  assert.deepEqual(d.payload, Buffer.from(v.msg.payload ?? []), `${v.name}: payload`);
}

function getTemperature(mid: number, token: number[] | undefined, type: MessageType = MessageType.CON) {
  return {
    type,
    code: 0x01,
    messageId: mid,
    ...(token ? { token: Buffer.from(token) } : {}),
    options: [{ number: 11, value: TEMPERATURE }],
  };
}

function content(mid: number, token: number[] | undefined, type: MessageType, payload = PAYLOAD) {
  return {
    type,
    code: 0x45,
    messageId: mid,
    ...(token ? { token: Buffer.from(token) } : {}),
    payload,
  };
}

describe('RFC 7252 Appendix A exchanges', () => {
  it('Figure 16: CON GET, piggybacked 2.05 in ACK, empty token (16 and 11 bytes)', () => {
    const req = b('40 01 7d 34', 'bb', '"temperature"');
    const res = b('60 45 7d 34', 'ff', '"22.3 C"');
    assert.equal(req.length, 16);
    assert.equal(res.length, 11);
    checkVector({ name: 'fig16 request', msg: getTemperature(0x7d34, undefined), bytes: req });
    checkVector({ name: 'fig16 response', msg: content(0x7d34, undefined, MessageType.ACK), bytes: res });
  });

  it('Figure 17: same with Token 0x20 (17 and 12 bytes)', () => {
    const req = b('41 01 7d 35', '20', 'bb', '"temperature"');
    const res = b('61 45 7d 35', '20', 'ff', '"22.3 C"');
    assert.equal(req.length, 17);
    assert.equal(res.length, 12);
    checkVector({ name: 'fig17 request', msg: getTemperature(0x7d35, [0x20]), bytes: req });
    checkVector({ name: 'fig17 response', msg: content(0x7d35, [0x20], MessageType.ACK), bytes: res });
  });

  it('Figure 18: lost request; the retransmission is byte-identical (same MID 0x7d36, Token 0x31)', () => {
    const req = b('41 01 7d 36', '31', 'bb', '"temperature"');
    const first = encodeMessage(getTemperature(0x7d36, [0x31]));
    const retransmission = encodeMessage(getTemperature(0x7d36, [0x31]));
    assert.deepEqual(first, req);
    assert.deepEqual(retransmission, req);
    checkVector({
      name: 'fig18 response',
      msg: content(0x7d36, [0x31], MessageType.ACK),
      bytes: b('61 45 7d 36', '31', 'ff', '"22.3 C"'),
    });
  });

  it('Figure 19: lost ACK; request and piggybacked response both repeat identically (MID 0x7d37, Token 0x42)', () => {
    const req = b('41 01 7d 37', '42', 'bb', '"temperature"');
    const res = b('61 45 7d 37', '42', 'ff', '"22.3 C"');
    for (let i = 0; i < 2; i++) {
      checkVector({ name: `fig19 request #${i}`, msg: getTemperature(0x7d37, [0x42]), bytes: req });
      checkVector({
        name: `fig19 response #${i}`,
        msg: content(0x7d37, [0x42], MessageType.ACK),
        bytes: res,
      });
    }
  });

  it('Figure 20: separate response (empty ACK, CON 2.05 MID 0xad7b, empty ACK)', () => {
    checkVector({
      name: 'fig20 request',
      msg: getTemperature(0x7d38, [0x53]),
      bytes: b('41 01 7d 38', '53', 'bb', '"temperature"'),
    });
    const emptyAck = b('60 00 7d 38');
    checkVector({
      name: 'fig20 empty ACK',
      msg: { type: MessageType.ACK, code: 0, messageId: 0x7d38 },
      bytes: emptyAck,
    });
    assert.deepEqual(encodeEmpty(MessageType.ACK, 0x7d38), emptyAck);
    checkVector({
      name: 'fig20 CON response',
      msg: content(0xad7b, [0x53], MessageType.CON),
      bytes: b('41 45 ad 7b', '53', 'ff', '"22.3 C"'),
    });
    const clientAck = b('60 00 ad 7b');
    checkVector({
      name: 'fig20 client ACK',
      msg: { type: MessageType.ACK, code: 0, messageId: 0xad7b },
      bytes: clientAck,
    });
    assert.deepEqual(encodeEmpty(MessageType.ACK, 0xad7b), clientAck);
  });

  it('Figure 21: unexpected separate response rejected with RST (MID 0xad7c)', () => {
    checkVector({
      name: 'fig21 request',
      msg: getTemperature(0x7d39, [0x64]),
      bytes: b('41 01 7d 39', '64', 'bb', '"temperature"'),
    });
    assert.deepEqual(encodeEmpty(MessageType.ACK, 0x7d39), b('60 00 7d 39'));
    checkVector({
      name: 'fig21 CON response',
      msg: content(0xad7c, [0x64], MessageType.CON),
      bytes: b('41 45 ad 7c', '64', 'ff', '"22.3 C"'),
    });
    const rst = b('70 00 ad 7c');
    checkVector({
      name: 'fig21 RST',
      msg: { type: MessageType.RST, code: 0, messageId: 0xad7c },
      bytes: rst,
    });
    assert.deepEqual(encodeEmpty(MessageType.RST, 0xad7c), rst);
  });

  it('Figure 22: NON request, NON response (MIDs 0x7d40 / 0xad7d, Token 0x75)', () => {
    checkVector({
      name: 'fig22 request',
      msg: getTemperature(0x7d40, [0x75], MessageType.NON),
      bytes: b('51 01 7d 40', '75', 'bb', '"temperature"'),
    });
    checkVector({
      name: 'fig22 response',
      msg: content(0xad7d, [0x75], MessageType.NON),
      bytes: b('51 45 ad 7d', '75', 'ff', '"22.3 C"'),
    });
  });

  it('Figure 23: multicast NON request; two 2.05 and one 4.04 NON responses sharing Token 0x86', () => {
    checkVector({
      name: 'fig23 request',
      msg: getTemperature(0x7d41, [0x86], MessageType.NON),
      bytes: b('51 01 7d 41', '86', 'bb', '"temperature"'),
    });
    checkVector({
      name: 'fig23 A',
      msg: content(0x60b1, [0x86], MessageType.NON),
      bytes: b('51 45 60 b1', '86', 'ff', '"22.3 C"'),
    });
    checkVector({
      name: 'fig23 B',
      msg: content(0x01a0, [0x86], MessageType.NON, Buffer.from('20.9 C')),
      bytes: b('51 45 01 a0', '86', 'ff', '"20.9 C"'),
    });
    checkVector({
      name: 'fig23 C 4.04',
      msg: { type: MessageType.NON, code: 0x84, messageId: 0x952a, token: Buffer.from([0x86]) },
      bytes: b('51 84 95 2a', '86'),
    });
  });

  it('token handling: 0 to 8 bytes go into TKL and right after the header', () => {
    for (let n = 0; n <= 8; n++) {
      const token = Buffer.from(Array.from({ length: n }, (_, i) => 0xa0 + i));
      const bytes = Buffer.concat([Buffer.from([0x40 | n, 0x01, 0x12, 0x34]), token]);
      checkVector({ name: `token ${n}`, msg: { type: 0, code: 1, messageId: 0x1234, token }, bytes });
    }
    assert.throws(
      () => encodeMessage({ type: 0, code: 1, messageId: 1, token: Buffer.alloc(9) }),
      InvalidArgumentError,
    );
  });
});

describe('option encoding (RFC 7252 §3.1)', () => {
  const GET = { type: MessageType.CON, code: 0x01, messageId: 0x0001 } as const;
  const hdr = '40 01 00 01';

  it('Uri-Host, Uri-Port, repeated Uri-Path and Uri-Query in wire order', () => {
    checkVector({
      name: 'uri options',
      msg: {
        ...GET,
        options: [
          { number: 3, value: Buffer.from('example.net') },
          { number: 7, value: encodeUint(61616) },
          { number: 11, value: Buffer.from('a') },
          { number: 11, value: Buffer.from('b') },
          { number: 15, value: Buffer.from('x=1') },
        ],
      },
      bytes: b(hdr, '3b', '"example.net"', '42 f0 b0', '41', '"a"', '01', '"b"', '43', '"x=1"'),
    });
  });

  it('ETag, Content-Format 0 (empty uint), Max-Age 60 on a 2.05 response', () => {
    checkVector({
      name: 'etag/cf/max-age',
      msg: {
        type: MessageType.ACK,
        code: 0x45,
        messageId: 0xbeef,
        token: Buffer.from([1, 2]),
        options: [
          { number: 4, value: Buffer.from([0x8f, 0x7e]) },
          { number: 12, value: encodeUint(0) },
          { number: 14, value: encodeUint(60) },
        ],
        payload: Buffer.from('hi'),
      },
      bytes: b('62 45 be ef', '01 02', '42 8f 7e', '80', '21 3c', 'ff', '"hi"'),
    });
  });

  it('Max-Age alone needs an extended delta (14 >= 13): 0xd0 0x01', () => {
    checkVector({
      name: 'max-age 0',
      msg: { ...GET, options: [{ number: 14, value: encodeUint(0) }] },
      bytes: b(hdr, 'd0 01'),
    });
    checkVector({
      name: 'max-age 86400',
      msg: { ...GET, options: [{ number: 14, value: encodeUint(86400) }] },
      bytes: b(hdr, 'd3 01', '01 51 80'),
    });
  });

  it('Uri-Path then Block2 (delta 12, last direct nibble) then Size2 (delta 5)', () => {
    checkVector({
      name: 'block2',
      msg: {
        ...GET,
        options: [
          { number: 11, value: Buffer.from('fw') },
          { number: 23, value: Buffer.from([0x12]) },
          { number: 28, value: encodeUint(1024) },
        ],
      },
      bytes: b(hdr, 'b2', '"fw"', 'c1 12', '52 04 00'),
    });
  });

  const deltaCases: Array<[number, string]> = [
    [0, '00'],
    [12, 'c0'],
    [13, 'd0 00'],
    [14, 'd0 01'],
    [268, 'd0 ff'],
    [269, 'e0 00 00'],
    [270, 'e0 00 01'],
    [65535, 'e0 fe f2'],
  ];
  for (const [n, enc] of deltaCases) {
    it(`option number ${n} as first option: ${enc}`, () => {
      checkVector({
        name: `delta ${n}`,
        msg: { ...GET, options: [{ number: n, value: Buffer.alloc(0) }] },
        bytes: b(hdr, enc),
      });
    });
  }

  it('delta computed from the previous option: 65000 then 65535 (delta 535 = 269 + 0x010a)', () => {
    checkVector({
      name: '65000/65535',
      msg: {
        ...GET,
        options: [
          { number: 65000, value: Buffer.alloc(0) },
          { number: 65535, value: Buffer.from([7]) },
        ],
      },
      bytes: b(hdr, 'e0 fc db', 'e1 01 0a', '07'),
    });
  });

  const lengthCases: Array<[number, string]> = [
    [0, '00'],
    [12, '0c'],
    [13, '0d 00'],
    [14, '0d 01'],
    [268, '0d ff'],
    [269, '0e 00 00'],
    [65535 + 269, '0e ff ff'],
  ];
  for (const [len, enc] of lengthCases) {
    it(`option value of ${len} bytes: length field ${enc}`, () => {
      const value = Buffer.alloc(len, 0x61);
      const bytes = Buffer.concat([b(hdr, enc), value]);
      checkVector({ name: `length ${len}`, msg: { ...GET, options: [{ number: 0, value }] }, bytes });
    });
  }

  it('value longer than 65535 + 269 bytes cannot be encoded', () => {
    assert.throws(
      () => encodeMessage({ ...GET, options: [{ number: 0, value: Buffer.alloc(65535 + 270) }] }),
      InvalidArgumentError,
    );
  });

  it('extended delta and extended length together: delta bytes come before length bytes', () => {
    // Option 300 (delta 300 = 269 + 31) with a 300-byte value (269 + 31), then
    // option 313 (delta 13: nibble 13 + 0x00) with a 14-byte value (nibble 13 + 0x01).
    const v300 = Buffer.alloc(300, 0x01);
    const v14 = Buffer.alloc(14, 0x02);
    const bytes = Buffer.concat([b(hdr, 'ee 00 1f 00 1f'), v300, b('dd 00 01'), v14]);
    checkVector({
      name: 'both extended',
      msg: {
        ...GET,
        options: [
          { number: 300, value: v300 },
          { number: 313, value: v14 },
        ],
      },
      bytes,
    });
  });

  it('unsorted input is sorted; repeated options keep their relative order', () => {
    const enc = encodeMessage({
      ...GET,
      options: [
        { number: 11, value: Buffer.from('x') },
        { number: 3, value: Buffer.from('h') },
        { number: 11, value: Buffer.from('y') },
        { number: 1, value: Buffer.from([1]) },
        { number: 11, value: Buffer.from('z') },
        { number: 1, value: Buffer.from([2]) },
      ],
    });
    assert.deepEqual(enc, b(hdr, '11 01', '01 02', '21', '"h"', '81', '"x"', '01', '"y"', '01', '"z"'));
    assert.deepEqual(
      decodeMessage(enc).options.map((o) => `${o.number}:${o.value.toString('latin1')}`),
      ['1:\x01', '1:\x02', '3:h', '11:x', '11:y', '11:z'],
    );
  });

  it('uint values use the minimal length (§3.2)', () => {
    const cases: Array<[number, string]> = [
      [0, ''],
      [1, '01'],
      [255, 'ff'],
      [256, '01 00'],
      [65535, 'ff ff'],
      [65536, '01 00 00'],
      [0xffffff, 'ff ff ff'],
      [0x1000000, '01 00 00 00'],
      [0xffffffff, 'ff ff ff ff'],
    ];
    for (const [n, hex] of cases) assert.deepEqual(encodeUint(n), b(hex), `uint ${n}`);
    checkVector({
      name: 'Max-Age 256',
      msg: { ...GET, options: [{ number: 14, value: encodeUint(256) }] },
      bytes: b(hdr, 'd2 01', '01 00'),
    });
  });

  it('encoder rejects impossible headers and option numbers', () => {
    const bad: EncodableMessage[] = [
      { type: 4 as MessageType, code: 1, messageId: 1 },
      { type: 0, code: 256, messageId: 1 },
      { type: 0, code: -1, messageId: 1 },
      { type: 0, code: 1.5, messageId: 1 },
      { type: 0, code: 1, messageId: 65536 },
      { type: 0, code: 1, messageId: -1 },
      { type: 0, code: 1, messageId: 1, options: [{ number: 65536, value: Buffer.alloc(0) }] },
      { type: 0, code: 1, messageId: 1, options: [{ number: -1, value: Buffer.alloc(0) }] },
      { type: 0, code: 1, messageId: 1, options: [{ number: 1.5, value: Buffer.alloc(0) }] },
      // §4.1: an Empty message carries nothing after the Message ID.
      { type: 2, code: 0, messageId: 1, token: Buffer.from([1]) },
      { type: 2, code: 0, messageId: 1, options: [{ number: 11, value: Buffer.alloc(0) }] },
      { type: 2, code: 0, messageId: 1, payload: Buffer.from('x') },
    ];
    for (const m of bad) assert.throws(() => encodeMessage(m), InvalidArgumentError, JSON.stringify(m));
  });

  it('encodeEmpty validates its input like encodeMessage (16-bit Message ID, §3)', () => {
    for (const [type, mid] of [
      [0, 0x10000],
      [0, -1],
      [0, 1.5],
      [4, 1],
      [-1, 1],
    ] as const) {
      assert.throws(() => encodeEmpty(type as MessageType, mid), InvalidArgumentError, `${type}/${mid}`);
    }
    assert.deepEqual(encodeEmpty(MessageType.CON, 0xffff), b('40 00 ff ff'));
  });

  it('empty payload produces no payload marker', () => {
    assert.deepEqual(encodeMessage({ ...GET, payload: Buffer.alloc(0) }), b(hdr));
  });

  it('decodes from a Uint8Array view with a non-zero byteOffset', () => {
    const backing = new Uint8Array(64);
    const bytes = b('41 01 7d 35', '20', 'bb', '"temperature"');
    backing.set(bytes, 10);
    const d = decodeMessage(new Uint8Array(backing.buffer, 10, bytes.length));
    assert.equal(d.messageId, 0x7d35);
    assert.deepEqual(d.token, Buffer.from([0x20]));
    assert.equal(d.options[0]?.value.toString(), 'temperature');
  });
});

describe('message format errors (RFC 7252 §3, §4.1)', () => {
  const bad = (hex: string, why: string) => {
    assert.throws(() => decodeMessage(b(hex)), MessageFormatError, why);
  };

  it('fewer than 4 bytes', () => {
    bad('', 'empty datagram');
    bad('40', '1 byte');
    bad('40 01 00', '3 bytes');
  });

  it('version other than 1', () => {
    bad('00 01 00 01', 'version 0');
    bad('80 01 00 01', 'version 2');
    bad('c0 01 00 01', 'version 3');
    bad('00 00 00 00', 'version 0 empty');
  });

  it('TKL 9-15 is a format error', () => {
    for (let tkl = 9; tkl <= 15; tkl++) {
      const bytes = Buffer.concat([Buffer.from([0x40 | tkl, 0x01, 0, 1]), Buffer.alloc(tkl, 0xaa)]);
      assert.throws(() => decodeMessage(bytes), MessageFormatError, `tkl ${tkl}`);
    }
  });

  it('Empty message (0.00) with anything after the Message ID', () => {
    bad('60 00 00 01 00', 'trailing byte');
    bad('60 00 00 01 ff 78', 'payload');
    bad('61 00 00 01 aa', 'token');
    bad('61 00 00 01', 'TKL 1 with no token bytes');
    bad('70 00 00 01 b1 61', 'RST with option');
    // While a well-formed empty ACK/RST/CON decodes.
    for (const t of [0, 1, 2, 3]) {
      const d = decodeMessage(Buffer.from([0x40 | (t << 4), 0, 0x12, 0x34]));
      assert.equal(d.type, t);
      assert.equal(d.code, 0);
      assert.equal(d.messageId, 0x1234);
    }
  });

  it('payload marker followed by a zero-length payload', () => {
    bad('40 01 00 01 ff', 'marker only');
    bad('41 01 00 01 aa ff', 'marker after token');
    bad('40 01 00 01 b1 61 ff', 'marker after option');
  });

  it('reserved nibble 15 in delta or length (0xff alone is the payload marker)', () => {
    bad('40 01 00 01 f0', 'delta 15, length 0');
    bad('40 01 00 01 f1 00', 'delta 15, length 1');
    bad('40 01 00 01 0f', 'delta 0, length 15');
    bad('40 01 00 01 1f 00', 'delta 1, length 15');
    bad('40 01 00 01 df 00', 'delta 13, length 15');
    bad('40 01 00 01 fd 00', 'delta 15, length 13');
  });

  it('option number above 65535', () => {
    bad('40 01 00 01 e0 ff ff', 'single delta 65535 + 269');
    bad('40 01 00 01 e0 fe f2 10', 'option 65535 then delta 1');
    // 65535 itself is fine.
    assert.equal(decodeMessage(b('40 01 00 01 e0 fe f2')).options[0]?.number, 65535);
  });

  it('truncated at every byte: only prefixes ending on a field boundary decode', () => {
    // header, token (2), Uri-Host "h", option 300 with a 14-byte value, payload "xy".
    const full = b('42 01 12 34', 'ca fe', '31', '"h"', 'ed 00 1c 01', 'aa'.repeat(14), 'ff', '"xy"');
    assert.equal(full.length, 29);
    const full0 = decodeMessage(full);
    assert.deepEqual(
      full0.options.map((o) => o.number),
      [3, 300],
    );
    assert.equal(full0.payload.toString(), 'xy');
    const valid = new Map<number, [options: number, payload: string]>([
      [6, [0, '']],
      [8, [1, '']],
      [26, [2, '']],
      [28, [2, 'x']],
      [29, [2, 'xy']],
    ]);
    for (let n = 0; n <= full.length; n++) {
      const prefix = full.subarray(0, n);
      const expect = valid.get(n);
      if (expect === undefined) {
        assert.throws(() => decodeMessage(prefix), MessageFormatError, `prefix ${n} must fail`);
      } else {
        const d = decodeMessage(prefix);
        assert.equal(d.options.length, expect[0], `prefix ${n} options`);
        assert.equal(d.payload.toString(), expect[1], `prefix ${n} payload`);
        assert.deepEqual(encodeMessage(d), prefix, `prefix ${n} re-encodes`);
      }
    }
  });

  it('truncated extended delta / length / value', () => {
    bad('40 01 00 01 d0', 'missing 1-byte delta');
    bad('40 01 00 01 e0 00', 'missing 2nd byte of 2-byte delta');
    bad('40 01 00 01 0d', 'missing 1-byte length');
    bad('40 01 00 01 0e 00', 'missing 2nd byte of 2-byte length');
    bad('40 01 00 01 03 61 62', 'value one byte short');
    bad('40 01 00 01 0d 00 61', 'extended length value short');
  });
});
