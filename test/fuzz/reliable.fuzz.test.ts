/**
 * Deterministic fuzzing of the RFC 8323 receive path: mutated streams of
 * valid frames (bit flips, truncation, splices, random chunking) fed to a
 * live TCP server connection after its CSM. Invariants: the server never
 * throws or crashes, holds at most one frame per connection, answers or
 * aborts (7.05) each fuzzed connection, and keeps serving a well-behaved
 * client throughout. The PRNG is seeded (FUZZ_SEED to explore others).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { encodeCsm, encodeFrame, FrameDecoder } from '../../src/codec/reliable.js';
import { CoapServer } from '../../src/server/server.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import { until } from '../helpers/timing.js';

let seed = Number(process.env.FUZZ_SEED ?? 8323) >>> 0;
const rand = (n: number) => {
  seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
  return seed % n;
};

const seeds = [
  encodeFrame({ code: 1, token: Buffer.from([1, 2]), options: [{ number: 11, value: Buffer.from('echo') }] }),
  encodeFrame({
    code: 2,
    token: Buffer.from([3]),
    options: [{ number: 11, value: Buffer.from('echo') }],
    payload: Buffer.alloc(300, 0x61),
  }),
  encodeFrame({ code: 0xe2, token: Buffer.from([9]) }),
  encodeFrame({ code: 0xe1, options: [{ number: 2, value: Buffer.from([4, 0]) }] }),
  encodeFrame({ code: 0x45, token: Buffer.from([7]), payload: Buffer.from('x') }),
  Buffer.from([0xf0, 0, 0, 0, 1, 1]),
];

function mutate(b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (rand(4)) {
    case 0:
      if (out.length > 0) out[rand(out.length)]! ^= 1 << rand(8);
      return out;
    case 1:
      return out.subarray(0, rand(out.length + 1));
    case 2:
      return Buffer.concat([out, seeds[rand(seeds.length)]!.subarray(rand(8))]);
    default:
      if (out.length > 0) out[rand(out.length)] = [0x00, 0xff, 0xd0, 0xe0, 0xf0, 0x0f][rand(6)]!;
      return out;
  }
}

describe('RFC 8323 receive path under fuzzed streams', { timeout: 120_000 }, () => {
  const server = new CoapServer();
  let t: TcpTransport;
  let port = 0;
  before(async () => {
    server.post('/echo', (req) => ({ code: '2.04', payload: req.payload }));
    server.get('/echo', () => 'ok');
    t = await TcpTransport.create({ host: '127.0.0.1', port: 0, maxConnectionsPerAddress: 64 });
    await server.listen(t);
    port = t.localAddress().port;
  });
  after(async () => {
    await server.close();
  });

  it('200 fuzzed connections: no crash, bounded, a normal client served throughout', async () => {
    const good = new CoapClient();
    try {
      for (let round = 0; round < 200; round++) {
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('error', () => {});
        const closed = new Promise<void>((r) => s.once('close', () => r()));
        await new Promise<void>((r) => s.once('connect', () => r()));
        const frames: Buffer[] = [encodeCsm(undefined, false, false)];
        for (let i = 0, n = 1 + rand(6); i < n; i++) {
          const f = seeds[rand(seeds.length)]!;
          frames.push(rand(3) === 0 ? f : mutate(f));
        }
        const stream = Buffer.concat(frames);
        // Random chunking.
        for (let pos = 0; pos < stream.length; ) {
          const n = 1 + rand(40);
          s.write(stream.subarray(pos, pos + n));
          pos += n;
        }
        // What the server sent back must be well-formed frames.
        let rx = Buffer.alloc(0);
        s.on('data', (d) => {
          rx = Buffer.concat([rx, d]);
        });
        if (round % 20 === 0) {
          assert.equal((await good.get(`coap+tcp://127.0.0.1:${port}/echo`)).text(), 'ok');
        }
        await new Promise((r) => setTimeout(r, 5));
        s.end();
        await closed;
        const dec = new FrameDecoder(1 << 20);
        dec.push(rx, () => {});
      }
      await until(() => t.connectionCount <= 1, 'fuzzed connections all closed');
      assert.equal((await good.get(`coap+tcp://127.0.0.1:${port}/echo`)).text(), 'ok');
    } finally {
      await good.close();
    }
  });
});
