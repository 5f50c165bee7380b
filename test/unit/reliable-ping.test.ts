/**
 * Reliable transports remember the Message ID of each ping they send as 7.02 (the Pong comes
 * back as an RST). Only a ping is remembered: a message whose frame happens to have 0xE2 (the
 * code of 7.02) as its second byte (TCP framing, 239 bytes of body: Extended Length 226) is not.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { decodeFrame, encodeCsm, encodeFrame, FrameDecoder, SignalCode } from '../../src/codec/reliable.js';
import { TcpTransport } from '../../src/transport/tcp.js';
import { makePeer } from '../../src/transport/transport.js';
import { until } from '../helpers/timing.js';

describe('reliable transport pings', { timeout: 20_000 }, () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  it('a Pong with an empty token answers the oldest ping, not a message whose frame looks like one', async () => {
    const seen: Buffer[] = [];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((sock) => {
      sockets.add(sock);
      sock.write(encodeCsm(undefined, false, false));
      const decoder = new FrameDecoder(1 << 16);
      sock.on('data', (chunk) =>
        decoder.push(chunk, (frame) => {
          seen.push(frame);
          // libcoap 4.3.1 answers a Ping with a Pong that has an empty token.
          if (decodeFrame(frame).code === SignalCode.Ping) sock.write(encodeFrame({ code: SignalCode.Pong }));
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          server.close(() => r());
        }),
    );
    const port = (server.address() as net.AddressInfo).port;

    const t = await TcpTransport.create();
    cleanup.push(() => t.close());
    const got: Buffer[] = [];
    t.attach({ message: (d) => got.push(d) });
    const peer = makePeer('127.0.0.1', port);

    // NON 2.05, MID 0xabcd, no token, payload marker + 238 bytes: a 239-byte body.
    const big = Buffer.concat([Buffer.from([0x50, 0x45, 0xab, 0xcd, 0xff]), Buffer.alloc(238, 0x61)]);
    t.send(big, peer);
    // An empty CON, MID 0x1234: a ping.
    t.send(Buffer.from([0x40, 0x00, 0x12, 0x34]), peer);

    await until(() => got.length > 0, 'the RST for the ping');
    assert.equal(seen[1]![1], 0xe2, 'the message frame has 0xE2 as its second byte');
    assert.deepEqual(got[0], Buffer.from([0x70, 0x00, 0x12, 0x34]));
  });
});
