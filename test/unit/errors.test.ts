/**
 * Every error class in src/errors.ts: fixed code, name, inheritance, and
 * instanceof across two loaded copies of the module.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import * as errors from '../../src/errors.js';

type Errors = typeof errors;
/** The first copy as a plain object, for access by name. */
const local: Errors = { ...errors };

/**
 * A second, independent instance of the error modules, as when two copies of the library are
 * loaded: src/errors.ts and every module it imports (util/errors.ts, dtls/errors.ts) are copied
 * to a temporary directory with the same layout and loaded from there (new URLs → new module
 * records all the way down, not only for the top file).
 */
async function loadCopy(): Promise<Errors> {
  const srcRoot = fileURLToPath(new URL('../../src/', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-errors-'));
  const todo = ['errors.ts'];
  const seen = new Set<string>();
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(join(srcRoot, file), 'utf8');
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text);
    for (const m of text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)) {
      todo.push(relative(srcRoot, resolve(dirname(join(srcRoot, file)), `${m[1]}.ts`)));
    }
  }
  try {
    return (await import(pathToFileURL(join(dir, 'errors.ts')).href)) as Errors;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const copy = await loadCopy();

type Ctor = new (...args: never[]) => errors.CoapError;
type Name = keyof Errors;

/** Fixed codes of the classes known when this test was written: [export name, code, parent]. */
const KNOWN: Array<[Name, string, Name | undefined]> = [
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
  ['DtlsCredentialError', 'COAP_ERR_DTLS_CREDENTIALS', 'DtlsError'],
  ['StoreError', 'COAP_ERR_STORE', 'CoapError'],
  ['StoreUnavailableError', 'COAP_ERR_STORE_UNAVAILABLE', 'StoreError'],
  ['StoreFormatError', 'COAP_ERR_STORE_FORMAT', 'StoreError'],
  ['StoreDependencyError', 'COAP_ERR_STORE_DEPENDENCY', 'StoreError'],
  ['ResponseCodeError', 'COAP_ERR_RESPONSE_CODE', 'CoapError'],
  ['UsageError', 'COAP_ERR_USAGE', 'CoapError'],
  ['ProtocolError', 'COAP_ERR_PROTOCOL', 'CoapError'],
  ['BlockTransferError', 'COAP_ERR_BLOCK_TRANSFER', 'ProtocolError'],
  ['BodyTooLargeError', 'COAP_ERR_BODY_TOO_LARGE', 'BlockTransferError'],
  ['ObserveError', 'COAP_ERR_OBSERVE', 'CoapError'],
  ['OscoreError', 'COAP_ERR_OSCORE', 'CoapError'],
  ['OscoreContextNotFoundError', 'COAP_ERR_OSCORE_UNKNOWN_CONTEXT', 'OscoreError'],
  ['OscoreDecryptError', 'COAP_ERR_OSCORE_DECRYPT', 'OscoreError'],
  ['OscoreReplayError', 'COAP_ERR_OSCORE_REPLAY', 'OscoreError'],
  ['OscoreSequenceError', 'COAP_ERR_OSCORE_SEQUENCE', 'OscoreError'],
  ['OscoreSequenceUnavailableError', 'COAP_ERR_OSCORE_SEQUENCE_UNAVAILABLE', 'OscoreSequenceError'],
];

/** Every error class the module exports (classes appended later are covered automatically). */
const ALL: Name[] = (Object.keys(local) as Name[])
  .filter((k) => {
    const v = local[k] as unknown;
    return typeof v === 'function' && (v === errors.CoapError || v.prototype instanceof errors.CoapError);
  })
  .sort();

function make(mod: Errors, name: Name): errors.CoapError {
  const C = mod[name] as unknown as new (a: unknown, b?: unknown) => errors.CoapError;
  return name === 'ResponseCodeError' ? new C('4.04', 'gone') : new C('boom');
}

/** Export names of a class and its ancestors, from the real prototype chain. */
function lineage(name: Name): Set<Name> {
  const out = new Set<Name>();
  let C = local[name] as unknown as { name: string } | null;
  while (C && C !== (Error as unknown)) {
    out.add(C.name as Name);
    C = Object.getPrototypeOf(C) as { name: string } | null;
  }
  return out;
}

describe('error classes', () => {
  it('every known class is exported with its fixed code and parent', () => {
    for (const [name, code, parent] of KNOWN) {
      assert.ok(ALL.includes(name), `${name} is exported`);
      const e = make(local, name);
      assert.equal(e.code, code, name);
      if (parent) assert.ok(lineage(name).has(parent), `${name} extends ${parent}`);
    }
  });

  it('the table lists every exported class (a new class gets a row, so its code is fixed)', () => {
    assert.deepEqual(KNOWN.map((r) => r[0]).sort(), ALL);
  });

  it('each class declares its code once, as its own static code, which its instances carry', () => {
    for (const name of ALL) {
      const C = local[name] as unknown as { code: string };
      assert.ok(Object.hasOwn(C, 'code'), `${name} has its own static code`);
      assert.equal(make(local, name).code, C.code, name);
    }
  });

  it('the brands are not enumerable: an error prints and serialises as before', () => {
    const e = new errors.TimeoutError('late');
    assert.deepEqual(Object.getOwnPropertySymbols(e), []);
    assert.deepEqual(Object.keys(e).sort(), ['code', 'hint', 'name']);
    assert.doesNotMatch(inspect(e), /coapkit\.error/);
  });

  it('a subclass without its own static code: instanceof in its copy, inherits the code', () => {
    class AppError extends errors.TimeoutError {}
    const e = new AppError('app');
    assert.equal(e.code, 'COAP_ERR_TIMEOUT');
    assert.ok(e instanceof AppError);
    assert.ok(e instanceof errors.TimeoutError);
    assert.ok(e instanceof copy.TimeoutError, 'its ancestors are recognised by the other copy');
    assert.ok(!(new errors.TimeoutError('x') instanceof AppError));
    assert.ok(!(copy.TimeoutError.prototype instanceof AppError));
  });

  it('codes are unique and follow COAP_ERR[_NAME]', () => {
    const codes = ALL.map((n) => make(local, n).code);
    assert.equal(new Set(codes).size, codes.length, codes.join(', '));
    for (const c of codes) assert.match(c, /^COAP_ERR(_[A-Z0-9]+)*$/);
  });

  for (const name of ALL) {
    const parent = [...lineage(name)][1];
    it(`${name}: code, name, inheritance`, () => {
      const e = make(local, name);
      const known = KNOWN.find((r) => r[0] === name);
      if (known) assert.equal(e.code, known[1]);
      assert.equal(e.name, name);
      assert.ok(e instanceof Error);
      assert.ok(e instanceof errors.CoapError);
      assert.ok(e instanceof (local[name] as unknown as Ctor));
      if (parent) assert.ok(e instanceof (local[parent] as unknown as Ctor), `instanceof ${parent}`);
      assert.equal(typeof e.stack, 'string');
      if (known) assert.equal(e.message, name === 'ResponseCodeError' ? 'gone' : 'boom');
    });
  }

  it('instanceof is false for unrelated classes and values', () => {
    for (const a of ALL) {
      const e = make(local, a);
      const ancestors = lineage(a);
      for (const b of ALL) {
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
    assert.notEqual(copy.DtlsError, errors.DtlsError);
    assert.notEqual(copy.InvalidArgumentError, errors.InvalidArgumentError);
  });

  for (const a of ALL) {
    it(`${a} from either copy matches exactly its lineage in the other copy`, () => {
      const ancestors = lineage(a);
      for (const [from, to] of [
        [copy, local],
        [local, copy],
      ] as const) {
        const e = make(from, a);
        assert.ok(e instanceof to.CoapError);
        for (const b of ALL) {
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
