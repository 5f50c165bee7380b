/**
 * The console's dependency-free CoAP-over-WebSockets codec (src/console/frame.ts,
 * shared by the page and the server) against the node codec (src/codec/reliable.ts,
 * RFC 8323 §4.2): same bytes for the same message, each decodes the other's output.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeFrame, encodeFrame } from '../../src/codec/reliable.js';
import {
  decodeWsMessage,
  encodeWsMessage,
  SignalCode,
  uintValue,
  WsFrameError,
} from '../../src/console/frame.js';
import { CoapError } from '../../src/errors.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('console frame codec (RFC 8323 §4.2)', () => {
  it('encodes a GET with Proxy-Uri byte for byte', () => {
    const bytes = encodeWsMessage({
      code: 1,
      token: Uint8Array.of(0xca, 0xfe),
      options: [{ number: 35, value: new TextEncoder().encode('coap://h/x') }],
      payload: new Uint8Array(0),
    });
    // Len 0 | TKL 2, code 0.01, token, option 35: delta 13+22 (0xd? with ext 22), length 10, value.
    assert.equal(hex(bytes), `0201cafe${'da16'}${hex(new TextEncoder().encode('coap://h/x'))}`);
  });

  it('encodes a CSM as the node codec does', () => {
    const ours = encodeWsMessage({
      code: SignalCode.CSM,
      token: new Uint8Array(0),
      options: [
        { number: 2, value: uintValue(8 * 1024 * 1024) },
        { number: 4, value: new Uint8Array(0) },
      ],
      payload: new Uint8Array(0),
    });
    const node = encodeFrame(
      {
        code: 0xe1,
        options: [
          { number: 2, value: uintValue(8 * 1024 * 1024) },
          { number: 4, value: new Uint8Array(0) },
        ],
      },
      true,
    );
    assert.equal(hex(ours), hex(node));
  });

  it('agrees with the node codec on any message (property)', () => {
    const option = fc.record({
      number: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 65_000 })),
      value: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 255 }),
        fc.uint8Array({ maxLength: 8 }),
        fc.array(option, { maxLength: 8 }),
        fc.uint8Array({ maxLength: 600 }),
        (code, token, opts, payload) => {
          const options = [...opts].sort((a, b) => a.number - b.number);
          const ours = encodeWsMessage({ code, token, options, payload });
          const node = encodeFrame({ code, token, options, payload }, true);
          assert.equal(hex(ours), hex(node));
          const back = decodeWsMessage(node);
          assert.equal(back.code, code);
          assert.equal(hex(back.token), hex(token));
          assert.deepEqual(
            back.options.map((o) => [o.number, hex(o.value)]),
            options.map((o) => [o.number, hex(o.value)]),
          );
          assert.equal(hex(back.payload), hex(payload));
          const theirs = decodeFrame(ours, true);
          assert.equal(hex(theirs.payload), hex(payload));
          assert.equal(theirs.options.length, options.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('sorts options and keeps repeated ones in order', () => {
    const m = decodeWsMessage(
      encodeWsMessage({
        code: 2,
        token: new Uint8Array(0),
        options: [
          { number: 15, value: Uint8Array.of(0x61) },
          { number: 11, value: Uint8Array.of(0x78) },
          { number: 15, value: Uint8Array.of(0x62) },
        ],
        payload: new Uint8Array(0),
      }),
    );
    assert.deepEqual(
      m.options.map((o) => [o.number, o.value[0]]),
      [
        [11, 0x78],
        [15, 0x61],
        [15, 0x62],
      ],
    );
  });

  it('refuses malformed messages with WsFrameError, never reading past the end', () => {
    const bad: Array<[string, number[]]> = [
      ['too short', [0x00]],
      ['Len not 0', [0x10, 0x01]],
      ['TKL 9', [0x09, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9]],
      ['token past the end', [0x04, 0x01, 1, 2]],
      ['marker without payload', [0x00, 0x01, 0xff]],
      ['delta nibble 15', [0x00, 0x01, 0xf1, 0x00]],
      ['extended delta past the end', [0x00, 0x01, 0xd0]],
      ['value past the end', [0x00, 0x01, 0x15, 0x61]],
    ];
    for (const [what, bytes] of bad) {
      assert.throws(() => decodeWsMessage(Uint8Array.from(bytes)), WsFrameError, what);
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        try {
          decodeWsMessage(b);
        } catch (err) {
          assert.ok(err instanceof WsFrameError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('WsFrameError is a CoapError with its own code', () => {
    assert.equal(WsFrameError.code, 'COAP_ERR_WS_FRAME');
    try {
      decodeWsMessage(Uint8Array.of(0x10, 0x01));
      assert.fail('decoded a frame with Len 1');
    } catch (err) {
      assert.ok(err instanceof CoapError);
      assert.ok(err instanceof WsFrameError);
      assert.equal(err.code, 'COAP_ERR_WS_FRAME');
      assert.equal(err.name, 'WsFrameError');
      assert.match(err.message, /Len is 1/);
    }
  });

  it('refuses to encode a token over 8 bytes', () => {
    assert.throws(
      () => encodeWsMessage({ code: 1, token: new Uint8Array(9), options: [], payload: new Uint8Array(0) }),
      WsFrameError,
    );
  });
});
