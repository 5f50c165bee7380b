import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCapture, partialCapture } from '../../src/capture/reader.js';
import { CaptureFormatError } from '../../src/errors.js';
import { epb, idb, pcap, shb, spb, u32, unknownBlock } from '../vectors/captures/build.js';

const A = Buffer.from([0x45, 1, 2, 3]);
const B = Buffer.from([0x60, 9, 8, 7, 6]);

describe('pcap reader', () => {
  for (const le of [true, false]) {
    for (const nano of [false, true]) {
      it(`reads ${le ? 'little' : 'big'}-endian ${nano ? 'nanosecond' : 'microsecond'} pcap`, () => {
        const file = pcap(
          [
            { data: A, sec: 1_686_755_850, frac: nano ? 631_606_328 : 631_606 },
            { data: B, sec: 1_686_755_851, frac: 5, originalLength: 100 },
          ],
          { linkType: 101, le, nano },
        );
        const cap = parseCapture(file);
        assert.equal(cap.format, 'pcap');
        assert.equal(cap.byteOrder, le ? 'little-endian' : 'big-endian');
        assert.equal(cap.precision, nano ? 'nano' : 'micro');
        assert.equal(cap.interfaces[0]?.linkType, 101);
        assert.equal(cap.frames.length, 2);
        assert.deepEqual(Buffer.from(cap.frames[0]?.data ?? []), A);
        assert.equal(cap.frames[0]?.seconds, 1_686_755_850);
        assert.equal(cap.frames[0]?.nanos, nano ? 631_606_328 : 631_606_000);
        assert.equal(cap.frames[1]?.nanos, nano ? 5 : 5000);
        assert.equal(cap.frames[1]?.originalLength, 100);
        assert.equal(cap.frames[1]?.number, 2);
      });
    }
  }

  it('rejects a bad magic and a short file', () => {
    assert.throws(() => parseCapture(Buffer.from('hello world, not a capture')), CaptureFormatError);
    assert.throws(() => parseCapture(Buffer.alloc(2)), CaptureFormatError);
    assert.throws(() => parseCapture(Buffer.alloc(0)), CaptureFormatError);
  });

  it('reports truncation with the frames read so far', () => {
    const file = pcap([{ data: A }, { data: B }], { linkType: 1 });
    const cut = file.subarray(0, file.length - 2);
    try {
      parseCapture(cut);
      assert.fail('should throw');
    } catch (e) {
      assert.ok(e instanceof CaptureFormatError);
      assert.equal(e.code, 'COAP_ERR_CAPTURE_FORMAT');
      const partial = partialCapture(e);
      assert.equal(partial?.frames.length, 1);
      assert.match(e.message, /truncated pcap record data/);
    }
  });
});

describe('pcapng reader', () => {
  for (const le of [true, false]) {
    it(`reads a ${le ? 'little' : 'big'}-endian section with IDB, EPB, SPB and skips unknown blocks`, () => {
      const file = Buffer.concat([
        shb(le),
        idb(113, le, 9),
        unknownBlock(4, le), // name resolution block
        epb(0, 1_686_755_850_631_606_328n, A, le),
        unknownBlock(0x40000bad, le),
        spb(B, le),
        unknownBlock(5, le), // interface statistics
      ]);
      const cap = parseCapture(file);
      assert.equal(cap.format, 'pcapng');
      assert.equal(cap.byteOrder, le ? 'little-endian' : 'big-endian');
      assert.equal(cap.interfaces.length, 1);
      assert.equal(cap.interfaces[0]?.linkType, 113);
      assert.equal(cap.interfaces[0]?.unitsPerSecond, 1_000_000_000n);
      assert.equal(cap.frames.length, 2);
      assert.equal(cap.frames[0]?.seconds, 1_686_755_850);
      assert.equal(cap.frames[0]?.nanos, 631_606_328);
      assert.deepEqual(Buffer.from(cap.frames[0]?.data ?? []), A);
      assert.deepEqual(Buffer.from(cap.frames[1]?.data ?? []), B);
      assert.equal(cap.frames[1]?.linkType, 113);
    });
  }

  it('applies if_tsresol: default microseconds, power of ten, power of two', () => {
    const le = true;
    const file = Buffer.concat([
      shb(le),
      idb(1, le), // default 10^-6
      idb(101, le, 3), // 10^-3
      idb(276, le, 0x80 | 10), // 2^-10
      epb(0, 1_500_000n, A, le),
      epb(1, 2_250n, A, le),
      epb(2, 3n * 1024n + 512n, A, le),
    ]);
    const cap = parseCapture(file);
    assert.deepEqual(
      cap.frames.map((f) => [f.linkType, f.seconds, f.nanos]),
      [
        [1, 1, 500_000_000],
        [101, 2, 250_000_000],
        [276, 3, 500_000_000],
      ],
    );
  });

  it('handles several sections with different byte orders', () => {
    const file = Buffer.concat([
      shb(true),
      idb(1, true),
      epb(0, 0n, A, true),
      shb(false),
      idb(101, false),
      epb(0, 0n, B, false),
    ]);
    const cap = parseCapture(file);
    assert.deepEqual(
      cap.frames.map((f) => [f.linkType, f.interfaceId]),
      [
        [1, 0],
        [101, 1],
      ],
    );
  });

  it('rejects corrupt blocks with partial results', () => {
    const good = Buffer.concat([shb(true), idb(1, true), epb(0, 0n, A, true)]);
    const badTrailer = Buffer.concat([good, epb(0, 0n, B, true)]);
    badTrailer.writeUInt32LE(9999, badTrailer.length - 4);
    const badLen = Buffer.concat([good, u32(6, true), u32(7, true), u32(0, true)]);
    const unknownIf = Buffer.concat([good, epb(5, 0n, B, true)]);
    const noShb = Buffer.concat([idb(1, true)]);
    for (const [name, file] of [
      ['trailer mismatch', badTrailer],
      ['block length', badLen],
      ['unknown interface', unknownIf],
    ] as const) {
      try {
        parseCapture(file);
        assert.fail(`${name}: should throw`);
      } catch (e) {
        assert.ok(e instanceof CaptureFormatError, name);
        assert.equal(partialCapture(e)?.frames.length, 1, name);
      }
    }
    assert.throws(() => parseCapture(noShb), CaptureFormatError);
  });
});
