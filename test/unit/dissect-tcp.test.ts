/**
 * CoAP over TCP in the dissector: TCP header decoding, stream reassembly
 * (retransmission, overlap, out of order, gaps, mid-stream start, bounds) and
 * RFC 8323 frames read from the streams, on crafted captures whose ground truth
 * is the frames we encoded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeTcp, TCP_LIMITS, TcpDirection, TcpReassembler } from '../../src/capture/tcp.js';
import { encodeFrame, SignalCode } from '../../src/codec/reliable.js';
import { DISSECT_USAGE } from '../../src/dissect/cli.js';
import { type DissectResult, dissect } from '../../src/dissect/dissect.js';
import { renderJson, renderText } from '../../src/dissect/render.js';
import { MAX_TCP_COAP_FRAME } from '../../src/dissect/tcp.js';
import { CaptureFormatError } from '../../src/errors.js';
import { byteMutations, mutate } from '../helpers/mutations.js';
import { ipTcp, TcpConversation, type TcpSegment, tcpPcap } from '../helpers/pcap-tcp.js';

const B = (s: string): Buffer => Buffer.from(s);
const E = Buffer.alloc(0);

const CSM = encodeFrame({
  code: SignalCode.CSM,
  options: [
    { number: 2, value: Buffer.from([0x04, 0x80]) },
    { number: 4, value: E },
  ],
});
const PING = encodeFrame({
  code: SignalCode.Ping,
  token: Buffer.from([1, 2]),
  options: [{ number: 2, value: E }],
});
const PONG = encodeFrame({
  code: SignalCode.Pong,
  token: Buffer.from([1, 2]),
  options: [{ number: 2, value: E }],
});
const RELEASE = encodeFrame({
  code: SignalCode.Release,
  options: [
    { number: 2, value: B('coap+tcp://other.example:5683') },
    { number: 4, value: Buffer.from([30]) },
  ],
});
const ABORT = encodeFrame({
  code: SignalCode.Abort,
  options: [{ number: 2, value: Buffer.from([9]) }],
  payload: B('bad option 9'),
});
const GET = encodeFrame({
  code: 1,
  token: Buffer.from([0xaa]),
  options: [
    { number: 11, value: B('sensors') },
    { number: 11, value: B('temp') },
  ],
});
/** 3007 bytes: Len 15 (4-byte Extended Length is not needed: 14, 2 bytes). */
const BIG = encodeFrame({
  code: 69,
  token: Buffer.from([0xaa]),
  options: [{ number: 12, value: E }],
  payload: Buffer.alloc(3000, 0x41),
});
const PUT = (i: number): Buffer =>
  encodeFrame({
    code: 3,
    token: Buffer.from([0xb0, i]),
    options: [{ number: 11, value: B(`r${i}`) }],
    payload: B(`value ${i}`),
  });
const CHANGED = (i: number): Buffer => encodeFrame({ code: 68, token: Buffer.from([0xb0, i]) });

const CLIENT = '10.0.0.1:40001';
const SERVER = '10.0.0.2:5683';

/** [code, token, payload] of every CoAP message, in order: the ground truth to compare with. */
function msgs(r: DissectResult): [string, string, string][] {
  return r.coap.messages.map((m) => [m.codeName, m.token, m.payload.hex]);
}

function check(r: DissectResult): void {
  assert.ok(!r.warnings.some((w) => w.includes('internal decoder error')), r.warnings.join('\n'));
  renderText(r);
  JSON.parse(renderJson(r));
}

/** The full conversation: CSMs, a request and a Ping in one segment, a response split in three... */
function conversation(): TcpConversation {
  return new TcpConversation(CLIENT, SERVER)
    .handshake()
    .c(CSM)
    .s(CSM)
    .c(Buffer.concat([GET, PING]))
    .s(Buffer.concat([PONG, BIG.subarray(0, 1000)]))
    .s(BIG.subarray(1000, 2000))
    .s(BIG.subarray(2000))
    .s(RELEASE)
    .c(ABORT)
    .close();
}

const EXPECTED: [string, string, string][] = [
  ['7.01 CSM', '', ''],
  ['7.01 CSM', '', ''],
  ['GET', 'aa', ''],
  ['7.02 Ping', '0102', ''],
  ['7.03 Pong', '0102', ''],
  ['2.05 Content', 'aa', '41'.repeat(3000)],
  ['7.04 Release', '', ''],
  ['7.05 Abort', '', B('bad option 9').toString('hex')],
];

describe('TCP header decoding', () => {
  const seg = ipTcp({ src: CLIENT, dst: SERVER, seq: 7, ack: 9, flags: 'PA', data: B('xy') }, 1).subarray(20);

  it('reads ports, sequence numbers, flags and payload', () => {
    const t = decodeTcp(seg);
    assert.deepEqual(
      [t.srcPort, t.dstPort, t.seq, t.ack, t.headerLength, t.flags, Buffer.from(t.payload).toString()],
      [40001, 5683, 7, 9, 20, 0x18, 'xy'],
    );
  });

  it('malformed headers are a CaptureFormatError', () => {
    for (let n = 0; n < 20; n++) assert.throws(() => decodeTcp(seg.subarray(0, n)), CaptureFormatError);
    const bad = Buffer.from(seg);
    bad[12] = 4 << 4; // data offset 4 (16 bytes): below the minimum
    assert.throws(() => decodeTcp(bad), /bad TCP data offset/);
    bad[12] = 15 << 4; // 60 bytes of header, 22 captured
    assert.throws(() => decodeTcp(bad), CaptureFormatError);
  });
});

describe('TCP stream reassembly', () => {
  const shared = { pendingBytes: 0 };
  const dir = (): TcpDirection => new TcpDirection(1, 'a', 'b', shared);
  const push = (d: TcpDirection, seq: number, data: string, flags = 0x18, frame = 1) =>
    d.push({ seq, flags, payload: B(data), announced: data.length }, frame);
  const text = (r: ReturnType<typeof push>): string =>
    r.delivered.map((x) => Buffer.from(x.data).toString()).join('');

  it('delivers in order, drops retransmissions, keeps only the new bytes of an overlap', () => {
    const d = dir();
    d.push({ seq: 99, flags: 0x02, payload: E, announced: 0 }, 1);
    assert.equal(text(push(d, 100, 'hello')), 'hello');
    const re = push(d, 100, 'hello');
    assert.equal(text(re), '');
    assert.equal(re.events[0]?.kind, 'retransmission');
    const ov = push(d, 103, 'lo world');
    assert.equal(text(ov), ' world');
    assert.equal(ov.events[0]?.kind, 'overlap');
    assert.equal(d.bytes, 11);
    assert.equal(d.retransmissions, 2);
  });

  it('holds out-of-order segments until the hole is filled', () => {
    const d = dir();
    d.push({ seq: 0, flags: 0x02, payload: E, announced: 0 }, 1);
    assert.equal(text(push(d, 7, 'CCC', 0x18, 3)), '');
    assert.equal(text(push(d, 4, 'BBB', 0x18, 4)), '');
    assert.equal(d.heldSegments, 2);
    const r = push(d, 1, 'AAA', 0x18, 5);
    assert.equal(text(r), 'AAABBBCCC');
    assert.deepEqual(
      r.delivered.map((x) => x.frame),
      [5, 4, 3],
    );
    assert.equal(d.held, 0);
    assert.equal(d.outOfOrder, 2);
  });

  it('sequence numbers wrap around 2^32', () => {
    const d = dir();
    d.push({ seq: 0xfffffffd, flags: 0x02, payload: E, announced: 0 }, 1);
    assert.equal(text(push(d, 0xfffffffe, 'abcd')), 'abcd');
    assert.equal(text(push(d, 2, 'ef')), 'ef');
    assert.equal(text(push(d, 0, 'xx')), '');
  });

  it('a hole that outlasts the out-of-order bound becomes a reported gap', () => {
    const d = dir();
    d.push({ seq: 0, flags: 0x02, payload: E, announced: 0 }, 1);
    let delivered = '';
    let gap: unknown;
    for (let i = 0; i <= TCP_LIMITS.maxPendingSegments; i++) {
      const r = push(d, 2 + i, String.fromCharCode(97 + (i % 26)));
      delivered += text(r);
      gap ??= r.events.find((e) => e.kind === 'gap');
      assert.ok(d.heldSegments <= TCP_LIMITS.maxPendingSegments);
    }
    assert.deepEqual(gap, {
      kind: 'gap',
      bytes: 1,
      seq: 1,
      reason: 'out-of-order buffer full while waiting for them',
    });
    assert.equal(delivered.length, TCP_LIMITS.maxPendingSegments + 1);
    assert.equal(d.gaps, 1);
  });

  it('out-of-order bytes are bounded per direction and in all', () => {
    const d = dir();
    d.push({ seq: 0, flags: 0x02, payload: E, announced: 0 }, 1);
    const chunk = 'x'.repeat(60_000);
    for (let i = 0; i < 10; i++) {
      push(d, 100 + i * chunk.length, chunk);
      assert.ok(d.held <= TCP_LIMITS.maxPendingBytes);
    }
    assert.ok(d.gaps >= 1);
    const r = new TcpReassembler();
    for (let i = 0; i < 200; i++) {
      const x = r.direction(`a${i}`, 'b') as TcpDirection;
      x.push({ seq: 0, flags: 0x02, payload: E, announced: 0 }, 1);
      x.push({ seq: 10, flags: 0x18, payload: Buffer.alloc(200_000), announced: 200_000 }, 2);
      assert.ok(r.held <= TCP_LIMITS.maxPendingBytesTotal);
    }
  });

  it('a stream joined mid-capture starts at its first data segment, flagged for resync', () => {
    const d = dir();
    const r = push(d, 5000, 'mid');
    assert.equal(r.events[0]?.kind, 'midstream');
    assert.equal(r.delivered[0]?.afterGap, true);
    assert.equal(d.sawSyn, false);
  });

  it('at the end of the capture, held bytes after a hole are delivered after a gap', () => {
    const d = dir();
    d.push({ seq: 0, flags: 0x02, payload: E, announced: 0 }, 1);
    push(d, 5, 'later');
    const r = d.flush();
    assert.equal(r.events[0]?.kind, 'gap');
    assert.equal(r.delivered[0]?.afterGap, true);
    assert.equal(Buffer.from(r.delivered[0]?.data ?? E).toString(), 'later');
  });

  it('the number of directions is bounded', () => {
    const r = new TcpReassembler();
    for (let i = 0; i < TCP_LIMITS.maxDirections; i++) assert.ok(r.direction(`a${i}`, 'b'));
    assert.equal(r.direction('one', 'more'), undefined);
    assert.equal(r.refused, 1);
  });
});

describe('dissect: CoAP over TCP (RFC 8323)', () => {
  it('decodes every frame: split across segments, several in one segment, signaling by name', () => {
    const r = dissect(tcpPcap(conversation().segments));
    check(r);
    assert.deepEqual(msgs(r), EXPECTED);
    const [csm, , get, ping, pong, big, release, abort] = r.coap.messages;
    assert.deepEqual(
      csm?.options.map((o) => [o.name, o.value]),
      [
        ['Max-Message-Size', 1152],
        ['Block-Wise-Transfer', null],
      ],
    );
    assert.deepEqual(
      ping?.options.map((o) => o.name),
      ['Custody'],
    );
    assert.deepEqual(
      pong?.options.map((o) => o.name),
      ['Custody'],
    );
    assert.deepEqual(
      release?.options.map((o) => [o.name, o.value]),
      [
        ['Alternative-Address', 'coap+tcp://other.example:5683'],
        ['Hold-Off', 30],
      ],
    );
    assert.deepEqual(
      abort?.options.map((o) => [o.name, o.value]),
      [['Bad-CSM-Option', 9]],
    );
    assert.equal(get?.uriPath, '/sensors/temp');
    // Frame lengths and where each frame was completed.
    assert.deepEqual(
      r.coap.messages.map((m) => m.tcp?.frameLength),
      [
        CSM.length,
        CSM.length,
        GET.length,
        PING.length,
        PONG.length,
        BIG.length,
        RELEASE.length,
        ABORT.length,
      ],
    );
    assert.equal(get?.frame, ping?.frame);
    assert.deepEqual(big?.tcp?.segments, [7, 8, 9]);
    assert.equal(big?.frame, 9);
    assert.equal(big?.tcp?.frameHeaderLength, 4);
    // Grouping: the response joins its request by token, the Pong its Ping.
    assert.equal(big?.exchange, get?.exchange);
    assert.equal(big?.role, 'response');
    assert.equal(pong?.exchange, ping?.exchange);
    assert.equal(r.tcp?.streams.length, 2);
    assert.deepEqual(
      r.tcp?.streams.map((s) => [s.coapFrames, s.gaps, s.closed, s.sawSyn]),
      [
        [4, 0, true, true],
        [4, 0, true, true],
      ],
    );
    // No expert finding on well-formed signaling (its option numbers are not RFC 7252's).
    assert.deepEqual(
      r.frames.flatMap((f) => f.expert.map((e) => e.rule)),
      [],
    );
    const text = renderText(r);
    assert.match(text, /TCP len=6 7\.01 CSM/);
    assert.match(text, /Max-Message-Size \(2, uint\): 1152 B/);
    assert.match(text, /reassembled from frames #7, #8, #9/);
    assert.match(
      text,
      /Exchange \d+: GET \/sensors\/temp \[request\] 10\.0\.0\.1:40001 → 10\.0\.0\.2:5683 \(TCP\)/,
    );
  });

  it('every byte in its own segment gives the same messages', () => {
    const c = new TcpConversation(CLIENT, SERVER).handshake();
    for (const f of [CSM, GET, PING, PUT(1)]) for (const b of f) c.c(Buffer.from([b]));
    const r = dissect(tcpPcap(c.segments));
    check(r);
    assert.deepEqual(
      msgs(r).map((m) => m[0]),
      ['7.01 CSM', 'GET', '7.02 Ping', 'PUT'],
    );
  });

  it('retransmitted, overlapping and out-of-order segments: each frame decoded once, in stream order', () => {
    const c = new TcpConversation(CLIENT, SERVER).handshake();
    const a = c.cSeg(Buffer.concat([CSM, PUT(1).subarray(0, 5)]));
    const b = c.cSeg(PUT(1).subarray(5));
    const d = c.cSeg(PUT(2));
    const e = c.cSeg(PUT(3));
    const overlapping: TcpSegment = {
      ...e,
      seq: d.seq + 3,
      data: Buffer.concat([PUT(2).subarray(3), PUT(3)]),
    };
    c.push(a, d, b, b, overlapping, e); // d before b: out of order; b twice; e overlapped then retransmitted
    c.s(Buffer.concat([CHANGED(1), CHANGED(2), CHANGED(3)])).close();
    const r = dissect(tcpPcap(c.segments));
    check(r);
    assert.deepEqual(
      msgs(r).map((m) => `${m[0]} ${m[1]}`),
      [
        '7.01 CSM ',
        'PUT b001',
        'PUT b002',
        'PUT b003',
        '2.04 Changed b001',
        '2.04 Changed b002',
        '2.04 Changed b003',
      ],
    );
    const put2 = r.coap.messages[2];
    assert.equal(put2?.frame, 6, 'PUT 2 (held out of order) completes when the hole is filled, at frame 6');
    const st = r.tcp?.streams[0];
    assert.equal(st?.outOfOrder, 1);
    assert.equal(st?.retransmissions, 3);
    assert.equal(st?.gaps, 0);
    assert.match(r.frames[6]?.tcp?.notes?.join() ?? '', /retransmission/);
    assert.match(r.frames[4]?.tcp?.notes?.join() ?? '', /out of order/);
  });

  it('a gap is reported and the frames around it are not mis-decoded', () => {
    const c = new TcpConversation(CLIENT, SERVER).handshake().c(CSM).c(PUT(1));
    c.cSeg(PUT(2).subarray(0, 6)); // lost: never in the capture
    c.c(PUT(2).subarray(6)).c(PUT(3)).c(PUT(4));
    const r = dissect(tcpPcap(c.segments));
    check(r);
    // The gap is only known for sure at the end (the hole never fills): then the rest is
    // read again from the first segment that starts with a frame (PUT 3).
    assert.deepEqual(
      msgs(r).map((m) => `${m[0]} ${m[1]}`),
      ['7.01 CSM ', 'PUT b001', 'PUT b003', 'PUT b004'],
    );
    assert.equal(r.tcp?.streams[0]?.gaps, 1);
    assert.equal(r.tcp?.streams[0]?.gapBytes, 6);
    assert.ok(r.warnings.some((w) => /6 byte\(s\) missing in 1 gap/.test(w)));
  });

  it('a stream that started before the capture is resynchronised on a segment starting with a frame', () => {
    const c = new TcpConversation(CLIENT, SERVER).handshake().c(CSM).c(PUT(1).subarray(0, 4));
    c.c(PUT(1).subarray(4)).c(PUT(2)).s(CHANGED(1).subarray(3)).s(CHANGED(2));
    const r = dissect(tcpPcap(c.segments.slice(5))); // from the middle of PUT 1
    check(r);
    assert.deepEqual(
      msgs(r).map((m) => `${m[0]} ${m[1]}`),
      ['PUT b002', '2.04 Changed b002'],
    );
    assert.equal(r.tcp?.streams[0]?.sawSyn, false);
    assert.match(
      r.frames[1]?.tcp?.notes?.join() ?? '',
      /resynchronised.*\(\d+ byte\(s\) skipped before it\)/,
    );
  });

  it('a new connection on the same port pair starts afresh (a frame left incomplete is reported)', () => {
    const first = new TcpConversation(CLIENT, SERVER, 100, 200)
      .handshake()
      .c(CSM)
      .c(PUT(1).subarray(0, 5))
      .close();
    const second = new TcpConversation(CLIENT, SERVER, 900_000, 7_000).handshake().c(CSM).c(PUT(2)).close();
    const r = dissect(tcpPcap([...first.segments, ...second.segments]));
    check(r);
    assert.deepEqual(
      msgs(r).map((m) => `${m[0]} ${m[1]}`),
      ['7.01 CSM ', '7.01 CSM ', 'PUT b002'],
    );
    const syn2 = first.segments.length + 4; // frame of the second connection's CSM
    assert.match(
      r.frames[syn2 - 1]?.errors.join() ?? '',
      /incomplete RFC 8323 frame \(5 byte\(s\) of it seen\) dropped/,
    );
    assert.equal(r.tcp?.streams.length, 2, 'one direction each way, reused');
  });

  it('a frame announcing more than the bound is skipped, not buffered; the stream goes on', () => {
    const huge = Buffer.from([0xf1, 0, 0x80, 0, 0, 0x45, 0xcc]); // Len 15 + 0x800000 + 65805, TKL 1
    const c = new TcpConversation(CLIENT, SERVER).handshake().c(CSM).c(huge).c(PUT(1));
    const r = dissect(tcpPcap(c.segments));
    check(r);
    assert.ok(MAX_TCP_COAP_FRAME < 0x800000 + 65805 + 7);
    assert.match(r.frames[4]?.errors.join() ?? '', /more than the dissector's bound/);
    // PUT 1 lies inside the skipped frame's announced length: it is not decoded as a frame.
    assert.deepEqual(
      msgs(r).map((m) => m[0]),
      ['7.01 CSM'],
    );
  });

  it('a malformed frame is reported on its segment', () => {
    const bad = Buffer.from([0x09, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // TKL 9 (reserved)
    const c = new TcpConversation(CLIENT, SERVER).handshake().c(bad).c(PUT(1));
    const r = dissect(tcpPcap(c.segments));
    check(r);
    assert.match(r.frames[3]?.errors.join() ?? '', /not a valid CoAP message/);
    assert.deepEqual(
      msgs(r).map((m) => m[0]),
      ['PUT'],
    );
  });

  it('TCP on other ports is left alone unless named with ports', () => {
    const c = new TcpConversation(CLIENT, '10.0.0.2:7000').handshake().c(CSM).c(PUT(1));
    assert.equal(dissect(tcpPcap(c.segments)).coap.messages.length, 0);
    assert.equal(dissect(tcpPcap(c.segments)).tcp, undefined);
    assert.equal(dissect(tcpPcap(c.segments), { ports: [7000] }).coap.messages.length, 2);
  });

  it('truncating the capture at every offset: a CaptureFormatError or the exact messages before the cut', () => {
    const file = tcpPcap(conversation().segments);
    const full = dissect(file);
    const fullMsgs = msgs(full);
    const boundaries = new Set([24]);
    for (let o = 24; o < file.length; ) {
      o += 16 + file.readUInt32LE(o + 8);
      boundaries.add(o);
    }
    for (let cut = 0; cut <= file.length; cut++) {
      const r = dissect(file.subarray(0, cut));
      check(r);
      assert.equal(
        r.error?.code,
        boundaries.has(cut) ? undefined : 'COAP_ERR_CAPTURE_FORMAT',
        `cut at ${cut}`,
      );
      // Whole frames before the cut: the messages they complete are exactly the full result's.
      const frames = r.frames.length;
      const expected = full.coap.messages
        .filter((m) => m.frame <= frames)
        .map((m) => [m.codeName, m.token, m.payload.hex]);
      assert.deepEqual(msgs(r), expected, `cut at ${cut}`);
      assert.deepEqual(msgs(r), fullMsgs.slice(0, expected.length));
    }
  });

  it('a snap length that cuts segments: gaps, never a mis-decoded frame', () => {
    const truth = new Set(EXPECTED.map((m) => m.join('|')));
    const segments = conversation().segments;
    for (let snap = 20; snap <= 1100; snap += 7) {
      const r = dissect(tcpPcap(segments.map((s) => ({ ...s, capture: snap }))));
      check(r);
      for (const m of msgs(r)) assert.ok(truth.has(m.join('|')), `snap ${snap}: ${m.join(' ')}`);
    }
    // One segment of the big response cut: that frame is lost, the others are all there.
    const cut = conversation().segments.map((s, i) => (i === 7 ? { ...s, capture: 300 } : s));
    const r = dissect(tcpPcap(cut));
    check(r);
    assert.deepEqual(
      msgs(r).map((m) => m[0]),
      EXPECTED.map((m) => m[0]).filter((m) => m !== '2.05 Content'),
    );
    assert.match(r.frames[7]?.errors.join() ?? '', /cut short by the capture/);
  });

  it('mutated and reordered TCP captures never throw and stay bounded in time', () => {
    const segments = conversation().segments;
    const file = tcpPcap(segments);
    fc.assert(
      fc.property(byteMutations(file.length, 8), (mutations) => {
        const b = mutate(file, mutations);
        const t = performance.now();
        check(dissect(b));
        assert.ok(performance.now() - t < 2000);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.shuffledSubarray(segments.slice(3), { minLength: 1 }), (some) => {
        const r = dissect(tcpPcap([...segments.slice(0, 3), ...some]));
        check(r);
        const truth = new Set(EXPECTED.map((m) => m.join('|')));
        for (const m of msgs(r)) assert.ok(truth.has(m.join('|')), m.join(' '));
      }),
      { numRuns: 200 },
    );
  });

  it('--help says what is decoded on TCP and how --port applies to it', () => {
    assert.match(DISSECT_USAGE, /CoAP over TCP \(RFC 8323, coap\+tcp:\/\/\) on TCP port 5683 and any --port/);
    assert.match(DISSECT_USAGE, /TCP port N as CoAP over\s+TCP/);
    for (const name of ['7.01 CSM', '7.05 Abort']) assert.ok(DISSECT_USAGE.includes(name), name);
  });
});
