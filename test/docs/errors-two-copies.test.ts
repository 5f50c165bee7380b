/**
 * `instanceof` across two installed copies of the built package (dist/), as when an
 * application and one of its dependencies each bring their own coapkit: dist/ is copied to a
 * temporary folder, both copies are imported, and errors thrown by one copy are checked
 * against the classes of the other (src/errors.ts: a Symbol.for brand per class, as undici).
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ROOT } from '../integration/cli-helpers.js';

type Api = typeof import('../../src/index.js');
type ErrorClass = new (...args: never[]) => Error;

let tmp = '';
let a: Api;
let b: Api;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'dist/index.js')), 'dist/ is missing: run `npm run build` first');
  tmp = mkdtempSync(join(tmpdir(), 'coapkit-copy-'));
  cpSync(join(ROOT, 'dist'), join(tmp, 'dist'), { recursive: true });
  writeFileSync(join(tmp, 'package.json'), '{ "type": "module" }\n');
  a = (await import(pathToFileURL(join(ROOT, 'dist/index.js')).href)) as Api;
  b = (await import(pathToFileURL(join(tmp, 'dist/index.js')).href)) as Api;
});

after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The error classes the package exports, by name. */
function errorClasses(api: Api): Map<string, ErrorClass> {
  const out = new Map<string, ErrorClass>();
  for (const [name, v] of Object.entries(api)) {
    if (typeof v === 'function' && (v === api.CoapError || v.prototype instanceof api.CoapError))
      out.set(name, v as ErrorClass);
  }
  return out;
}

function make(api: Api, name: string): Error {
  const C = errorClasses(api).get(name) as unknown as new (x: unknown, y?: unknown) => Error;
  return name === 'ResponseCodeError' ? new C('4.04', 'gone') : new C('boom');
}

/** Class names of an instance's lineage in its own copy. */
function lineage(e: Error): Set<string> {
  const out = new Set<string>();
  for (let p = Object.getPrototypeOf(e); p !== Error.prototype; p = Object.getPrototypeOf(p))
    out.add(p.constructor.name);
  return out;
}

describe('errors across two copies of dist/', () => {
  it('the copies are distinct module instances with the same error classes', () => {
    assert.notEqual(a.CoapError, b.CoapError);
    assert.notEqual(a.UriError, b.UriError);
    assert.deepEqual([...errorClasses(a).keys()], [...errorClasses(b).keys()]);
    assert.ok(errorClasses(a).size >= 20, `${errorClasses(a).size} error classes`);
  });

  it('an error thrown by one copy is instanceof its classes in the other, and only those', () => {
    const thrown: Array<[string, () => unknown]> = [
      ['UriError', () => b.parseUri('http://example.com/')],
      ['MessageFormatError', () => b.decodeMessage(Buffer.from([0x7f]))],
      ['InvalidArgumentError', () => new b.ResponseCodeError('9.99')],
    ];
    for (const [name, fn] of thrown) {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof b.CoapError, `copy B threw ${String(err)}`);
      assert.ok(err instanceof a.CoapError, `${name} instanceof A.CoapError`);
      for (const [other, C] of errorClasses(a))
        assert.equal(
          err instanceof C,
          other === name || other === 'CoapError',
          `${name} instanceof A.${other}`,
        );
    }
  });

  it('every class, both ways: instanceof matches exactly the lineage', () => {
    for (const name of errorClasses(a).keys()) {
      for (const [from, to] of [
        [a, b],
        [b, a],
      ] as const) {
        const e = make(from, name);
        const mine = lineage(e);
        assert.ok(mine.has(name));
        for (const [other, C] of errorClasses(to))
          assert.equal(e instanceof C, mine.has(other), `${name} instanceof other copy's ${other}`);
      }
    }
  });

  it('a body over the limit is a BlockTransferError and a ProtocolError in the other copy', () => {
    const e = new b.BodyTooLargeError('too big');
    assert.ok(e instanceof a.BodyTooLargeError);
    assert.ok(e instanceof a.BlockTransferError);
    assert.ok(e instanceof a.ProtocolError);
    assert.ok(!(e instanceof a.ObserveError));
    assert.equal(e.code, a.BodyTooLargeError.code);
  });

  it('values that are not coapkit errors are not instanceof', () => {
    for (const v of [null, undefined, 1, 'COAP_ERR', {}, new Error('x'), { code: 'COAP_ERR_TIMEOUT' }]) {
      assert.ok(!(v instanceof a.CoapError));
      assert.ok(!(v instanceof b.TimeoutError));
    }
  });
});
