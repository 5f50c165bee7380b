/**
 * Every error class in src/errors.ts: fixed code, name, inheritance, and
 * instanceof across two loaded copies of the module.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as errors from '../../src/errors.js';

type Errors = typeof errors;
/** The first copy as a plain object, for access by name. */
const local: Errors = { ...errors };

// A second, independent instance of the module (different URL → new module record).
const copySpec = new URL('../../src/errors.ts?copy=2', import.meta.url).href;
const copy = (await import(copySpec)) as Errors;

type Ctor = new (...args: never[]) => errors.CoapError;

/** [export name, code, direct parent export name] */
const TABLE: Array<[keyof Errors, string, keyof Errors | undefined]> = [
  ['CoapError', 'COAP_ERR', undefined],
  ['MessageFormatError', 'COAP_ERR_MESSAGE_FORMAT', 'CoapError'],
  ['OptionError', 'COAP_ERR_OPTION', 'CoapError'],
  ['UriError', 'COAP_ERR_INVALID_URI', 'CoapError'],
  ['InvalidArgumentError', 'COAP_ERR_INVALID_ARGUMENT', 'CoapError'],
  ['LinkFormatError', 'COAP_ERR_LINK_FORMAT', 'CoapError'],
  ['DnsError', 'COAP_ERR_DNS', 'CoapError'],
  ['NetworkError', 'COAP_ERR_NETWORK', 'CoapError'],
  ['TimeoutError', 'COAP_ERR_TIMEOUT', 'CoapError'],
  ['ResetError', 'COAP_ERR_RESET', 'CoapError'],
  ['AbortError', 'COAP_ERR_ABORTED', 'CoapError'],
  ['ClosedError', 'COAP_ERR_CLOSED', 'CoapError'],
  ['CaptureFormatError', 'COAP_ERR_CAPTURE_FORMAT', 'CoapError'],
  ['DtlsError', 'COAP_ERR_DTLS', 'CoapError'],
  ['DtlsAlertError', 'COAP_ERR_DTLS_ALERT', 'DtlsError'],
  ['DtlsHandshakeTimeoutError', 'COAP_ERR_DTLS_HANDSHAKE_TIMEOUT', 'DtlsError'],
  ['ResponseCodeError', 'COAP_ERR_RESPONSE_CODE', 'CoapError'],
  ['UsageError', 'COAP_ERR_USAGE', 'CoapError'],
];

function make(mod: Errors, name: keyof Errors): errors.CoapError {
  const C = mod[name] as unknown as Ctor & (new (a: unknown, b?: unknown) => errors.CoapError);
  return name === 'ResponseCodeError' ? new C('4.04' as never, 'gone' as never) : new C('boom' as never);
}

/** Ancestors of a table entry, itself included. */
function lineage(name: keyof Errors): Set<keyof Errors> {
  const out = new Set<keyof Errors>();
  let n: keyof Errors | undefined = name;
  while (n !== undefined) {
    out.add(n);
    n = TABLE.find((r) => r[0] === n)?.[2];
  }
  return out;
}

describe('error classes', () => {
  it('the table covers every exported class', () => {
    const exported = Object.entries(errors)
      .filter(
        ([, v]) =>
          typeof v === 'function' && (v === errors.CoapError || v.prototype instanceof errors.CoapError),
      )
      .map(([k]) => k)
      .sort();
    assert.deepEqual(exported, TABLE.map((r) => r[0] as string).sort());
  });

  for (const [name, code, parent] of TABLE) {
    it(`${name}: code ${code}, name, inheritance`, () => {
      const e = make(local, name);
      assert.equal(e.code, code);
      assert.equal(e.name, name);
      assert.ok(e instanceof Error);
      assert.ok(e instanceof errors.CoapError);
      assert.ok(e instanceof (local[name] as unknown as Ctor));
      if (parent) assert.ok(e instanceof (local[parent] as unknown as Ctor), `instanceof ${parent}`);
      assert.equal(typeof e.stack, 'string');
      // Codes are unique per class.
      assert.equal(TABLE.filter((r) => r[1] === code).length, 1);
    });
  }

  it('instanceof is false for unrelated classes and values', () => {
    for (const [a] of TABLE) {
      const e = make(local, a);
      const ancestors = lineage(a);
      for (const [b] of TABLE) {
        const expected = ancestors.has(b);
        assert.equal(e instanceof (local[b] as unknown as Ctor), expected, `${a} instanceof ${b}`);
      }
    }
    for (const v of [null, undefined, 0, 'x', {}, new Error('x'), new TypeError('x')]) {
      assert.ok(!(v instanceof errors.CoapError), String(v));
      assert.ok(!(v instanceof errors.TimeoutError), String(v));
    }
  });

  it('message, cause and hint are kept', () => {
    const cause = new Error('root');
    const e = new errors.UriError('bad uri', { cause, hint: 'write coap://host/path' });
    assert.equal(e.message, 'bad uri');
    assert.equal(e.cause, cause);
    assert.equal(e.hint, 'write coap://host/path');
    const plain = new errors.UriError('x');
    assert.equal(plain.hint, undefined);
    assert.ok(!('cause' in plain));
  });

  it('ResponseCodeError parses c.dd codes and accepts numbers', () => {
    assert.equal(new errors.ResponseCodeError('4.03', 'no').responseCode, 0x83);
    assert.equal(new errors.ResponseCodeError('5.03').responseCode, 0xa3);
    assert.equal(new errors.ResponseCodeError(0x84).responseCode, 0x84);
    assert.equal(new errors.ResponseCodeError('4.04').message, '');
    for (const bad of ['4.4', '8.00', '4.32', 'nope', '']) {
      assert.throws(() => new errors.ResponseCodeError(bad), errors.InvalidArgumentError, bad);
    }
  });

  it('DtlsError carries an optional alert number', () => {
    const e = new errors.DtlsAlertError('handshake failure');
    e.alert = 40;
    assert.equal(e.alert, 40);
    assert.ok(e instanceof errors.DtlsError);
  });
});

describe('instanceof across two copies of the module', () => {
  it('the second copy really is a different module instance', () => {
    assert.notEqual(copy.CoapError, errors.CoapError);
    assert.notEqual(copy.TimeoutError, errors.TimeoutError);
  });

  for (const [a] of TABLE) {
    it(`${a} from either copy matches exactly its lineage in the other copy`, () => {
      const ancestors = lineage(a);
      for (const [from, to] of [
        [copy, local],
        [local, copy],
      ] as const) {
        const e = make(from, a);
        assert.ok(e instanceof to.CoapError);
        for (const [b] of TABLE) {
          assert.equal(
            e instanceof (to[b] as unknown as Ctor),
            ancestors.has(b),
            `${a} instanceof other ${b}`,
          );
        }
      }
    });
  }
});
