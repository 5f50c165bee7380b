/**
 * Deterministic mutation fuzzing of the decoders. Seeds are encodings of
 * every message type and every registered option kind (plus option
 * number/length boundaries); mutations are bit flips, interesting bytes,
 * truncation, insertion, deletion, duplication and splicing. The PRNG is
 * seeded, so every run sees the same inputs (set FUZZ_SEED to explore others).
 *
 * Invariants: decoders return or throw their typed error (MessageFormatError,
 * UriError, LinkFormatError) and nothing else; an accepted datagram
 * re-encodes to exactly the same bytes; option helpers never throw anything
 * but OptionError on decoded options.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filterLinks, parseLinkFormat } from '../../src/codec/link-format.js';
import {
  type CoapMessage,
  decodeMessage,
  type EncodableMessage,
  encodeMessage,
} from '../../src/codec/message.js';
import {
  checkOptions,
  decodeBlock,
  formatOptionValue,
  getUintOption,
  optionValue,
} from '../../src/codec/options.js';
import { formatUri, optionsToUri, parseUri, uriToOptions } from '../../src/codec/uri.js';
import { ALL_OPTION_DEFINITIONS } from '../../src/constants/options.js';
import { LinkFormatError, MessageFormatError, OptionError, UriError } from '../../src/errors.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
const TIME_LIMIT_MS = 6_000;

/** mulberry32: small, fast, deterministic. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)]!,
  };
}

// ------------------------------------------------------------------- seeds

function sampleValue(format: string, min: number, max: number): Array<string | number | Uint8Array | null> {
  switch (format) {
    case 'empty':
      return [null];
    case 'uint':
      return [0, 1, 255, 256, ...(max >= 3 ? [65536] : []), ...(max >= 4 ? [0xffffffff] : [])].filter(
        (n) => n < 2 ** (8 * max),
      );
    case 'string':
      return [...(min === 0 ? [''] : []), 'a', 'temperature', 'é/ü?&', 'x'.repeat(Math.min(max, 270))];
    default:
      return [...(min === 0 ? [null] : []), new Uint8Array([1]), new Uint8Array(Math.min(max, 8)).fill(0xab)];
  }
}

function seeds(): Buffer[] {
  const out: EncodableMessage[] = [];
  // Every message type, empty and not.
  for (const type of [0, 1, 2, 3] as const) {
    out.push({ type, code: 0, messageId: 0x7d34 });
    out.push({
      type,
      code: 0x45,
      messageId: 0xad7b,
      token: Buffer.from([0x53]),
      payload: Buffer.from('22.3 C'),
    });
  }
  // Every registered option, with values of each kind its format allows.
  for (const def of ALL_OPTION_DEFINITIONS) {
    for (const v of sampleValue(def.format, def.minLength, def.maxLength)) {
      let value: Buffer;
      try {
        value = optionValue(def.number, v);
      } catch (e) {
        if (e instanceof OptionError) continue;
        throw e;
      }
      out.push({
        type: 0,
        code: 1,
        messageId: def.number,
        token: Buffer.from([1, 2, 3, 4]),
        options: [{ number: def.number, value }],
      });
    }
  }
  // Several options with repeats and a payload.
  out.push({
    type: 1,
    code: 2,
    messageId: 1,
    token: Buffer.alloc(8, 0xee),
    options: [
      { number: 3, value: Buffer.from('example.com') },
      { number: 7, value: Buffer.from([0x16, 0x34]) },
      { number: 11, value: Buffer.from('a') },
      { number: 11, value: Buffer.from('b') },
      { number: 12, value: Buffer.from([50]) },
      { number: 15, value: Buffer.from('x=1') },
      { number: 23, value: Buffer.from([0x12]) },
      { number: 60, value: Buffer.from([4, 0]) },
    ],
    payload: Buffer.from('{"a":1}'),
  });
  // Delta and length boundaries.
  for (const n of [12, 13, 14, 268, 269, 270, 65535]) {
    out.push({ type: 0, code: 1, messageId: 2, options: [{ number: n, value: Buffer.alloc(0) }] });
  }
  for (const len of [12, 13, 268, 269, 300]) {
    out.push({ type: 0, code: 1, messageId: 3, options: [{ number: 2048, value: Buffer.alloc(len, 0x5a) }] });
  }
  return out.map(encodeMessage);
}

const INTERESTING = [
  0x00, 0x01, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x40, 0x48, 0x49, 0x7f, 0x80, 0xc0, 0xd0, 0xe0, 0xf0, 0xff,
];

function mutate(r: ReturnType<typeof prng>, input: Buffer, pool: readonly Buffer[]): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + r.int(3);
  for (let k = 0; k < rounds; k++) {
    const pos = b.length === 0 ? 0 : r.int(b.length);
    switch (r.int(8)) {
      case 0: // bit flip
        if (b.length > 0) b[pos] = b[pos]! ^ (1 << r.int(8));
        break;
      case 1: // interesting byte
        if (b.length > 0) b[pos] = r.pick(INTERESTING);
        break;
      case 2: // truncate
        b = b.subarray(0, r.int(b.length + 1));
        break;
      case 3: // insert random bytes
        b = Buffer.concat([
          b.subarray(0, pos),
          Buffer.from(
            Array.from({ length: 1 + r.int(4) }, () => (r.int(2) ? r.pick(INTERESTING) : r.int(256))),
          ),
          b.subarray(pos),
        ]);
        break;
      case 4: // delete a range
        b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + 1 + r.int(4))]);
        break;
      case 5: {
        // duplicate a slice
        const len = 1 + r.int(8);
        b = Buffer.concat([b.subarray(0, pos + len), b.subarray(pos, pos + len), b.subarray(pos + len)]);
        break;
      }
      case 6: {
        // splice with another seed
        const other = r.pick(pool);
        b = Buffer.concat([b.subarray(0, pos), other.subarray(r.int(other.length + 1))]);
        break;
      }
      default: // random byte
        if (b.length > 0) b[pos] = r.int(256);
    }
  }
  return b;
}

function exerciseOptions(m: CoapMessage): void {
  const all = new Set(ALL_OPTION_DEFINITIONS.map((d) => d.number));
  const check = checkOptions(m.options, all);
  assert.ok(Array.isArray(check.ignored));
  for (const o of m.options) {
    assert.equal(typeof formatOptionValue(o.number, o.value), 'string');
    const u = getUintOption(m.options, o.number);
    assert.ok(u === undefined || (Number.isInteger(u) && u >= 0));
    if (o.number === 23 || o.number === 27) {
      try {
        decodeBlock(o.value);
      } catch (e) {
        if (!(e instanceof OptionError)) throw e;
      }
    }
  }
}

describe('decodeMessage mutation fuzzing', () => {
  it('returns or throws MessageFormatError; accepted input re-encodes byte-identically', (t) => {
    const pool = seeds();
    assert.ok(pool.length > 60, `seed corpus size ${pool.length}`);
    for (const s of pool) decodeMessage(s); // every seed is valid
    const r = prng(SEED);
    const errorKinds = new Map<string, number>();
    let accepted = 0;
    let runs = 0;
    const start = Date.now();
    for (; runs < 150_000; runs++) {
      if ((runs & 1023) === 0 && Date.now() - start > TIME_LIMIT_MS) break;
      const input = mutate(r, r.pick(pool), pool);
      let m: CoapMessage;
      try {
        m = decodeMessage(input);
      } catch (e) {
        if (!(e instanceof MessageFormatError)) {
          assert.fail(`non-typed error for ${input.toString('hex')}: ${String(e)}`);
        }
        const kind = e.message.replace(/\d+/g, 'N');
        errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
        continue;
      }
      accepted++;
      const again = encodeMessage(m);
      if (!again.equals(input)) {
        assert.fail(`re-encoding differs: ${input.toString('hex')} -> ${again.toString('hex')}`);
      }
      exerciseOptions(m);
    }
    t.diagnostic(`${runs} mutations, ${accepted} accepted, ${errorKinds.size} error kinds`);
    assert.ok(runs >= 10_000, `ran ${runs} mutations`);
    assert.ok(accepted > runs / 20, `some mutations stay valid (${accepted}/${runs})`);
    // The mutations reach every kind of format error the decoder knows.
    const kinds = [...errorKinds.keys()].join('\n');
    for (const re of [
      /too short/,
      /unsupported version/,
      /token length N is reserved/,
      /empty message/,
      /truncated token/,
      /payload marker/,
      /option delta N is reserved/,
      /option length N is reserved/,
      /truncated option (delta|length)/,
      /value truncated/,
      /exceeds N/,
    ]) {
      assert.match(kinds, re);
    }
  });
});

describe('parser mutation fuzzing (URIs, link format)', () => {
  it('parseUri throws only UriError; accepted URIs format and decompose without throwing', (t) => {
    const pool = [
      'coap://example.com:5683/~sensors/temp.xml',
      'coap://EXAMPLE.com:/%7esensors/temp.xml',
      'coaps://[fe80::1%25eth0]:5684/a/b/?x=1&y=%26',
      'coap://[2001:db8::2:1]/measure/temperature/',
      'coap://198.51.100.1:61616//%2F//?%2F%2F&?%26',
      'coap://h/a/../b/./c?q',
      'coap+tcp://xn--18j4d.example/%E3%81%93',
    ].map((s) => Buffer.from(s, 'latin1'));
    const r = prng(SEED + 1);
    const start = Date.now();
    let accepted = 0;
    let runs = 0;
    for (; runs < 30_000 && Date.now() - start < 3000; runs++) {
      const s = mutate(r, r.pick(pool), pool).toString('latin1');
      try {
        const u = parseUri(s);
        accepted++;
        const f = formatUri(u);
        assert.equal(formatUri(parseUri(f)), f, s);
        optionsToUri(uriToOptions(u), u.scheme, { address: u.host, port: u.port });
      } catch (e) {
        if (!(e instanceof UriError)) assert.fail(`non-typed error for ${JSON.stringify(s)}: ${String(e)}`);
      }
    }
    t.diagnostic(`${runs} mutations, ${accepted} accepted`);
    assert.ok(accepted > 100 && accepted < runs, `accepted ${accepted}/${runs}`);
  });

  it('parseLinkFormat throws only LinkFormatError', (t) => {
    const pool = [
      '</sensors>;ct=40;title="Sensor Index",</sensors/temp>;rt="temperature-c";if="sensor"',
      '<http://www.example.com/sensors/t123>;anchor="/sensors/temp";rel="describedby",</t>;obs',
      '</firmware/v2.1>;rt="firmware";sz=262144;title="a \\"q\\""',
    ].map((s) => Buffer.from(s, 'latin1'));
    const r = prng(SEED + 2);
    const start = Date.now();
    let accepted = 0;
    let runs = 0;
    for (; runs < 30_000 && Date.now() - start < 3000; runs++) {
      const s = mutate(r, r.pick(pool), pool).toString('latin1');
      try {
        const links = parseLinkFormat(s);
        accepted++;
        filterLinks(links, 'rt=temp*');
        filterLinks(links, 'href=/sensors/*');
      } catch (e) {
        if (!(e instanceof LinkFormatError))
          assert.fail(`non-typed error for ${JSON.stringify(s)}: ${String(e)}`);
      }
    }
    t.diagnostic(`${runs} mutations, ${accepted} accepted`);
    assert.ok(accepted > 100 && accepted < runs, `accepted ${accepted}/${runs}`);
  });
});
