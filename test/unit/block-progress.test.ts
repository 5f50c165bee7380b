/** Block-wise helpers: SZX arithmetic, block sizes, the progress bar. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blockSizeToSzx } from '../../src/blockwise/client.js';
import { sizeToSzxFloor, szxToSize } from '../../src/blockwise/common.js';
import { createProgressBar, formatBytes, formatProgress } from '../../src/blockwise/progress.js';
import { InvalidArgumentError } from '../../src/errors.js';

describe('block sizes (RFC 7959 §2.2)', () => {
  it('SZX 0..6 are 16..1024 bytes', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(szxToSize), [16, 32, 64, 128, 256, 512, 1024]);
    assert.equal(blockSizeToSzx(16), 0);
    assert.equal(blockSizeToSzx(1024), 6);
    assert.equal(blockSizeToSzx(undefined), 6);
  });
  it('rejects sizes that are not a power of two in range (BERT is TCP-only)', () => {
    for (const bad of [0, 8, 100, 2048, 1000]) assert.throws(() => blockSizeToSzx(bad), InvalidArgumentError);
  });
  it('sizeToSzxFloor clamps', () => {
    assert.equal(sizeToSzxFloor(5000), 6);
    assert.equal(sizeToSzxFloor(100), 2);
    assert.equal(sizeToSzxFloor(1), 0);
  });
});

describe('progress bar', () => {
  it('formats bytes', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(1 << 20), '1.0 MiB');
  });
  it('shows percent, bytes, blocks, rate and ETA when the total is known', () => {
    const line = formatProgress(
      { direction: 'download', bytes: 512 * 1024, totalBytes: 1 << 20, blocks: 512 },
      1000,
      120,
      'GET /big',
    );
    assert.match(
      line,
      /^GET \/big ↓ \[#+-+\] {2}50% {2}512\.0 KiB\/1\.0 MiB {2}512 blocks {2}512\.0 KiB\/s {2}ETA 1s$/,
    );
    assert.ok(line.length <= 120);
  });
  it('without a total: no bar, no ETA', () => {
    const line = formatProgress({ direction: 'upload', bytes: 2048, blocks: 2 }, 2000, 80);
    assert.equal(line, '↑ 2.0 KiB  2 blocks  1.0 KiB/s');
  });
  it('draws only on a TTY, throttled, and ends the line', () => {
    const out: string[] = [];
    let t = 0;
    const quiet = createProgressBar({ stream: { isTTY: false, write: (s) => out.push(s) } });
    quiet.update({ direction: 'upload', bytes: 1, blocks: 1 });
    quiet.done();
    assert.equal(quiet.enabled, false);
    assert.equal(out.length, 0);
    const bar = createProgressBar({
      stream: { isTTY: true, columns: 80, write: (s) => out.push(s) },
      now: () => t,
    });
    bar.update({ direction: 'upload', bytes: 1024, totalBytes: 4096, blocks: 1 });
    t = 50;
    bar.update({ direction: 'upload', bytes: 2048, totalBytes: 4096, blocks: 2 });
    assert.equal(out.length, 1, 'throttled to one draw per 100 ms');
    t = 200;
    bar.update({ direction: 'upload', bytes: 4096, totalBytes: 4096, blocks: 4 });
    bar.done();
    assert.equal(out.at(-1), '\n');
    assert.ok(out.every((s) => s === '\n' || s.startsWith('\r')));
    assert.match(out.at(-2)!, /100%/);
  });
});
