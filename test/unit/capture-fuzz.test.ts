/** Truncated / corrupt captures: only CaptureFormatError (with partial frames) or a result. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseCapture, partialCapture } from '../../src/capture/reader.js';
import { CaptureFormatError } from '../../src/errors.js';
import { byteMutations, mutate } from '../helpers/mutations.js';
import { scenarioCapture } from '../vectors/captures/scenario.js';

const GOLIOTH = readFileSync(new URL('../vectors/captures/golioth_basics_psk.pcapng', import.meta.url));

/** End offsets of the pcapng blocks and whether each is a packet block. */
function pcapngBlocks(b: Buffer): { end: number; packet: boolean }[] {
  const out: { end: number; packet: boolean }[] = [];
  let o = 0;
  while (o < b.length) {
    const type = b.readUInt32LE(o);
    const len = b.readUInt32LE(o + 4);
    o += len;
    out.push({ end: o, packet: type === 6 || type === 3 });
  }
  return out;
}

function parseOrPartial(bytes: Uint8Array): { frames: number; error?: CaptureFormatError } {
  try {
    return { frames: parseCapture(bytes).frames.length };
  } catch (e) {
    assert.ok(e instanceof CaptureFormatError, `unexpected ${String(e)}`);
    const partial = partialCapture(e);
    assert.ok(partial, 'CaptureFormatError carries partial results');
    return { frames: partial.frames.length, error: e };
  }
}

describe('capture reader robustness', () => {
  it('truncation of the shared capture at every byte offset', () => {
    const blocks = pcapngBlocks(GOLIOTH);
    assert.equal(blocks.filter((b) => b.packet).length, 78);
    const t0 = performance.now();
    for (let cut = 0; cut <= GOLIOTH.length; cut++) {
      const r = parseOrPartial(GOLIOTH.subarray(0, cut));
      const complete = blocks.filter((b) => b.end <= cut);
      const expectedFrames = complete.filter((b) => b.packet).length;
      assert.equal(r.frames, expectedFrames, `cut at ${cut}`);
      const atBoundary = complete.length > 0 && complete[complete.length - 1]?.end === cut;
      assert.equal(r.error === undefined, atBoundary, `cut at ${cut}: error iff not at a block boundary`);
    }
    assert.ok(performance.now() - t0 < 20_000);
  });

  it('truncation of a pcap file at every byte offset', () => {
    const file = scenarioCapture();
    const full = parseCapture(file);
    for (let cut = 0; cut < file.length; cut++) {
      const r = parseOrPartial(file.subarray(0, cut));
      assert.ok(r.frames <= full.frames.length);
      if (cut < 24) assert.ok(r.error);
    }
  });

  it('random bytes and mutated captures never throw anything but CaptureFormatError', () => {
    const magics = [
      Buffer.from([0x0a, 0x0d, 0x0d, 0x0a]),
      Buffer.from([0xd4, 0xc3, 0xb2, 0xa1]),
      Buffer.from([0xa1, 0xb2, 0x3c, 0x4d]),
      Buffer.alloc(0),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...magics), fc.uint8Array({ maxLength: 512 }), (magic, rest) => {
        const t = performance.now();
        parseOrPartial(Buffer.concat([magic, rest]));
        assert.ok(performance.now() - t < 5000);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(byteMutations(GOLIOTH.length, 8), (mutations) => {
        parseOrPartial(mutate(GOLIOTH, mutations));
      }),
      { numRuns: 300 },
    );
  });
});
