/**
 * The trace's RFC 8323 frames (src/trace/frame.ts and the text renderer): every
 * signaling message by name with its options (RFC 8323 §5.3-§5.6: option numbers mean
 * something else per signaling code), the frame header's Len and Extended Length
 * (§3.2), the WebSocket frame header (RFC 6455 §5.2), and no RFC 7252 words.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { encodeAbort, encodeCsm, encodeFrame, SignalCode, uintValue } from '../../src/codec/reliable.js';
import { channels } from '../../src/diagnostics.js';
import { formatFrameLayout, summarizeFrame, webSocketHeaderBytes } from '../../src/trace/frame.js';
import { startTrace } from '../../src/trace/tracer.js';
import { makePeer } from '../../src/transport/transport.js';

describe('summarizeFrame', () => {
  it('names each signaling code and its options', () => {
    const csm = summarizeFrame(encodeCsm(8388864, true, false), 'coap+tcp');
    assert.ok(csm.ok && csm.signal);
    assert.equal(csm.codeText, '7.01 CSM');
    assert.deepEqual(
      csm.options.map((o) => [o.name, o.value]),
      [
        ['Max-Message-Size', '8388864'],
        ['Block-Wise-Transfer', ''],
      ],
    );
    const release = summarizeFrame(
      encodeFrame({
        code: SignalCode.Release,
        options: [
          { number: 2, value: Buffer.from('coap+tcp://other:5683') },
          { number: 4, value: uintValue(30) },
        ],
      }),
      'coap+tcp',
    );
    assert.ok(release.ok);
    assert.equal(release.codeText, '7.04 Release');
    assert.deepEqual(
      release.options.map((o) => [o.name, o.value]),
      [
        ['Alternative-Address', '"coap+tcp://other:5683"'],
        ['Hold-Off', '30'],
      ],
    );
    const abort = summarizeFrame(encodeAbort('bad CSM', true, 2), 'coap+ws');
    assert.ok(abort.ok);
    assert.equal(abort.codeText, '7.05 Abort');
    assert.deepEqual(
      abort.options.map((o) => [o.name, o.value]),
      [['Bad-CSM-Option', '2']],
    );
    assert.equal(abort.payloadPreview, '"bad CSM"');
    const ping = summarizeFrame(
      encodeFrame({ code: SignalCode.Ping, token: Buffer.from([1, 2]) }),
      'coap+tcp',
    );
    assert.ok(ping.ok);
    assert.equal(ping.codeText, '7.02 Ping');
    assert.equal(ping.token, '0102');
    const pong = summarizeFrame(
      encodeFrame({ code: SignalCode.Pong, options: [{ number: 2, value: Buffer.alloc(0) }] }),
      'coap+tcp',
    );
    assert.ok(pong.ok);
    assert.deepEqual([pong.codeText, pong.options[0]?.name], ['7.03 Pong', 'Custody']);
  });

  it('Len and Extended Length: 0, 1 and 2 bytes of it, the sizes adding up to the frame', () => {
    for (const [payload, ext, nibble] of [
      [3, 0, 4],
      [100, 1, 13],
      [1000, 2, 14],
    ] as const) {
      const frame = encodeFrame({
        code: 0x45,
        token: Buffer.alloc(4, 7),
        payload: Buffer.alloc(payload, 0x61),
      });
      const s = summarizeFrame(frame, 'coap+tcp');
      assert.ok(s.ok && !s.signal);
      assert.equal(s.extendedLength, ext);
      assert.equal(s.length, payload + 1);
      const z = s.sizes;
      assert.equal(z.header + z.token + z.options + z.marker + z.payload, frame.length);
      assert.equal(z.total, frame.length);
      const layout = formatFrameLayout(s, 'coap+tcp', 'in', true);
      assert.ok(
        layout.startsWith(
          ext === 0
            ? `coap+tcp frame ${frame.length} B = 2 hdr (Len ${payload + 1}, TKL 4, Code)`
            : `coap+tcp frame ${frame.length} B = ${2 + ext} hdr (Len ${nibble} + ${ext} B Extended Length: ${payload + 1}, TKL 4, Code)`,
        ),
        layout,
      );
    }
  });

  it('WebSocket frame header: 2, 4 or 10 bytes, and the mask of what a client sends', () => {
    assert.deepEqual(
      [webSocketHeaderBytes(125, false), webSocketHeaderBytes(126, false), webSocketHeaderBytes(70000, true)],
      [2, 4, 14],
    );
    const s = summarizeFrame(encodeFrame({ code: 1, token: Buffer.alloc(1) }, true), 'coaps+ws');
    assert.ok(s.ok);
    assert.match(
      formatFrameLayout(s, 'coaps+ws', 'out', true),
      /\+ 6 B frame header \(4 B mask: client to server\)$/,
    );
    assert.match(formatFrameLayout(s, 'coaps+ws', 'out', false), /\+ 2 B frame header$/);
  });

  it('a malformed frame is reported, not thrown', () => {
    const s = summarizeFrame(Buffer.from([0x19, 0x01]), 'coap+tcp');
    assert.equal(s.ok, false);
    const w = summarizeFrame(Buffer.from([0x10, 0x01]), 'coap+ws');
    assert.equal(w.ok, false);
  });
});

describe('the text trace of frame events', () => {
  it('signaling by name, messages without Type or Message ID, the UDP view of the message layer left out', async () => {
    let text = '';
    const out = new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    const trace = startTrace({ format: 'text', out, color: false });
    const peer = makePeer('127.0.0.1', 5683);
    const scheme = 'coap+tcp';
    try {
      // What the message layer publishes (a NON with Message ID 0), then the frame that carries it.
      const get = Buffer.from([0x51, 0x01, 0x00, 0x00, 0xaa, 0xb4, ...Buffer.from('time')]);
      channels.messageSent.publish({ peer, data: get, transmission: 0 });
      channels.frameSent.publish({
        peer,
        scheme,
        initiator: true,
        frame: encodeFrame({ code: SignalCode.CSM }),
      });
      channels.frameSent.publish({
        peer,
        scheme,
        initiator: true,
        frame: encodeFrame({
          code: 1,
          token: Buffer.from([0xaa]),
          options: [{ number: 11, value: Buffer.from('time') }],
        }),
      });
      channels.frameReceived.publish({
        peer,
        scheme,
        initiator: true,
        frame: encodeCsm(8388864, true, false),
      });
      channels.frameReceived.publish({
        peer,
        scheme,
        initiator: true,
        frame: encodeFrame({
          code: SignalCode.Release,
          options: [{ number: 4, value: uintValue(30) }],
          payload: Buffer.from('going away'),
        }),
      });
      channels.frameReceived.publish({ peer, scheme, initiator: true, frame: encodeAbort('no more', false) });
      // An empty ACK the message layer hands over: never on the wire of a reliable transport.
      channels.messageSent.publish({ peer, data: Buffer.from([0x60, 0, 0, 0]), transmission: 0 });
      await new Promise((r) => setImmediate(r));
    } finally {
      trace.stop();
    }
    const lines = text.split('\n').filter((l) => /\S/.test(l) && !/^\s{20,}/.test(l));
    assert.deepEqual(
      lines.map((l) => l.replace(/^\s*\+\S+ ms\s+/, '').replace(/\s+/g, ' ')),
      [
        'SIG → 127.0.0.1:5683 7.01 CSM no options (Max-Message-Size 1152, no BERT) (2 B)',
        'CoAP → 127.0.0.1:5683 GET token aa (8 B)',
        'SIG ← 127.0.0.1:5683 7.01 CSM Max-Message-Size: 8388864, Block-Wise-Transfer (7 B)',
        'SIG ← 127.0.0.1:5683 7.04 Release Hold-Off: 30 (16 B)',
        'SIG ← 127.0.0.1:5683 7.05 Abort (10 B)',
      ],
      text,
    );
    assert.match(text, /diagnostic: "going away"/);
    assert.match(text, /diagnostic: "no more"/);
    assert.doesNotMatch(text, /\bNON\b|\bACK\b|\bMID\b|UDP/);
    const sum = trace.summary();
    assert.equal(sum.frames, 5);
    assert.equal(sum.coapMessages, 0);
  });
});
