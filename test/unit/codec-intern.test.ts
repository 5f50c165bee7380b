/**
 * utf8Interned() must always return exactly buf.toString('utf8'), whatever
 * the cache holds (hash collisions, invalid UTF-8, long values).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { utf8Interned } from '../../src/codec/intern.js';

test('utf8Interned equals toString("utf8") for any bytes, repeated or not', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 50 }), (values) => {
      for (const v of [...values, ...values]) {
        const b = Buffer.from(v);
        assert.equal(utf8Interned(b), b.toString('utf8'));
      }
    }),
  );
});

test('utf8Interned: a cached value is not returned for other bytes in the same slot', () => {
  // Fill the cache with many distinct short values, then check each again: every
  // slot collision must be caught by the byte comparison.
  const values = Array.from({ length: 5000 }, (_, i) => Buffer.from(`seg${i}`));
  for (const v of values) utf8Interned(v);
  for (const v of values) assert.equal(utf8Interned(v), v.toString('utf8'));
  // Invalid UTF-8 decodes to U+FFFD exactly as toString does.
  const bad = Buffer.from([0x66, 0xff, 0xfe, 0x6f]);
  assert.equal(utf8Interned(bad), bad.toString('utf8'));
  assert.equal(utf8Interned(bad), '\ufffd\ufffd'.replace(/^/, 'f').concat('o'));
});

test('utf8Interned: a view into a reused buffer is not confused with its later contents', () => {
  const shared = Buffer.from('hello');
  assert.equal(utf8Interned(shared), 'hello');
  shared.write('world');
  assert.equal(utf8Interned(shared), 'world');
});
