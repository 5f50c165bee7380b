/**
 * The group transport's response rate limits (RFC 7252 §11.3) refill on the
 * Clock, not the wall clock: on a VirtualClock a spent per-destination bucket
 * gives one more response after exactly 1/rate seconds of virtual time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeMessage } from '../../src/codec/message.js';
import { MessageType, ResponseCode } from '../../src/constants/codes.js';
import { GroupTransport } from '../../src/multicast/transport.js';
import { makePeer, type Peer } from '../../src/transport/transport.js';
import type { UdpTransport } from '../../src/transport/udp.js';
import { VirtualClock } from '../../src/util/clock.js';

test('rate limits refill on the virtual clock', async () => {
  const sent: Peer[] = [];
  const sock = {
    maxMessageSize: 1152,
    family: 'IPv4',
    send: (_d: Uint8Array, peer: Peer) => void sent.push(peer),
    attach: () => undefined,
    localAddress: () => ({ address: '0.0.0.0', port: 5683, family: 'IPv4' }),
  };
  const clock = new VirtualClock();
  const t = new GroupTransport(sock as unknown as UdpTransport, '224.0.1.187', {
    rateLimit: { perPeer: 2, total: 100 },
    clock,
  });
  const res = encodeMessage({
    type: MessageType.NON,
    code: ResponseCode.Content,
    messageId: 7,
    token: Buffer.from([1]),
  });
  const to = makePeer('10.0.0.1', 1000);
  for (let i = 0; i < 5; i++) t.send(res, to);
  assert.equal(sent.length, 2, 'the bucket of 2 is spent');
  await clock.advance(499);
  t.send(res, to);
  assert.equal(sent.length, 2, 'half a token after 499 ms (2 per second)');
  await clock.advance(1);
  t.send(res, to);
  assert.equal(sent.length, 3, 'one token after 500 ms of virtual time');
});
