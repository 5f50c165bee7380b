/** dissect() on a real libcoap plain-CoAP capture, compared with tshark; exchange grouping. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dissect } from '../../src/dissect/dissect.js';
import { compareCoapWithTshark, hasTshark, tsharkJson } from '../vectors/captures/tshark.js';

const FILE = fileURLToPath(new URL('../vectors/captures/libcoap/libcoap_notls.pcapng', import.meta.url));

describe('libcoap capture (plain CoAP on port 15683)', () => {
  const result = dissect(readFileSync(FILE), { ports: [15683] });

  it('matches tshark field by field', { skip: hasTshark ? false : 'tshark is not installed' }, async () => {
    const packets = await tsharkJson(FILE, ['-d', 'udp.port==15683,coap']);
    assert.equal(compareCoapWithTshark(result, packets), 26);
    // tshark reassembles the Block2 body on the last block: same blocks, same size.
    const last = packets[9]._source.layers.coap;
    const bt = result.coap.blockTransfers[0];
    assert.equal(bt?.bytes, Number(last['coap.blocks']['coap.block.reassembled.length']));
    const responseFrames = (bt?.exchanges ?? []).map((id) => {
      const ex = result.coap.exchanges[id - 1];
      return result.coap.messages[ex?.messages[1]?.index ?? -1]?.frame;
    });
    assert.deepEqual(responseFrames, last['coap.blocks']['coap.block'].map(Number));
  });

  it('without --port the CoAP flow is recognised by content, with the same decoding', () => {
    const r = dissect(readFileSync(FILE));
    assert.equal(r.coap.messages.length, 26);
    assert.deepEqual(r.coap, result.coap);
    assert.ok(r.frames.every((f) => f.detectedBy === 'content'));
    assert.ok(result.frames.every((f) => f.detectedBy === 'port'));
  });

  it('normal libcoap traffic raises no expert info', () => {
    assert.deepEqual(
      result.frames.flatMap((f) => f.expert),
      [],
    );
  });

  it('groups the block-wise transfer, the observation and the other exchanges', () => {
    const bt = result.coap.blockTransfers;
    assert.equal(bt.length, 1);
    assert.deepEqual(
      [bt[0]?.uriPath, bt[0]?.blocks, bt[0]?.blockSize, bt[0]?.bytes, bt[0]?.complete],
      ['/.well-known/core', 5, 32, 151, true],
    );
    const ex = result.coap.exchanges;
    assert.deepEqual(
      ex.map((e) => [e.method, e.uriPath, e.kind]),
      [
        ['GET', '/.well-known/core', 'piggybacked'],
        ['GET', '/.well-known/core', 'piggybacked'],
        ['GET', '/.well-known/core', 'piggybacked'],
        ['GET', '/.well-known/core', 'piggybacked'],
        ['GET', '/.well-known/core', 'piggybacked'],
        ['GET', '/time', 'observe'],
        ['GET', '/time', 'piggybacked'],
        ['PUT', '/example_data', 'piggybacked'],
        ['GET', '/nothing', 'piggybacked'],
        ['GET', '/example_data', 'non'],
      ],
    );
    assert.deepEqual(
      ex[5]?.messages.map((m) => m.role),
      [
        'request (observe register)',
        'piggybacked response',
        'notification (Observe=3)',
        'ACK of notification (Observe=3)',
        'notification (Observe=4)',
        'ACK of notification (Observe=4)',
        'notification (Observe=5)',
        'ACK of notification (Observe=5)',
      ],
    );
    assert.equal(ex[6]?.messages[0]?.role, 'request (observe deregister)');
    assert.deepEqual(
      ex[9]?.messages.map((m) => m.role),
      ['request', 'response'],
    );
    assert.equal(result.coap.messages[23]?.codeName, '4.04 Not Found');
  });
});
