/**
 * Property tests (fast-check) for the codec. Each property is bounded by a
 * run count and a time limit, and the whole file by a shared budget so it
 * stays well under 30 s even on a slow CI machine. On failure fast-check
 * prints the seed and counterexample path; rerun with FC_SEED=<seed> (and
 * FC_PATH=<path>) to replay it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { filterLinks, type Link, parseLinkFormat, serializeLinkFormat } from '../../src/codec/link-format.js';
import {
  type CoapMessage,
  decodeMessage,
  type EncodableMessage,
  encodeMessage,
} from '../../src/codec/message.js';
import { checkOptions, decodeBlock, decodeUint, encodeBlock, encodeUint } from '../../src/codec/options.js';
import { type CoapUri, formatUri, optionsToUri, parseUri, uriToOptions } from '../../src/codec/uri.js';
import { ALL_OPTION_DEFINITIONS, isCritical, optionDefinition } from '../../src/constants/options.js';
import { LinkFormatError, MessageFormatError, UriError } from '../../src/errors.js';

const FILE_BUDGET_MS = 24_000;
const PER_PROPERTY_MS = process.env.CI ? 6_000 : 5_000;
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

// ---------------------------------------------------------------- messages

const BOUNDARY_NUMBERS = [0, 1, 12, 13, 14, 268, 269, 270, 524, 525, 65535];
const optionNumber = fc.oneof(
  fc.constantFrom(...ALL_OPTION_DEFINITIONS.map((d) => d.number)),
  fc.constantFrom(...BOUNDARY_NUMBERS),
  fc.integer({ min: 0, max: 65535 }),
);
const optionValueBytes = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 14 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 260, maxLength: 275 }) },
);
const option = fc.record({ number: optionNumber, value: optionValueBytes });

const nonEmptyMessage: fc.Arbitrary<EncodableMessage> = fc.record({
  type: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<0 | 1 | 2 | 3>,
  code: fc.integer({ min: 1, max: 255 }),
  messageId: fc.integer({ min: 0, max: 0xffff }),
  token: fc.uint8Array({ maxLength: 8 }),
  options: fc.array(option, { maxLength: 8 }),
  payload: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 1, maxLength: 40 })),
});
const emptyMessage: fc.Arbitrary<EncodableMessage> = fc.record({
  type: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<0 | 1 | 2 | 3>,
  code: fc.constant(0),
  messageId: fc.integer({ min: 0, max: 0xffff }),
});
const anyMessage = fc.oneof(
  { weight: 9, arbitrary: nonEmptyMessage },
  { weight: 1, arbitrary: emptyMessage },
);

const stableSorted = <T extends { number: number }>(a: readonly T[]): T[] =>
  a
    .map((o, i) => [o, i] as const)
    .sort((x, y) => x[0].number - y[0].number || x[1] - y[1])
    .map(([o]) => o);

function plain(m: CoapMessage) {
  return {
    type: m.type,
    code: m.code,
    messageId: m.messageId,
    token: Buffer.from(m.token).toString('hex'),
    options: m.options.map((o) => [o.number, Buffer.from(o.value).toString('hex')]),
    payload: Buffer.from(m.payload).toString('hex'),
  };
}

/** Bytes that look like CoAP often enough to get past the header checks. */
const datagram = fc.oneof(
  fc.uint8Array({ maxLength: 48 }),
  fc
    .tuple(
      fc.integer({ min: 0x40, max: 0x7f }),
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ minLength: 2, maxLength: 2 }),
      fc.array(
        fc.oneof(
          fc.integer({ min: 0, max: 255 }),
          fc.constantFrom(0xff, 0xd0, 0xe0, 0x0d, 0x0e, 0xdd, 0xee, 0x0f, 0xf0),
        ),
        { maxLength: 40 },
      ),
    )
    .map(([b0, code, mid, rest]) => Uint8Array.from([b0, code, ...mid, ...rest])),
  anyMessage.map((m) => new Uint8Array(encodeMessage(m))),
);

describe('message codec properties', () => {
  it('encode → decode round trip (options sorted, repeated kept in order)', () => {
    fc.assert(
      fc.property(anyMessage, (m) => {
        const bytes = encodeMessage(m);
        const d = decodeMessage(bytes);
        assert.deepEqual(plain(d), {
          type: m.type,
          code: m.code,
          messageId: m.messageId,
          token: Buffer.from(m.token ?? []).toString('hex'),
          options: stableSorted(m.options ?? []).map((o) => [o.number, Buffer.from(o.value).toString('hex')]),
          payload: Buffer.from(m.payload ?? []).toString('hex'),
        });
        // The option order given by the caller does not change the bytes.
        assert.deepEqual(encodeMessage({ ...m, options: stableSorted(m.options ?? []) }), bytes);
      }),
      params(5000),
    );
  });

  it('decode of arbitrary bytes returns a message or throws MessageFormatError, nothing else', () => {
    fc.assert(
      fc.property(datagram, (bytes) => {
        try {
          const m = decodeMessage(bytes);
          assert.ok(m.type >= 0 && m.type <= 3);
          assert.ok(m.token.length <= 8);
        } catch (e) {
          if (!(e instanceof MessageFormatError)) throw e;
        }
      }),
      params(10000),
    );
  });

  it('decode → encode is the identity on accepted datagrams, and decode again is stable', () => {
    fc.assert(
      fc.property(datagram, (bytes) => {
        let m: CoapMessage;
        try {
          m = decodeMessage(bytes);
        } catch {
          return;
        }
        const again = encodeMessage(m);
        assert.deepEqual(again, Buffer.from(bytes), 'the CoAP encoding is unique');
        assert.deepEqual(plain(decodeMessage(again)), plain(m));
      }),
      params(10000),
    );
  });

  it('checkOptions (§5.4): critical problems are odd, ignored ones even, good options never reported', () => {
    fc.assert(
      fc.property(
        fc.array(option, { maxLength: 8 }),
        fc.array(optionNumber, { maxLength: 12 }),
        (opts, recognizedList) => {
          const options = stableSorted(opts).map((o) => ({ number: o.number, value: Buffer.from(o.value) }));
          const recognized = new Set(recognizedList);
          const r = checkOptions(options, recognized);
          if (r.badCritical !== undefined) {
            assert.ok(isCritical(r.badCritical));
            assert.ok(options.some((o) => o.number === r.badCritical));
          }
          for (const n of r.ignored) assert.ok(!isCritical(n), `ignored ${n} must be elective`);
          // The first occurrence of a recognized option with a valid length is always accepted.
          const seen = new Set<number>();
          const reported = new Set([...r.ignored, ...(r.badCritical === undefined ? [] : [r.badCritical])]);
          const lengthOkOf = (o: { number: number; value: Buffer }) => {
            const d = optionDefinition(o.number);
            return !d || (o.value.length >= d.minLength && o.value.length <= d.maxLength);
          };
          // `ignored` lists numbers, so a number with another, malformed occurrence is reported for that one.
          const malformedNumbers = new Set(options.filter((o) => !lengthOkOf(o)).map((o) => o.number));
          for (const o of options) {
            const first = !seen.has(o.number);
            seen.add(o.number);
            const def = optionDefinition(o.number);
            const lengthOk = lengthOkOf(o) && !malformedNumbers.has(o.number);
            if (first && recognized.has(o.number) && lengthOk && !isCritical(o.number)) {
              assert.ok(!reported.has(o.number) || (def !== undefined && !def.repeatable), `${o.number}`);
            }
            if (!recognized.has(o.number) && !isCritical(o.number)) assert.ok(r.ignored.includes(o.number));
          }
          // An unrecognized critical option always makes the check fail.
          if (options.some((o) => isCritical(o.number) && !recognized.has(o.number))) {
            assert.notEqual(r.badCritical, undefined);
          }
        },
      ),
      params(3000),
    );
  });

  it('uint and block values round trip with minimal length', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xfffff }),
        fc.boolean(),
        fc.integer({ min: 0, max: 6 }),
        (n, num, more, szx) => {
          const u = encodeUint(n);
          assert.equal(decodeUint(u), n);
          assert.equal(u.length, n === 0 ? 0 : Math.ceil(Math.log2(n + 1) / 8));
          assert.ok(u.length === 0 || u[0] !== 0, 'no leading zero byte');
          assert.deepEqual(decodeBlock(encodeBlock(num, more, szx)), { num, more, szx, size: 16 << szx });
        },
      ),
      params(5000),
    );
  });
});

// --------------------------------------------------------------------- URIs

const UNRESERVED = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~';
const SUB_DELIMS = "!$&'()*+,;=";
const pctByte = fc.integer({ min: 0, max: 255 }).map((b) => `%${b.toString(16).padStart(2, '0')}`);
const textChunk = fc.oneof(
  fc.constantFrom(...UNRESERVED.split('')),
  fc.constantFrom(...SUB_DELIMS.split(''), ':', '@'),
  fc.string({ unit: 'grapheme', maxLength: 2 }).map(encodeURIComponent),
  pctByte,
);
const text = (max: number) => fc.array(textChunk, { maxLength: max }).map((a) => a.join(''));
const segment = fc.oneof(
  { weight: 8, arbitrary: text(8) },
  { weight: 1, arbitrary: fc.constantFrom('.', '..', '%2E', '%2e%2E') },
);
const regName = fc.oneof(
  fc.domain(),
  fc
    .array(fc.oneof(fc.constantFrom(...UNRESERVED.split(''), ...SUB_DELIMS.split('')), pctByte), {
      minLength: 1,
      maxLength: 10,
    })
    .map((a) => a.join('')),
);
const host = fc.oneof(
  regName,
  fc.ipV4(),
  fc.ipV6().map((a) => `[${a}]`),
  fc.tuple(fc.ipV6(), fc.stringMatching(/^[a-z0-9]{1,6}$/)).map(([a, z]) => `[${a}%25${z}]`),
);
const uriString = fc
  .record({
    scheme: fc.constantFrom('coap', 'coaps', 'COAP', 'coap+tcp'),
    host,
    port: fc.option(fc.oneof(fc.integer({ min: 0, max: 65535 }).map(String), fc.constant('')), {
      nil: undefined,
    }),
    path: fc.array(segment, { maxLength: 5 }),
    slash: fc.boolean(),
    query: fc.option(
      fc.array(
        text(6).map((q) => q.replace(/&/g, '%26')),
        { maxLength: 4 },
      ),
      { nil: undefined },
    ),
  })
  .map(
    (u) =>
      `${u.scheme}://${u.host}${u.port === undefined ? '' : `:${u.port}`}` +
      `${u.path.length > 0 ? `/${u.path.join('/')}` : u.slash ? '/' : ''}` +
      `${u.query === undefined ? '' : `?${u.query.join('&')}`}`,
  );
const uriInput = fc.oneof(
  { weight: 4, arbitrary: uriString },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((s) => `coap://${s}`) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);

const sansPort = (u: CoapUri) => ({ ...u, explicitPort: false });

describe('URI properties', () => {
  it('parseUri throws only UriError; parse → format → parse is a fixed point', () => {
    let accepted = 0;
    let runs = 0;
    fc.assert(
      fc.property(uriInput, (s) => {
        runs++;
        let u1: CoapUri;
        try {
          u1 = parseUri(s);
        } catch (e) {
          if (!(e instanceof UriError)) throw e;
          return;
        }
        accepted++;
        const f1 = formatUri(u1);
        const u2 = parseUri(f1);
        assert.deepEqual(sansPort(u2), sansPort(u1), `${s} -> ${f1}`);
        assert.equal(formatUri(u2), f1);
        // §6.4 then §6.5 composes the same URI back.
        const opts = uriToOptions(u1, u1.port);
        assert.equal(optionsToUri(opts, u1.scheme, { address: u1.host, port: u1.port }), f1, s);
        assert.deepEqual(uriToOptions(u2, u1.port), opts);
      }),
      params(5000),
    );
    // Guard against a generator that only produces rejected input (checked as a ratio,
    // since the time limit may cut the run short on a loaded machine).
    assert.ok(accepted >= runs / 10, `generator should produce enough valid URIs (${accepted}/${runs})`);
  });
});

// -------------------------------------------------------------- link format

const tokenName = fc.stringMatching(/^[a-z][a-z0-9!#$&+\-.^_`|~]{0,8}\*?$/);
const attrValue = fc.oneof(
  fc.constant<true>(true),
  fc.string({ maxLength: 12 }),
  fc.stringMatching(/^[0-9]{1,6}$/),
);
const link: fc.Arbitrary<Link> = fc
  .record({
    target: fc.oneof(
      fc.webUrl(),
      fc
        .array(fc.stringMatching(/^[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,8}$/), { maxLength: 4 })
        .map((s) => `/${s.join('/')}`),
      fc.string({ maxLength: 10 }),
    ),
    attributes: fc.array(
      fc.oneof(
        fc.tuple(fc.constantFrom('rt', 'if', 'ct', 'sz', 'title', 'anchor', 'rel', 'obs'), attrValue),
        fc.tuple(tokenName, attrValue),
      ),
      { maxLength: 5 },
    ),
  })
  .map((l) => ({
    target: l.target,
    attributes: l.attributes.map(([n, v]) => [n, v] as [string, string | true]),
  }));

describe('link-format properties', () => {
  it('serialize → parse round trip (targets percent-encoded where they must be)', () => {
    let verbatim = 0;
    let runs = 0;
    fc.assert(
      fc.property(fc.array(link, { maxLength: 6 }), (links) => {
        runs++;
        const text = serializeLinkFormat(links);
        const expected = links.map((l) => ({
          target: l.target.replace(/[<>\s]/g, (c) => encodeURIComponent(c)),
          attributes: l.attributes,
        }));
        if (links.every((l) => !/[<>\s]/.test(l.target))) verbatim++;
        assert.deepEqual(parseLinkFormat(text), expected, text);
        assert.equal(serializeLinkFormat(parseLinkFormat(text)), text, 'serialization is a fixed point');
        assert.deepEqual(filterLinks(links, undefined), links);
      }),
      params(3000),
    );
    assert.ok(verbatim >= runs / 4, `most generated targets need no encoding (${verbatim}/${runs})`);
  });

  it('parseLinkFormat of arbitrary text returns links or throws LinkFormatError', () => {
    const chunk = fc.oneof(
      fc.constantFrom('<', '>', ';', ',', '=', '"', '\\', ' ', '\n', '*', '/a', 'rt', 'ct=40', '"x"', '</s>'),
      fc.string({ maxLength: 3 }),
    );
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 20 }), (parts) => {
        const s = parts.join('');
        try {
          const links = parseLinkFormat(s);
          // Whatever was accepted serializes and parses back to the same thing (when writable).
          let again: string | undefined;
          try {
            again = serializeLinkFormat(links);
          } catch (e) {
            if (!(e instanceof LinkFormatError)) throw e;
          }
          if (again !== undefined) assert.deepEqual(parseLinkFormat(again), links, `${s} -> ${again}`);
          for (const q of ['rt=x', 'href=/a*', 'ct=40', 'obs']) {
            const f = filterLinks(links, q);
            assert.ok(f.every((l) => links.includes(l)));
          }
        } catch (e) {
          if (!(e instanceof LinkFormatError)) throw e;
        }
      }),
      params(5000),
    );
  });
});
