/** src/cli/escape.ts (one escaping function for network text) and the serve -v handshake log limits. */
import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { logHandshakeFailures } from '../../src/cli/commands/serve.js';
import {
  escapeKeepingSgr,
  escapeStrings,
  escapeText,
  hasControlChars,
  jsonSafe,
  unescapeText,
} from '../../src/cli/escape.js';
import { DtlsError } from '../../src/errors.js';

// What must never reach a log line or terminal raw.
const CONTROL =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

// Strings rich in the dangerous characters, plus any UTF-16 code unit.
const nasty = fc.string({
  unit: fc.oneof(
    fc.constantFrom(
      '\n',
      '\r',
      '\t',
      '\x1b',
      '\x00',
      '\x7f',
      '\x85',
      '\x9b',
      '\u2028',
      '\u2029',
      '\u202e',
      '\u2066',
      '\u200f',
      '\u061c',
      '\\',
      'x',
      'n',
      'u',
      '0',
      '1b',
    ),
    fc.string({ unit: 'binary', maxLength: 1 }),
    fc.string({ unit: 'grapheme', maxLength: 1 }),
    fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  ),
  maxLength: 40,
});

describe('escapeText', () => {
  it('never outputs a control, separator, bidi character or lone surrogate', () => {
    fc.assert(
      fc.property(nasty, (s) => {
        const e = escapeText(s);
        assert.ok(!CONTROL.test(e), JSON.stringify(e));
        assert.ok(!e.includes('\n'));
      }),
      { numRuns: 3000, seed: 42 },
    );
  });

  it('is reversible, hence unambiguous (different inputs give different outputs)', () => {
    fc.assert(
      fc.property(nasty, (s) => {
        assert.equal(unescapeText(escapeText(s)), s);
      }),
      { numRuns: 3000, seed: 7 },
    );
    fc.assert(
      fc.property(nasty, nasty, (a, b) => {
        fc.pre(a !== b);
        assert.notEqual(escapeText(a), escapeText(b));
      }),
      { numRuns: 2000, seed: 8 },
    );
  });

  it('leaves printable text alone (no allocation path) except the backslash', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-ascii' }), (s) => {
        fc.pre(!hasControlChars(s));
        assert.equal(escapeText(s), s.replaceAll('\\', '\\\\'));
      }),
      { seed: 9 },
    );
    const s = '/sensors/temp?unit=°C&name=Grüße 🌡';
    assert.equal(escapeText(s), s);
  });

  it('escapes the forged log line of the report', () => {
    const path = '/x -> 2.05\n2026-01-01T00:00:00Z DELETE /critical from 10.0.0.99:5683 (alice) -> 2.02';
    assert.equal(
      escapeText(path),
      '/x -> 2.05\\n2026-01-01T00:00:00Z DELETE /critical from 10.0.0.99:5683 (alice) -> 2.02',
    );
    assert.equal(escapeText('a\x1b[2Jb\u202ec\r\t\\'), 'a\\x1b[2Jb\\u202ec\\r\\t\\\\');
  });
});

describe('jsonSafe, escapeKeepingSgr, escapeStrings', () => {
  it('jsonSafe keeps the parsed value and escapes DEL, C1, separators and bidi controls', () => {
    fc.assert(
      fc.property(nasty, (s) => {
        const j = jsonSafe(JSON.stringify({ s, list: [s] }));
        assert.ok(!CONTROL.test(j), j);
        assert.deepEqual(JSON.parse(j), { s, list: [s] });
      }),
      { numRuns: 2000, seed: 10 },
    );
  });

  it('escapeKeepingSgr keeps colour sequences and escapes every other control', () => {
    const line = `\x1b[1mGET\x1b[0m /a\nb\x1b]0;title\x07`;
    assert.equal(escapeKeepingSgr(line), '\x1b[1mGET\x1b[0m /a\\nb\\x1b]0;title\\x07');
  });

  it('escapeStrings escapes every string in a JSON-like value, keeps bytes', () => {
    const bytes = new Uint8Array([10, 27]);
    const v = { a: 'x\ny', b: [{ c: '\u202e' }, 3, null], bytes };
    assert.deepEqual(escapeStrings(v), { a: 'x\\ny', b: [{ c: '\\u202e' }, 3, null], bytes });
    assert.equal(escapeStrings(v).bytes, bytes);
  });
});

describe('serve -v: failed DTLS handshakes', () => {
  const publish = (ev: unknown) => dc.channel('coapkit:dtls:handshake:error').publish(ev);

  it('one escaped line per failure with peer, identity and alert', () => {
    const lines: string[] = [];
    const stop = logHandshakeFailures((l) => lines.push(l));
    try {
      const error = new DtlsError('unknown PSK identity "x"');
      publish({
        peer: '127.0.0.5%4000',
        role: 'server',
        error,
        identity: 'ev\nil',
        alert: { level: 2, description: 115, name: 'unknown_psk_identity', direction: 'sent' },
      });
      publish({ peer: '::1%4001', role: 'server', error: new DtlsError('timed out') });
      publish({
        peer: '127.0.0.6%4002',
        role: 'server',
        error,
        identity: 'bob',
        alert: { level: 2, description: 51, name: 'decrypt_error', direction: 'sent' },
      });
      publish({ peer: '127.0.0.7%4003', role: 'client', error });
    } finally {
      stop();
    }
    assert.equal(lines.length, 3, lines.join('\n'));
    assert.match(
      lines[0]!,
      /DTLS handshake failed from 127\.0\.0\.5:4000 \(ev\\nil\): alert unknown_psk_identity \(115\): unknown PSK identity "x"$/,
    );
    assert.match(lines[1]!, /DTLS handshake failed from \[::1\]:4001: timed out$/);
    assert.match(lines[2]!, /from 127\.0\.0\.6:4002 \(bob\): alert decrypt_error \(51\)/);
    for (const l of lines) assert.ok(!CONTROL.test(l));
  });

  it('at most N lines per second overall and per address, then one "suppressed" summary', () => {
    let t = 1_000_000;
    const lines: string[] = [];
    const stop = logHandshakeFailures(
      (l) => lines.push(l),
      { perSecond: 5, perPeerPerSecond: 2 },
      () => t,
    );
    try {
      // One address: 2 lines, 48 suppressed.
      for (let i = 0; i < 50; i++)
        publish({ peer: `127.0.0.9%${5000 + i}`, role: 'server', error: new Error('x') });
      assert.equal(lines.length, 2);
      // Other addresses still get through, up to the overall limit.
      for (let i = 0; i < 10; i++)
        publish({ peer: `127.0.1.${i}%5000`, role: 'server', error: new Error('x') });
      assert.equal(lines.length, 5);
      // The next second: the summary first, then new lines.
      t += 1000;
      publish({ peer: '127.0.0.9%6000', role: 'server', error: new Error('x') });
      assert.equal(lines.length, 7, lines.join('\n'));
      assert.match(lines[5]!, /suppressed 55 similar lines/);
      assert.match(lines[6]!, /from 127\.0\.0\.9:6000/);
      publish({ peer: '127.0.0.9%6001', role: 'server', error: new Error('x') });
      publish({ peer: '127.0.0.9%6002', role: 'server', error: new Error('x') });
    } finally {
      stop();
    }
    // Stopping prints what was still suppressed.
    assert.equal(lines.length, 9);
    assert.match(lines[8]!, /suppressed 1 similar line /);
  });
});
