/** OuterBlockStore (RFC 8613 §4.1.3.4.2 reassembly state): global bound, per-peer share, expiry on the given clock. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeBlock } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { OuterBlockStore, outerBlock, withoutOuterBlock } from '../../src/oscore/outer-block.js';
import { VirtualClock } from '../../src/util/clock.js';

describe('OSCORE outer block-wise state', () => {
  it('bounds entries globally and per peer, and frees them when they expire', async () => {
    const clock = new VirtualClock();
    const s = new OuterBlockStore<number>({ maxEntries: 3, maxPerPeer: 2, lifetimeMs: 1000, clock });
    assert.equal(s.set('a', 'a1', 1), true);
    assert.equal(s.set('a', 'a2', 2), true);
    assert.equal(s.set('a', 'a3', 3), false, 'per-peer share used up');
    assert.equal(s.set('a', 'a1', 10), true, 'an existing entry is updated');
    assert.equal(s.set('b', 'b1', 4), true);
    assert.equal(s.set('c', 'c1', 5), false, 'global bound');
    assert.equal(s.get('a1'), 10);
    s.delete('a2');
    assert.equal(s.set('c', 'c1', 5), true, 'given back by delete');
    await clock.advance(1001);
    assert.equal(s.get('a1'), undefined, 'expired');
    assert.equal(s.set('d', 'd1', 6), true, 'expired entries are swept when the bound is reached');
    assert.ok(s.size <= 3);
  });

  it('reads outer Block options; a malformed one is null; strips the outer block-wise options', () => {
    const opts = [
      { number: OptionNumber.Oscore, value: Buffer.from([0x09]) },
      { number: OptionNumber.Block2, value: encodeBlock(2, true, 6) },
      { number: OptionNumber.Size2, value: Buffer.from([1]) },
      { number: OptionNumber.Block1, value: Buffer.from([1, 2, 3, 4]) },
    ];
    assert.deepEqual(outerBlock(opts, OptionNumber.Block2), { num: 2, more: true, szx: 6, size: 1024 });
    assert.equal(outerBlock(opts, OptionNumber.Block1), null);
    assert.equal(outerBlock([], OptionNumber.Block1), undefined);
    assert.deepEqual(
      withoutOuterBlock(opts).map((o) => o.number),
      [OptionNumber.Oscore],
    );
  });
});
