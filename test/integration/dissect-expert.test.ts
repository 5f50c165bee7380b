/**
 * dissect expert info: each rule fires on a crafted capture that breaks it (CoAP on
 * port 6000, so the captures also go through detection by content) and on nothing
 * else; no rule fires on the project's captures of normal traffic.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { encodeMessage } from '../../src/codec/message.js';
import type { MessageType } from '../../src/constants/codes.js';
import { runDissect } from '../../src/dissect/cli.js';
import { type DissectOptions, type DissectResult, dissect } from '../../src/dissect/dissect.js';
import { EXPERT_RULES } from '../../src/dissect/expert.js';
import { renderJson, renderText } from '../../src/dissect/render.js';
import { pcap, udpFrame } from '../vectors/captures/build.js';
import { scenarioCapture } from '../vectors/captures/scenario.js';

const C = '10.0.0.1';
const S = '10.0.0.2';
const CP = 40000;
const SP = 6000;

type Msg = Parameters<typeof encodeMessage>[0];
/** [from client?, message or raw bytes, seconds since the first frame] */
type Step = [boolean, Msg | Buffer, number?];

const tok = (h: string): Buffer => Buffer.from(h, 'hex');
const uint = (n: number): Buffer => {
  const bytes: number[] = [];
  for (; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from(bytes);
};
const path = (p: string) => ({ number: 11, value: Buffer.from(p) });
const observe = (n: number) => ({ number: 6, value: uint(n) });
const block1 = (num: number, more: boolean, szx = 1) => ({
  number: 27,
  value: uint(num * 16 + (more ? 8 : 0) + szx),
});
const get = (mid: number, t: string, extra: Msg['options'] = []): Msg => ({
  type: 0,
  code: 1,
  messageId: mid,
  token: tok(t),
  options: [path('a'), ...(extra ?? [])],
});
const content = (type: MessageType, mid: number, t: string, options: Msg['options'] = []): Msg => ({
  type,
  code: 69,
  messageId: mid,
  token: tok(t),
  options,
  payload: Buffer.from('x'),
});
const empty = (type: MessageType, mid: number): Msg => ({ type, code: 0, messageId: mid });

function capture(steps: Step[], port = SP): Buffer {
  return pcap(
    steps.map(([fromClient, m, t = 0], i) => {
      const bytes = Buffer.isBuffer(m) ? m : encodeMessage(m);
      return {
        data: fromClient ? udpFrame(C, CP, S, port, bytes) : udpFrame(S, port, C, CP, bytes),
        sec: 1_700_000_000 + Math.floor(t),
        frac: Math.round((t % 1) * 1e6) + i,
      };
    }),
    { linkType: 1 },
  );
}

/** [frame, rule] of every finding. */
const findings = (r: DissectResult): [number, string][] =>
  r.frames.flatMap((f) => f.expert.map((e): [number, string] => [f.number, e.rule]));

const cases: {
  rule: string;
  steps: Step[];
  expect: [number, string][];
  also?: (r: DissectResult) => void;
}[] = [
  {
    rule: 'coap.empty-with-content',
    steps: [
      [true, get(1, '01')],
      [false, Buffer.from([0x71, 0x00, 0x00, 0x01, 0x01])],
    ],
    expect: [[2, 'coap.empty-with-content']],
    also: (r) => assert.match(r.frames[1]?.errors[0] ?? '', /not a valid CoAP message/),
  },
  {
    rule: 'coap.ack-carries-request',
    steps: [
      [true, get(1, '01')],
      [false, { type: 2, code: 1, messageId: 1, token: tok('01') }],
    ],
    expect: [[2, 'coap.ack-carries-request']],
  },
  {
    rule: 'coap.rst-not-empty',
    steps: [
      [true, get(1, '01')],
      [false, content(3, 1, '01')],
    ],
    expect: [[2, 'coap.rst-not-empty']],
  },
  {
    rule: 'coap.non-empty-message',
    steps: [
      [true, get(1, '01')],
      [false, content(2, 1, '01')],
      [true, empty(1, 2)],
    ],
    expect: [[3, 'coap.non-empty-message']],
  },
  {
    rule: 'coap.ack-of-non',
    steps: [
      [true, { ...get(7, '07'), type: 1 }],
      [false, empty(2, 7)],
      [false, content(1, 900, '07')],
    ],
    expect: [[2, 'coap.ack-of-non']],
  },
  {
    rule: 'coap.mid-reused',
    steps: [
      [true, get(9, '09'), 0],
      [false, content(2, 9, '09'), 0.1],
      [true, { ...get(9, '0a'), options: [path('b')] }, 10],
      [false, content(2, 9, '0a'), 10.1],
      // Past EXCHANGE_LIFETIME (247 s) the Message ID may be used again.
      [true, { ...get(9, '0b'), options: [path('c')] }, 300],
      [false, content(2, 9, '0b'), 300.1],
    ],
    expect: [[3, 'coap.mid-reused']],
  },
  {
    rule: 'coap.reserved-code',
    steps: [
      [true, get(1, '01')],
      [true, { type: 0, code: 0x20, messageId: 2, token: tok('02') }],
    ],
    expect: [[2, 'coap.reserved-code']],
  },
  {
    rule: 'coap.option-length',
    steps: [
      [true, get(1, '01')],
      [false, content(2, 1, '01', [{ number: 12, value: Buffer.from([0, 0, 50]) }])],
    ],
    expect: [[2, 'coap.option-length']],
  },
  {
    rule: 'coap.option-repeated',
    steps: [
      [true, get(1, '01')],
      [
        false,
        content(2, 1, '01', [
          { number: 14, value: uint(60) },
          { number: 14, value: uint(30) },
        ]),
      ],
    ],
    expect: [[2, 'coap.option-repeated']],
  },
  {
    rule: 'coap.late-empty-ack',
    steps: [
      [true, get(20, '20')],
      [false, content(0, 500, '20')],
      [true, empty(2, 500)],
      [false, empty(2, 20)],
    ],
    expect: [[4, 'coap.late-empty-ack']],
    also: (r) =>
      assert.deepEqual(
        r.coap.exchanges[0]?.messages.map((m) => m.role),
        [
          'request',
          'separate response',
          'ACK of separate response',
          'empty ACK (after the separate response: reordered)',
        ],
      ),
  },
  {
    rule: 'coap.piggybacked-after-empty-ack',
    steps: [
      [true, get(21, '21')],
      [false, empty(2, 21)],
      [true, get(21, '21')],
      [false, content(2, 21, '21')],
    ],
    expect: [[4, 'coap.piggybacked-after-empty-ack']],
  },
  {
    rule: 'coap.unmatched-response',
    steps: [
      [true, get(31, '31')],
      [false, content(2, 31, '32')],
      [false, content(1, 700, 'ff')],
    ],
    expect: [
      [2, 'coap.unmatched-response'],
      [3, 'coap.unmatched-response'],
    ],
    also: (r) => {
      assert.match(r.frames[1]?.expert[0]?.message ?? '', /acknowledges request #1 by MID but its token 32/);
      assert.match(r.frames[2]?.expert[0]?.message ?? '', /token ff matches no request/);
    },
  },
  {
    rule: 'observe.not-fresh',
    steps: [
      [true, get(40, '40', [observe(0)]), 0],
      [false, content(2, 40, '40', [observe(10)]), 0.1],
      [false, content(1, 600, '40', [observe(12)]), 1],
      [false, content(1, 601, '40', [observe(11)]), 2],
      // More than 128 s later any value is fresh (RFC 7641 §3.4).
      [false, content(1, 602, '40', [observe(5)]), 200],
      [false, content(1, 603, '40', [observe(6)]), 201],
    ],
    expect: [[4, 'observe.not-fresh']],
  },
  {
    rule: 'block.continue-without-block1',
    steps: [
      [
        true,
        {
          type: 0,
          code: 3,
          messageId: 50,
          token: tok('50'),
          options: [path('fw'), block1(0, true)],
          payload: Buffer.alloc(32),
        },
      ],
      [false, { type: 2, code: 95, messageId: 50, token: tok('50') }],
      [
        true,
        {
          type: 0,
          code: 2,
          messageId: 51,
          token: tok('51'),
          options: [path('x')],
          payload: Buffer.from('y'),
        },
      ],
      [false, { type: 2, code: 95, messageId: 51, token: tok('51'), options: [block1(0, true)] }],
    ],
    expect: [
      [2, 'block.continue-without-block1'],
      [4, 'block.continue-without-block1'],
    ],
  },
  {
    rule: 'block.out-of-sequence',
    steps: [
      [
        true,
        {
          type: 0,
          code: 3,
          messageId: 60,
          token: tok('60'),
          options: [path('fw'), block1(0, true)],
          payload: Buffer.alloc(32),
        },
      ],
      [false, { type: 2, code: 95, messageId: 60, token: tok('60'), options: [block1(0, true)] }],
      [
        true,
        {
          type: 0,
          code: 3,
          messageId: 61,
          token: tok('61'),
          options: [path('fw'), block1(2, true)],
          payload: Buffer.alloc(32),
        },
      ],
      [false, { type: 2, code: 136, messageId: 61, token: tok('61') }],
    ],
    expect: [[3, 'block.out-of-sequence']],
  },
  {
    rule: 'block.size-mismatch',
    steps: [
      [
        true,
        {
          type: 0,
          code: 3,
          messageId: 70,
          token: tok('70'),
          options: [path('fw'), block1(0, true)],
          payload: Buffer.alloc(20),
        },
      ],
      [false, { type: 2, code: 95, messageId: 70, token: tok('70'), options: [block1(0, true)] }],
    ],
    expect: [[1, 'block.size-mismatch']],
  },
];

describe('dissect expert info: each rule fires on a crafted capture', () => {
  it('every rule has a test case, a severity and an RFC section', () => {
    assert.deepEqual(cases.map((c) => c.rule).sort(), EXPERT_RULES.map((r) => r.id).sort());
    for (const r of EXPERT_RULES) assert.match(r.rfc, /^RFC (7252|7641|7959) §\d/);
  });

  for (const c of cases) {
    it(c.rule, () => {
      const r = dissect(capture(c.steps));
      assert.equal(r.error, undefined);
      assert.deepEqual(findings(r), c.expect);
      const e = r.frames[(c.expect[0]?.[0] ?? 0) - 1]?.expert[0];
      assert.ok(e);
      assert.equal(e.severity, EXPERT_RULES.find((x) => x.id === c.rule)?.severity);
      assert.equal(e.rfc, EXPERT_RULES.find((x) => x.id === c.rule)?.rfc);
      c.also?.(r);
      // The same on the well-known port (detected by port, not content).
      assert.deepEqual(findings(dissect(capture(c.steps, 5683))), c.expect);
    });
  }
});

describe('dissect expert info does not fire on normal traffic', () => {
  const dir = (f: string): string => fileURLToPath(new URL(`../vectors/captures/${f}`, import.meta.url));
  const captures: [string, Uint8Array, DissectOptions, number][] = [
    [
      'golioth_basics_psk.pcapng',
      readFileSync(dir('golioth_basics_psk.pcapng')),
      { psk: Buffer.from('69af1685ba9080be907922728c1e97c5') },
      64,
    ],
    ['scenario (crafted)', scenarioCapture(), {}, 20],
    ['libcoap_notls.pcapng', readFileSync(dir('libcoap/libcoap_notls.pcapng')), {}, 26],
    ['psk_ccm8.pcapng', readFileSync(dir('openssl/psk_ccm8.pcapng')), { psk: Buffer.from('secretPSK') }, 1],
    [
      'ecdhe_psk_chacha20.pcapng',
      readFileSync(dir('openssl/ecdhe_psk_chacha20.pcapng')),
      { keylog: readFileSync(dir('openssl/ecdhe_psk_chacha20.keylog'), 'utf8') },
      1,
    ],
  ];
  for (const [name, bytes, opts, n] of captures) {
    it(name, () => {
      const r = dissect(bytes, opts);
      assert.equal(r.coap.messages.length, n);
      assert.deepEqual(findings(r), []);
      assert.doesNotMatch(renderText(r), /expert/);
      assert.ok(JSON.parse(renderJson(r)).frames.every((f: { expert: unknown[] }) => f.expert.length === 0));
    });
  }
});

describe('dissect expert info in the output', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'coapkit-expert-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));
  const run = async (args: string[]): Promise<{ code: number; out: string }> => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    stdout.on('data', (d) => {
      out += d;
    });
    stderr.resume();
    const code = await runDissect(args, { stdout, stderr, isTTY: false });
    return { code, out };
  };
  // A block-wise PUT to a path holding terminal escapes, with a gap in the blocks.
  const evil = '\x1b[2J\u202e/fw';
  const steps: Step[] = [
    [
      true,
      {
        type: 0,
        code: 3,
        messageId: 60,
        token: tok('60'),
        options: [path(evil), block1(0, true)],
        payload: Buffer.alloc(32),
      },
    ],
    [false, { type: 2, code: 95, messageId: 60, token: tok('60'), options: [block1(0, true)] }],
    [
      true,
      {
        type: 0,
        code: 3,
        messageId: 61,
        token: tok('61'),
        options: [path(evil), block1(2, true)],
        payload: Buffer.alloc(32),
      },
    ],
    [false, { type: 2, code: 1, messageId: 61, token: tok('61') }],
  ];
  const file = join(tmp, 'expert.pcap');
  writeFileSync(file, capture(steps));

  it('text: a marked line under the message and a summary section, escaped', async () => {
    const { code, out } = await run([file]);
    assert.equal(code, 0);
    assert.doesNotMatch(out, /[\x1b\u202e]/);
    const under =
      /#3 \S+ CON MID=61 .*\n(?: {4,}.*\n)* {4,}\[expert warning\] block\.out-of-sequence: Block1 block 2 \(byte 64\) of PUT \/\\x1b\[2J\\u202e\/fw where byte 32 comes next; the server answers 4\.08 Request Entity Incomplete \(RFC 7959 §2\.4, §2\.5\)/;
    assert.match(out, under);
    assert.match(out, /5\. Expert info: 1 error\(s\), 1 warning\(s\), 0 note\(s\)/);
    assert.match(out, /\n#4 \[expert error\] coap\.ack-carries-request: ACK carries a request \(GET\)/);
    assert.match(out, /\n#3 \[expert warning\] block\.out-of-sequence: /);
  });

  it('--json: an expert array per frame with severity, rule, message, RFC section', async () => {
    const { out } = await run([file, '--json']);
    assert.doesNotMatch(out, /[\x1b\u202e]/);
    const j = JSON.parse(out);
    assert.deepEqual(j.frames[0].expert, []);
    assert.deepEqual(j.frames[3].expert, [
      {
        severity: 'error',
        rule: 'coap.ack-carries-request',
        message: 'ACK carries a request (GET); an ACK carries a response or is Empty',
        rfc: 'RFC 7252 §4.2',
        coapMessage: 3,
      },
    ]);
    assert.equal(j.frames[2].expert[0].rule, 'block.out-of-sequence');
    assert.ok(j.frames[2].expert[0].message.includes('\u202e'));
  });
});
