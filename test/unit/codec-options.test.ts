/**
 * Option values and registries: RFC 7252 §3.2 formats, §5.4 option
 * handling, §5.10 definitions, §12 registries; RFC 7959 §2.2 block values.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  checkOptions,
  decodeBlock,
  decodeUint,
  encodeBlock,
  encodeUint,
  firstBadCritical,
  formatOptionValue,
  getOption,
  getOptions,
  getStringOptions,
  getUintOption,
  hasOption,
  optionValue,
  sizeToSzx,
} from '../../src/codec/options.js';
import {
  code,
  codeClass,
  codeName,
  describeCode,
  formatCode,
  isEmptyCode,
  isRequestCode,
  isResponseCode,
  Method,
  parseCode,
  ResponseCode,
} from '../../src/constants/codes.js';
import {
  CONTENT_FORMATS,
  ContentFormat,
  contentFormatName,
  isTextual,
  parseContentFormat,
} from '../../src/constants/content-formats.js';
import {
  ALL_OPTION_DEFINITIONS,
  isCritical,
  isNoCacheKey,
  isUnsafe,
  OptionNumber,
  optionByName,
  optionDefinition,
  optionName,
} from '../../src/constants/options.js';
import {
  DEFAULT_TRANSMISSION,
  deriveParameters,
  resolveParameters,
} from '../../src/constants/transmission.js';
import { OptionError } from '../../src/errors.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const o = (number: number, value: number[] | string = []) => ({
  number,
  value: typeof value === 'string' ? Buffer.from(value) : Buffer.from(value),
});

describe('uint values (§3.2)', () => {
  it('encodeUint is minimal and rejects out-of-range input', () => {
    assert.equal(hex(encodeUint(0)), '');
    assert.equal(hex(encodeUint(255)), 'ff');
    assert.equal(hex(encodeUint(256)), '0100');
    assert.equal(hex(encodeUint(0x123456)), '123456');
    assert.equal(hex(encodeUint(0xffffffff)), 'ffffffff');
    for (const bad of [-1, 1.5, 2 ** 32, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => encodeUint(bad), OptionError, String(bad));
    }
  });

  it('decodeUint tolerates leading zeros and rejects more than 4 bytes', () => {
    assert.equal(decodeUint(Buffer.alloc(0)), 0);
    assert.equal(decodeUint(Buffer.from([0, 0, 1, 0])), 256);
    assert.equal(decodeUint(Buffer.from([0xff, 0xff, 0xff, 0xff])), 0xffffffff);
    assert.throws(() => decodeUint(Buffer.alloc(5)), OptionError);
  });
});

describe('optionValue by format', () => {
  it('uint options take numbers and decimal strings', () => {
    assert.equal(hex(optionValue(OptionNumber.MaxAge, 60)), '3c');
    assert.equal(hex(optionValue(OptionNumber.MaxAge, '86400')), '015180');
    assert.equal(hex(optionValue(OptionNumber.ContentFormat, 0)), '');
    assert.equal(hex(optionValue(OptionNumber.UriPort, 61616)), 'f0b0');
    assert.throws(() => optionValue(OptionNumber.MaxAge, 'sixty'), OptionError);
    assert.throws(() => optionValue(OptionNumber.MaxAge, '-1'), OptionError);
    assert.throws(() => optionValue(OptionNumber.MaxAge, -1), OptionError);
    assert.throws(() => optionValue(OptionNumber.UriPort, 65536), OptionError, 'Uri-Port is at most 2 bytes');
    assert.throws(() => optionValue(OptionNumber.ContentFormat, 0x10000), OptionError);
  });

  it('string options take UTF-8 text and reject numbers', () => {
    assert.deepEqual(optionValue(OptionNumber.UriPath, 'température'), Buffer.from('température', 'utf8'));
    assert.equal(optionValue(OptionNumber.UriPath, '').length, 0);
    assert.throws(() => optionValue(OptionNumber.UriPath, 5), OptionError);
    assert.throws(() => optionValue(OptionNumber.UriHost, ''), OptionError, 'Uri-Host is 1-255 bytes');
    assert.throws(() => optionValue(OptionNumber.UriPath, 'x'.repeat(256)), OptionError);
    assert.equal(optionValue(OptionNumber.ProxyUri, `coap://${'a'.repeat(1027)}`).length, 1034);
    assert.throws(() => optionValue(OptionNumber.ProxyUri, `coap://${'a'.repeat(1028)}`), OptionError);
  });

  it('opaque options take bytes or 0x-hex strings', () => {
    assert.equal(hex(optionValue(OptionNumber.ETag, Buffer.from([0x8f, 0x7e]))), '8f7e');
    assert.equal(hex(optionValue(OptionNumber.ETag, '0x8F7E')), '8f7e');
    assert.equal(hex(optionValue(OptionNumber.ETag, 'ab')), '6162', 'a non-hex string is UTF-8');
    assert.throws(() => optionValue(OptionNumber.ETag, Buffer.alloc(9)), OptionError, 'ETag is 1-8 bytes');
    assert.throws(() => optionValue(OptionNumber.ETag, null), OptionError, 'ETag is at least 1 byte');
    assert.throws(() => optionValue(OptionNumber.ETag, 7), OptionError);
    assert.equal(optionValue(OptionNumber.IfMatch, null).length, 0, 'If-Match may be empty');
  });

  it('empty options take null only', () => {
    assert.equal(optionValue(OptionNumber.IfNoneMatch, null).length, 0);
    assert.equal(optionValue(OptionNumber.IfNoneMatch, '').length, 0);
    assert.throws(() => optionValue(OptionNumber.IfNoneMatch, 'x'), OptionError);
    assert.throws(() => optionValue(OptionNumber.IfNoneMatch, 1), OptionError);
  });

  it('unregistered options accept bytes, strings and numbers', () => {
    assert.equal(hex(optionValue(65001, 258)), '0102');
    assert.equal(hex(optionValue(65001, 'hi')), '6869');
    assert.equal(hex(optionValue(65001, new Uint8Array([1, 2, 3]))), '010203');
    assert.equal(optionValue(65001, null).length, 0);
  });

  it('a Uint8Array view is honoured (offset and length)', () => {
    const backing = new Uint8Array([9, 9, 1, 2, 9]);
    assert.equal(hex(optionValue(OptionNumber.ETag, backing.subarray(2, 4))), '0102');
  });
});

describe('option accessors', () => {
  const opts = [o(3, 'host'), o(11, 'a'), o(11, 'b'), o(12, [0x32]), o(14, [1, 0, 0, 0, 0])];
  it('getOption, getOptions, hasOption, getStringOptions, getUintOption', () => {
    assert.equal(getOption(opts, 3)?.toString(), 'host');
    assert.equal(getOption(opts, 11)?.toString(), 'a', 'first occurrence');
    assert.equal(getOption(opts, 4), undefined);
    assert.deepEqual(getOptions(opts, 11).map(String), ['a', 'b']);
    assert.deepEqual(getOptions(opts, 4), []);
    assert.ok(hasOption(opts, 12));
    assert.ok(!hasOption(opts, 13));
    assert.deepEqual(getStringOptions(opts, 11), ['a', 'b']);
    assert.equal(getUintOption(opts, 12), 50);
    assert.equal(getUintOption(opts, 14), undefined, 'a 5-byte uint is not a uint');
    assert.equal(getUintOption(opts, 60), undefined);
  });
});

describe('checkOptions (§5.4)', () => {
  const ALL = new Set(ALL_OPTION_DEFINITIONS.map((d) => d.number));

  it('§5.4.1: unrecognized critical options are reported, unrecognized elective ones ignored', () => {
    assert.deepEqual(
      checkOptions([o(11, 'x'), o(2049)], ALL),
      { badCritical: 2049, ignored: [] },
      '2049 unknown',
    );
    const r = checkOptions([o(11, 'x'), o(2049), o(2050), o(2051)], new Set([11]));
    assert.equal(r.badCritical, 2049, 'odd = critical; the first one is reported');
    assert.deepEqual(r.ignored, [2050]);
    assert.deepEqual(checkOptions([o(2048), o(2050)], ALL), { ignored: [2048, 2050] });
    // Same option, but the receiver does not implement Accept (17, critical) or ETag (4, elective).
    assert.deepEqual(checkOptions([o(4, [1]), o(17, [50])], new Set()), { badCritical: 17, ignored: [4] });
  });

  it('firstBadCritical() reports exactly what checkOptions() reports as badCritical', () => {
    const some = new Set([1, 3, 4, 11, 12, 17, 60, 65001]);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            number: fc.oneof(fc.constantFrom(1, 3, 4, 5, 11, 12, 14, 17, 35, 60, 2049, 65001), fc.nat(65535)),
            len: fc.nat(300),
          }),
          { maxLength: 8 },
        ),
        fc.boolean(),
        (raw, all) => {
          const opts = raw
            .map((r) => ({ number: r.number, value: Buffer.alloc(r.len) }))
            .sort((a, b) => a.number - b.number);
          const recognized = all ? ALL : some;
          assert.equal(firstBadCritical(opts, recognized), checkOptions(opts, recognized).badCritical);
        },
      ),
    );
  });

  it('§5.4.1: an option the receiver implements counts as recognized even without a registry entry', () => {
    assert.deepEqual(checkOptions([o(65001, [1])], new Set([65001])), { ignored: [] });
  });

  it('§5.4.3: a value of bad length is treated like an unrecognized option', () => {
    assert.deepEqual(checkOptions([o(3)], ALL), { badCritical: 3, ignored: [] }, 'empty Uri-Host');
    assert.deepEqual(
      checkOptions([o(1, Array(9).fill(0))], ALL),
      { badCritical: 1, ignored: [] },
      'If-Match 9',
    );
    assert.deepEqual(
      checkOptions([o(5, [1])], ALL),
      { badCritical: 5, ignored: [] },
      'If-None-Match non-empty',
    );
    assert.deepEqual(
      checkOptions([o(7, [1, 2, 3])], ALL),
      { badCritical: 7, ignored: [] },
      'Uri-Port 3 bytes',
    );
    assert.deepEqual(checkOptions([o(4)], ALL), { ignored: [4] }, 'empty ETag');
    assert.deepEqual(checkOptions([o(12, [0, 0, 50])], ALL), { ignored: [12] }, 'Content-Format 3 bytes');
    assert.deepEqual(checkOptions([o(14, [0, 0, 0, 0, 1])], ALL), { ignored: [14] }, 'Max-Age 5 bytes');
    assert.deepEqual(checkOptions([o(60, [1, 2, 3, 4, 5])], ALL), { ignored: [60] }, 'Size1 5 bytes');
  });

  it('§5.4.5: repeated non-repeatable options — the supernumerary occurrences are unrecognized', () => {
    assert.deepEqual(checkOptions([o(12, [0]), o(12, [50])], ALL), { ignored: [12] });
    assert.deepEqual(checkOptions([o(12, [0]), o(12, [50]), o(12, [40])], ALL), { ignored: [12, 12] });
    assert.deepEqual(checkOptions([o(7, [1]), o(7, [2])], ALL), { badCritical: 7, ignored: [] });
    assert.deepEqual(checkOptions([o(3, 'a'), o(3, 'b')], ALL), { badCritical: 3, ignored: [] });
    // Repeatable options may repeat.
    assert.deepEqual(
      checkOptions(
        [o(11, 'a'), o(11, 'b'), o(4, [1]), o(4, [2])].sort((a, b) => a.number - b.number),
        ALL,
      ),
      {
        ignored: [],
      },
    );
  });

  it('a well-formed request passes', () => {
    const req = [o(3, 'example.com'), o(7, [0x16, 0x33]), o(11, 'temperature'), o(15, 'x=1'), o(17, [50])];
    assert.deepEqual(checkOptions(req, ALL), { ignored: [] });
  });
});

describe('option number bits (§5.4.6)', () => {
  // [number, critical, unsafe, noCacheKey] from RFC 7252 Table 4, RFC 7959 and RFC 7641.
  const table: Array<[number, boolean, boolean, boolean]> = [
    [1, true, false, false], // If-Match
    [3, true, true, false], // Uri-Host
    [4, false, false, false], // ETag
    [5, true, false, false], // If-None-Match
    [6, false, true, false], // Observe
    [7, true, true, false], // Uri-Port
    [8, false, false, false], // Location-Path
    [11, true, true, false], // Uri-Path
    [12, false, false, false], // Content-Format
    [14, false, true, false], // Max-Age
    [15, true, true, false], // Uri-Query
    [17, true, false, false], // Accept
    [20, false, false, false], // Location-Query
    [23, true, true, false], // Block2
    [27, true, true, false], // Block1
    [28, false, false, true], // Size2
    [35, true, true, false], // Proxy-Uri
    [39, true, true, false], // Proxy-Scheme
    [60, false, false, true], // Size1
  ];
  for (const [n, c, u, nck] of table) {
    it(`${optionName(n)} (${n}): critical=${c} unsafe=${u} NoCacheKey=${nck}`, () => {
      assert.equal(isCritical(n), c);
      assert.equal(isUnsafe(n), u);
      assert.equal(isNoCacheKey(n), nck);
    });
  }
});

describe('option registry', () => {
  it('lookups by number and name', () => {
    assert.equal(optionDefinition(11)?.name, 'Uri-Path');
    assert.equal(optionByName('uri-path')?.number, 11);
    assert.equal(optionByName('ETAG')?.number, 4);
    assert.equal(optionByName('nope'), undefined);
    assert.equal(optionName(2049), 'Option 2049');
    assert.equal(optionName(60), 'Size1');
  });

  it('§5.10 formats and lengths', () => {
    const expect: Array<[number, string, number, number, boolean]> = [
      [1, 'opaque', 0, 8, true],
      [3, 'string', 1, 255, false],
      [4, 'opaque', 1, 8, true],
      [5, 'empty', 0, 0, false],
      [7, 'uint', 0, 2, false],
      [8, 'string', 0, 255, true],
      [11, 'string', 0, 255, true],
      [12, 'uint', 0, 2, false],
      [14, 'uint', 0, 4, false],
      [15, 'string', 0, 255, true],
      [17, 'uint', 0, 2, false],
      [20, 'string', 0, 255, true],
      [35, 'string', 1, 1034, false],
      [39, 'string', 1, 255, false],
      [60, 'uint', 0, 4, false],
    ];
    for (const [n, format, min, max, rep] of expect) {
      const d = optionDefinition(n);
      assert.ok(d, `option ${n}`);
      assert.deepEqual([d.format, d.minLength, d.maxLength, d.repeatable], [format, min, max, rep], d.name);
    }
  });

  it('registry is consistent: OptionNumber names map to definitions', () => {
    for (const n of Object.values(OptionNumber))
      assert.ok(optionDefinition(n), `option ${n} has a definition`);
    const numbers = ALL_OPTION_DEFINITIONS.map((d) => d.number);
    assert.deepEqual(
      numbers,
      [...numbers].sort((a, b) => a - b),
      'sorted',
    );
    assert.equal(new Set(numbers).size, numbers.length, 'unique');
  });
});

describe('block options (RFC 7959 §2.2)', () => {
  it('encodeBlock packs NUM, M and SZX into a minimal uint', () => {
    assert.equal(hex(encodeBlock(0, false, 0)), '', 'all zero is the empty value');
    assert.equal(hex(encodeBlock(0, true, 6)), '0e');
    assert.equal(hex(encodeBlock(1, false, 2)), '12');
    assert.equal(hex(encodeBlock(15, true, 6)), 'fe');
    assert.equal(hex(encodeBlock(16, false, 6)), '0106', 'NUM 16 needs 2 bytes');
    assert.equal(hex(encodeBlock(4095, true, 6)), 'fffe');
    assert.equal(hex(encodeBlock(4096, false, 0)), '010000', 'NUM 4096 needs 3 bytes');
    assert.equal(hex(encodeBlock(0xfffff, true, 6)), 'fffffe');
  });

  it('encodeBlock rejects out-of-range fields', () => {
    for (const [num, szx] of [
      [0x100000, 0],
      [-1, 0],
      [0, 8],
      [0, -1],
      [1.5, 0],
      [0, 1.5],
    ] as const) {
      assert.throws(() => encodeBlock(num, false, szx), OptionError, `${num}/${szx}`);
    }
  });

  it('decodeBlock', () => {
    assert.deepEqual(decodeBlock(Buffer.alloc(0)), { num: 0, more: false, szx: 0, size: 16 });
    assert.deepEqual(decodeBlock(Buffer.from([0x0e])), { num: 0, more: true, szx: 6, size: 1024 });
    assert.deepEqual(decodeBlock(Buffer.from([0x12])), { num: 1, more: false, szx: 2, size: 64 });
    assert.deepEqual(decodeBlock(Buffer.from([0x01, 0x0a])), { num: 16, more: true, szx: 2, size: 64 });
    assert.deepEqual(decodeBlock(Buffer.from([0xff, 0xff, 0xfe])), {
      num: 0xfffff,
      more: true,
      szx: 6,
      size: 1024,
    });
    assert.throws(() => decodeBlock(Buffer.from([0x0f])), OptionError, 'SZX 7 is reserved');
    assert.throws(() => decodeBlock(Buffer.alloc(4)), OptionError, 'more than 3 bytes');
  });

  it('SZX 7 is BERT (RFC 8323 §6) only where announced: NUM counts 1024-byte units', () => {
    assert.throws(() => decodeBlock(Buffer.from([0x0f]), false), OptionError, 'not over UDP');
    // 0x3f = NUM 3, M=1, SZX 7: a BERT block starting at byte 3 * 1024.
    assert.deepEqual(decodeBlock(Buffer.from([0x3f]), true), { num: 3, more: true, szx: 7, size: 1024 });
    assert.deepEqual(decodeBlock(Buffer.from([0x07]), true), { num: 0, more: false, szx: 7, size: 1024 });
    // RFC 8323 §6 figure: after 3072 bytes in block 0, the next BERT block is NUM 3.
    assert.deepEqual([...encodeBlock(3, true, 7)], [0x3f]);
    assert.deepEqual([...encodeBlock(189, false, 7)], [0x0b, 0xd7]);
    assert.deepEqual(decodeBlock(encodeBlock(0xfffff, true, 7), true), {
      num: 0xfffff,
      more: true,
      szx: 7,
      size: 1024,
    });
    assert.equal(formatOptionValue(23, encodeBlock(3, true, 7)), '3/1/BERT');
  });

  it('encodeBlock/decodeBlock round trip', () => {
    for (const num of [0, 1, 15, 16, 255, 4095, 4096, 0xfffff]) {
      for (const more of [false, true]) {
        for (let szx = 0; szx <= 6; szx++) {
          const d = decodeBlock(encodeBlock(num, more, szx));
          assert.deepEqual(d, { num, more, szx, size: 16 << szx });
        }
      }
    }
  });

  it('sizeToSzx', () => {
    assert.equal(sizeToSzx(16), 0);
    assert.equal(sizeToSzx(64), 2);
    assert.equal(sizeToSzx(1024), 6);
    for (const bad of [0, 8, 24, 2048, -16]) assert.throws(() => sizeToSzx(bad), OptionError, String(bad));
  });
});

describe('formatOptionValue', () => {
  it('renders by format', () => {
    assert.equal(formatOptionValue(12, Buffer.from([50])), '50 (application/json)');
    assert.equal(formatOptionValue(12, Buffer.alloc(0)), '0 (text/plain;charset=utf-8)');
    assert.equal(formatOptionValue(12, Buffer.from([0x27, 0x0f])), '9999');
    assert.equal(formatOptionValue(23, Buffer.from([0x12])), '1/0/64');
    assert.equal(formatOptionValue(27, Buffer.from([0x0e])), '0/1/1024');
    assert.equal(formatOptionValue(23, Buffer.from([0x0f])), '0/1/BERT');
    assert.equal(formatOptionValue(11, Buffer.from('temp')), '"temp"');
    assert.equal(formatOptionValue(4, Buffer.from([0x8f, 0x7e])), '0x8f7e');
    assert.equal(formatOptionValue(5, Buffer.alloc(0)), '(empty)');
    assert.equal(formatOptionValue(14, Buffer.from([0x3c])), '60');
    assert.equal(formatOptionValue(14, Buffer.alloc(5)), '0x0000000000');
    assert.equal(formatOptionValue(65001, Buffer.from([1])), '0x01');
    assert.equal(formatOptionValue(65001, Buffer.alloc(0)), '(empty)');
  });
});

describe('content formats (§12.3)', () => {
  it('parseContentFormat by number, media type and alias', () => {
    assert.equal(parseContentFormat(50), 50);
    assert.equal(parseContentFormat('50'), 50);
    assert.equal(parseContentFormat(' 40 '), 40);
    assert.equal(parseContentFormat('application/json'), ContentFormat.Json);
    assert.equal(parseContentFormat('APPLICATION/JSON'), 50);
    assert.equal(parseContentFormat('json'), 50);
    assert.equal(parseContentFormat('text/plain;charset=utf-8'), 0);
    assert.equal(parseContentFormat('text/plain; charset=utf-8'), 0, 'as written in the §12.3 table');
    assert.equal(parseContentFormat('application/cose; cose-type="cose-sign1"'), 18);
    assert.equal(parseContentFormat('text'), 0);
    assert.equal(parseContentFormat('application/link-format'), 40);
    assert.equal(parseContentFormat('link-format'), 40);
    assert.equal(parseContentFormat('cbor'), 60);
    assert.equal(parseContentFormat('application/senml+json'), 110);
    assert.equal(parseContentFormat(65535), 65535);
    assert.equal(parseContentFormat('65535'), 65535);
    for (const bad of [65536, -1, 1.5, '65536', '-1', 'nope', '', '1e3']) {
      assert.equal(parseContentFormat(bad), undefined, String(bad));
    }
  });

  it('contentFormatName and isTextual', () => {
    assert.equal(contentFormatName(40), 'application/link-format');
    assert.equal(contentFormatName(0), 'text/plain;charset=utf-8');
    assert.equal(contentFormatName(9999), undefined);
    for (const t of [0, 40, 41, 50, 110, undefined]) assert.ok(isTextual(t), String(t));
    for (const t of [42, 60, 112, 9999]) assert.ok(!isTextual(t), String(t));
  });

  it('every registry entry parses back to its number', () => {
    for (const [id, mime, aliases] of CONTENT_FORMATS) {
      assert.equal(parseContentFormat(mime), id, mime);
      for (const a of aliases) assert.equal(parseContentFormat(a), id, a);
    }
  });
});

describe('codes (§3, §5.9, §12.1)', () => {
  it('code(), formatCode and the registered constants', () => {
    assert.equal(code(2, 5), 0x45);
    assert.equal(code(4, 4), 0x84);
    assert.equal(formatCode(0x45), '2.05');
    assert.equal(formatCode(0x84), '4.04');
    assert.equal(formatCode(0), '0.00');
    assert.equal(formatCode(0xa0), '5.00');
    assert.equal(formatCode(0x5f), '2.31');
    assert.equal(formatCode(0xff), '7.31');
    assert.equal(Method.GET, 1);
    assert.equal(Method.iPATCH, 7);
    assert.equal(ResponseCode.Content, code(2, 5));
    assert.equal(ResponseCode.NotFound, code(4, 4));
    assert.equal(ResponseCode.ProxyingNotSupported, code(5, 5));
    assert.equal(ResponseCode.RequestEntityIncomplete, code(4, 8));
    assert.equal(ResponseCode.UnsupportedContentFormat, code(4, 15));
  });

  it('parseCode accepts "c.dd", names and numbers', () => {
    assert.equal(parseCode('2.05'), 0x45);
    assert.equal(parseCode('4.04'), 0x84);
    assert.equal(parseCode('0.01'), 1);
    assert.equal(parseCode('7.31'), 0xff);
    assert.equal(parseCode('GET'), 1);
    assert.equal(parseCode('get'), 1);
    assert.equal(parseCode('Content'), 0x45);
    assert.equal(parseCode('not found'), 0x84);
    assert.equal(parseCode(69), 69);
    for (const bad of ['2.32', '8.00', '2.5', '205', '', 'nope', 256, -1, 1.5]) {
      assert.equal(parseCode(bad), undefined, String(bad));
    }
    for (let c = 0; c < 256; c++) assert.equal(parseCode(formatCode(c)), c, `round trip ${c}`);
  });

  it('describeCode, codeName, classes', () => {
    assert.equal(describeCode(0x45), '2.05 Content');
    assert.equal(describeCode(0x84), '4.04 Not Found');
    assert.equal(describeCode(1), 'GET');
    assert.equal(describeCode(0x09), '0.09');
    assert.equal(describeCode(0x46), '2.06');
    assert.equal(describeCode(0), '0.00 Empty');
    assert.equal(codeName(0xa0), 'Internal Server Error');
    assert.ok(isRequestCode(1) && isRequestCode(31) && !isRequestCode(0) && !isRequestCode(32));
    assert.ok(isResponseCode(0x40) && isResponseCode(0xbf) && !isResponseCode(0x3f) && !isResponseCode(0xc0));
    assert.ok(isEmptyCode(0) && !isEmptyCode(1));
    assert.equal(codeClass(0x84), 4);
  });
});

describe('transmission parameters (§4.8)', () => {
  it('defaults and the §4.8.2 derived values', () => {
    assert.equal(DEFAULT_TRANSMISSION.ackTimeout, 2000);
    assert.equal(DEFAULT_TRANSMISSION.ackRandomFactor, 1.5);
    assert.equal(DEFAULT_TRANSMISSION.maxRetransmit, 4);
    assert.equal(DEFAULT_TRANSMISSION.nstart, 1);
    assert.deepEqual(deriveParameters(DEFAULT_TRANSMISSION), {
      maxTransmitSpan: 45_000,
      maxTransmitWait: 93_000,
      exchangeLifetime: 247_000,
      nonLifetime: 145_000,
    });
  });

  it('PROCESSING_DELAY follows ACK_TIMEOUT unless given', () => {
    assert.equal(resolveParameters({ ackTimeout: 500 }).processingDelay, 500);
    assert.equal(resolveParameters({ ackTimeout: 500, processingDelay: 100 }).processingDelay, 100);
    assert.equal(resolveParameters().processingDelay, 2000);
  });
});
