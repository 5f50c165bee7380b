/**
 * A request's one deadline (`timeout`, every block of a block-wise transfer
 * included) runs on the client's Clock, the one its retransmission timers
 * use: on a VirtualClock a transfer whose first block took half the timeout
 * fails exactly at the timeout, not a full timeout after the first block.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { TimeoutError } from '../../src/errors.js';
import { VirtualClock } from '../../src/util/clock.js';
import { onVirtualTime } from '../helpers/timing.js';

const FAST = { ackTimeout: 40, ackRandomFactor: 1.5, maxRetransmit: 2 };

test('the overall timeout of a block-wise GET is on the client clock', async () => {
  // Answers block 0 only when retransmitted (so it arrives after 40-60 virtual ms), then nothing.
  const sock = dgram.createSocket('udp4');
  const seen = new Set<string>();
  let answered = false;
  sock.on('message', (m, r) => {
    const mid = m.subarray(2, 4).toString('hex');
    if (!seen.has(mid)) {
      seen.add(mid);
      return;
    }
    if (answered) return;
    answered = true;
    const tkl = m[0]! & 0x0f;
    const head = Buffer.from([0x60 | tkl, 0x45, m[2]!, m[3]!]);
    // Block2 (23): num 0, more, szx 6 (1024 bytes).
    const block2 = Buffer.from([0xd1, 23 - 13, 0x0e]);
    sock.send(
      Buffer.concat([head, m.subarray(4, 4 + tkl), block2, Buffer.from([0xff]), Buffer.alloc(1024, 0x61)]),
      r.port,
      r.address,
    );
  });
  await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
  const clock = new VirtualClock();
  const c = new CoapClient({ transmission: FAST, clock });
  try {
    const p = c.get(`coap://127.0.0.1:${sock.address().port}/big`, { timeout: 100 });
    const took = await onVirtualTime(clock, p);
    await assert.rejects(
      p,
      (e: unknown) => e instanceof TimeoutError && /within the 100 ms timeout/.test(e.message),
    );
    assert.ok(answered, 'block 0 was answered');
    assert.equal(took, 100, `failed after ${took} virtual ms`);
  } finally {
    await c.close();
    await new Promise<void>((res) => sock.close(() => res()));
  }
});
