/** RFC 7641 §3.4 notification ordering: 24-bit sequence numbers and the 128-second rule. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isFresher } from '../../src/observe/client.js';

describe('isFresher (RFC 7641 §3.4)', () => {
  it('a larger sequence number within 2^23 is newer', () => {
    assert.equal(isFresher(5, 0, 6, 1), true);
    assert.equal(isFresher(5, 0, 5 + (1 << 23) - 1, 1), true);
  });
  it('a smaller one, or one ahead by 2^23 or more, is older', () => {
    assert.equal(isFresher(6, 0, 5, 1), false);
    assert.equal(isFresher(5, 0, 5, 1), false, 'duplicate');
    assert.equal(isFresher(5, 0, 5 + (1 << 23), 1), false);
  });
  it('wraps around: 2^24-1 then 3 is newer', () => {
    assert.equal(isFresher(0xffffff, 0, 3, 1), true);
    assert.equal(isFresher(3, 0, 0xffffff, 1), false);
    // V1 > V2 by more than 2^23: newer.
    assert.equal(isFresher((1 << 23) + 2, 0, 1, 1), true);
  });
  it('anything more than 128 s after the last one is newer', () => {
    assert.equal(isFresher(10, 0, 3, 128_001), true);
    assert.equal(isFresher(10, 0, 3, 128_000), false);
  });
});
