/** dissect() never throws on truncated / mutated captures and stays fast. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { dissect } from '../../src/dissect/dissect.js';
import { DtlsTracker } from '../../src/dissect/dtls.js';
import { renderJson, renderText } from '../../src/dissect/render.js';
import { byteMutations, mutate } from '../helpers/mutations.js';
import { scenarioCapture } from '../vectors/captures/scenario.js';

const GOLIOTH = readFileSync(new URL('../vectors/captures/golioth_basics_psk.pcapng', import.meta.url));
const PSK = Buffer.from('69af1685ba9080be907922728c1e97c5');
const SCENARIO = scenarioCapture();

function run(bytes: Uint8Array, psk?: Uint8Array): void {
  const t = performance.now();
  const r = dissect(bytes, psk ? { psk } : {});
  assert.ok(!r.warnings.some((w) => w.includes('internal decoder error')), r.warnings.join('\n'));
  renderText(r, { color: true });
  JSON.parse(renderJson(r));
  assert.ok(performance.now() - t < 10_000, 'bounded time');
}

describe('dissect robustness', () => {
  it('truncated shared capture: partial result with an error, never an exception', () => {
    const full = dissect(GOLIOTH, { psk: PSK });
    for (let cut = 0; cut < GOLIOTH.length; cut += 97) {
      const r = dissect(GOLIOTH.subarray(0, cut), { psk: PSK });
      assert.ok(r.frames.length <= 78);
      // Everything decoded before the cut matches the full decoding.
      for (const m of r.coap.messages)
        assert.equal(m.summary.split(' ')[1], full.coap.messages[m.index]?.summary.split(' ')[1]);
      if (r.error) assert.equal(r.error.code, 'COAP_ERR_CAPTURE_FORMAT');
    }
    // Cut inside the last packet block (the file ends with an interface statistics block).
    const lastBlock = GOLIOTH.readUInt32LE(GOLIOTH.length - 4);
    const cut = dissect(GOLIOTH.subarray(0, GOLIOTH.length - lastBlock - 10), { psk: PSK });
    assert.equal(cut.error?.code, 'COAP_ERR_CAPTURE_FORMAT');
    assert.equal(cut.frames.length, 77);
    assert.equal(cut.coap.messages.length, 63);
  });

  it('mutated shared capture (DTLS with PSK)', () => {
    fc.assert(
      fc.property(byteMutations(GOLIOTH.length, 6), (mutations) => {
        run(mutate(GOLIOTH, mutations), PSK);
      }),
      { numRuns: 60 },
    );
  });

  it('mutated plain CoAP capture', () => {
    fc.assert(
      fc.property(byteMutations(SCENARIO.length, 6), (mutations) => {
        run(mutate(SCENARIO, mutations));
      }),
      { numRuns: 400 },
    );
  });

  it('random DTLS datagrams never throw', () => {
    const record = fc
      .tuple(
        fc.integer({ min: 20, max: 25 }),
        fc.integer({ min: 0, max: 2 }),
        fc.uint8Array({ maxLength: 120 }),
      )
      .map(([type, epoch, body]) => {
        const h = Buffer.alloc(13);
        h[0] = type;
        h[1] = 0xfe;
        h[2] = 0xfd;
        h.writeUInt16BE(epoch, 3);
        h.writeUInt16BE(body.length, 11);
        return Buffer.concat([h, body]);
      });
    const handshake = fc
      .tuple(
        fc.constantFrom(1, 2, 3, 12, 14, 16, 20, 99),
        fc.nat(400),
        fc.nat(400),
        fc.uint8Array({ maxLength: 100 }),
      )
      .map(([t, len, off, body]) => {
        const h = Buffer.alloc(12);
        h[0] = t;
        h.writeUIntBE(len, 1, 3);
        h.writeUIntBE(off, 6, 3);
        h.writeUIntBE(body.length, 9, 3);
        const hs = Buffer.concat([h, body]);
        const r = Buffer.alloc(13);
        r[0] = 22;
        r[1] = 0xfe;
        r[2] = 0xfd;
        r.writeUInt16BE(hs.length, 11);
        return Buffer.concat([r, hs]);
      });
    fc.assert(
      fc.property(
        fc.array(fc.oneof(record, handshake, fc.uint8Array({ maxLength: 40 }).map(Buffer.from)), {
          maxLength: 8,
        }),
        (dgrams) => {
          const t = new DtlsTracker({ psk: PSK });
          for (const [i, d] of dgrams.entries()) {
            const r = t.processDatagram(
              i % 2 ? '1.1.1.1:5684' : '2.2.2.2:4000',
              i % 2 ? '2.2.2.2:4000' : '1.1.1.1:5684',
              d,
              new Set([5684]),
            );
            assert.ok(Array.isArray(r.records));
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
