/**
 * Differential property test: our message codec against an independent
 * implementation, the `coap-packet` npm package (dev dependency).
 *
 * - everything we encode, coap-packet parses to the same fields;
 * - every datagram we accept, coap-packet parses to the same fields;
 * - coap-packet's own encodings of valid messages decode to the same fields here.
 *
 * coap-packet is more lenient (it accepts truncated options, an empty payload
 * after the marker and RFC 8974 extended tokens), so datagrams it accepts and
 * we reject are not compared.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generate, parse } from 'coap-packet';
import fc from 'fast-check';
import {
  type CoapMessage,
  decodeMessage,
  type EncodableMessage,
  encodeMessage,
} from '../../src/codec/message.js';
import { formatCode } from '../../src/constants/codes.js';

const FILE_BUDGET_MS = 12_000;
const PER_PROPERTY_MS = process.env.CI ? 5_000 : 4_000;
const fileStart = Date.now();

function params(numRuns: number): fc.Parameters<unknown> {
  const left = FILE_BUDGET_MS - (Date.now() - fileStart);
  const p: fc.Parameters<unknown> = {
    numRuns,
    interruptAfterTimeLimit: Math.max(500, Math.min(PER_PROPERTY_MS, left)),
  };
  if (process.env.FC_SEED !== undefined) p.seed = Number(process.env.FC_SEED);
  if (process.env.FC_PATH !== undefined) p.path = process.env.FC_PATH;
  return p;
}

/** coap-packet's option names (index.js OPTIONS_BY_NAME). */
const THEIR_NAMES: Record<string, number> = {
  'If-Match': 1,
  'Uri-Host': 3,
  ETag: 4,
  'If-None-Match': 5,
  Observe: 6,
  'Uri-Port': 7,
  'Location-Path': 8,
  OSCORE: 9,
  'Uri-Path': 11,
  'Content-Format': 12,
  'Max-Age': 14,
  'Uri-Query': 15,
  'Hop-Limit': 16,
  Accept: 17,
  'Q-Block1': 19,
  'Location-Query': 20,
  Block2: 23,
  Block1: 27,
  Size2: 28,
  'Q-Block2': 31,
  'Proxy-Uri': 35,
  'Proxy-Scheme': 39,
  Size1: 60,
  'No-Response': 258,
  'OCF-Accept-Content-Format-Version': 2049,
  'OCF-Content-Format-Version': 2053,
};
const numberOf = (name: string | number): number =>
  typeof name === 'number' ? name : (THEIR_NAMES[name] ?? Number.parseInt(name, 10));

interface Fields {
  type: number;
  code: string;
  messageId: number;
  token: string;
  options: Array<[number, string]>;
  payload: string;
}

function ours(m: CoapMessage): Fields {
  return {
    type: m.type,
    code: formatCode(m.code),
    messageId: m.messageId,
    token: m.token.toString('hex'),
    options: m.options.map((o) => [o.number, o.value.toString('hex')]),
    payload: m.payload.toString('hex'),
  };
}

function theirs(bytes: Buffer): Fields {
  const p = parse(bytes);
  return {
    type: p.confirmable ? 0 : p.ack ? 2 : p.reset ? 3 : 1,
    code: p.code,
    messageId: p.messageId,
    token: p.token.toString('hex'),
    options: p.options.map((o) => [numberOf(o.name), o.value.toString('hex')]),
    payload: p.payload.toString('hex'),
  };
}

const option = fc.record({
  number: fc.oneof(
    fc.constantFrom(1, 3, 4, 11, 12, 13, 14, 268, 269, 270, 65535),
    fc.integer({ min: 0, max: 65535 }),
  ),
  value: fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ maxLength: 14 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 265, maxLength: 275 }) },
  ),
});
const message: fc.Arbitrary<EncodableMessage> = fc.oneof(
  {
    weight: 9,
    arbitrary: fc.record({
      type: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<0 | 1 | 2 | 3>,
      code: fc.integer({ min: 1, max: 255 }),
      messageId: fc.integer({ min: 0, max: 0xffff }),
      token: fc.uint8Array({ maxLength: 8 }),
      options: fc.array(option, { maxLength: 6 }),
      payload: fc.uint8Array({ maxLength: 30 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<0 | 1 | 2 | 3>,
      code: fc.constant(0),
      messageId: fc.integer({ min: 0, max: 0xffff }),
    }),
  },
);

describe('differential: coap-packet', () => {
  it('Appendix A Figure 17 agrees (sanity check of the harness)', () => {
    const bytes = Buffer.from('4101 7d35 20 bb 74656d7065726174757265'.replace(/ /g, ''), 'hex');
    assert.deepEqual(theirs(bytes), ours(decodeMessage(bytes)));
    assert.deepEqual(theirs(bytes).options, [[11, Buffer.from('temperature').toString('hex')]]);
  });

  it('coap-packet parses everything we encode to the same fields', () => {
    fc.assert(
      fc.property(message, (m) => {
        const bytes = encodeMessage(m);
        assert.deepEqual(theirs(bytes), ours(decodeMessage(bytes)));
      }),
      params(4000),
    );
  });

  it('every datagram we accept, coap-packet parses the same way', () => {
    const datagram = fc.oneof(
      message.map((m) => encodeMessage(m)),
      fc
        .tuple(
          fc.integer({ min: 0x40, max: 0x7f }),
          fc.integer({ min: 0, max: 255 }),
          fc.uint8Array({ minLength: 2, maxLength: 2 }),
          fc.uint8Array({ maxLength: 40 }),
        )
        .map(([b0, c, mid, rest]) => Buffer.from([b0, c, ...mid, ...rest])),
    );
    let compared = 0;
    let runs = 0;
    fc.assert(
      fc.property(datagram, (bytes) => {
        runs++;
        let m: CoapMessage;
        try {
          m = decodeMessage(bytes);
        } catch {
          return;
        }
        compared++;
        assert.deepEqual(theirs(bytes), ours(m));
      }),
      params(6000),
    );
    assert.ok(compared >= runs / 4, `compared ${compared}/${runs}`);
  });

  it("coap-packet's encodings of valid messages decode to the same fields here", () => {
    const typeFlags = [{ confirmable: true }, {}, { ack: true }, { reset: true }] as const;
    fc.assert(
      fc.property(message, (m) => {
        // coap-packet wants sorted options and has no way to say "code 0.00 with a payload" — both fine here.
        const sorted = [...(m.options ?? [])].sort((a, b) => a.number - b.number);
        const bytes = generate(
          {
            ...typeFlags[m.type],
            code: formatCode(m.code),
            messageId: m.messageId,
            token: Buffer.from(m.token ?? []),
            options: sorted.map((o) => ({ name: o.number, value: Buffer.from(o.value) })),
            payload: Buffer.from(m.payload ?? []),
          },
          70_000,
        );
        const d = decodeMessage(bytes);
        assert.deepEqual(ours(d), theirs(encodeMessage(m)));
        assert.deepEqual(encodeMessage(d), bytes, 'byte-identical encodings');
      }),
      params(3000),
    );
  });
});
