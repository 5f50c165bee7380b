/**
 * The message layer over a reliable transport (RFC 8323): no retransmission,
 * no deduplication, no ACK or RST, the same exchange layer; a CoAP ping
 * waits for the Pong (handed up as an RST) and times out without one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { MessageType } from '../../src/constants/codes.js';
import { Endpoint } from '../../src/endpoint/endpoint.js';
import {
  makePeer,
  type Peer,
  type Transport,
  type TransportHandlers,
} from '../../src/transport/transport.js';
import { VirtualClock } from '../../src/util/clock.js';

class FakeReliable implements Transport {
  readonly scheme = 'coap+tcp';
  readonly reliable = true;
  readonly maxMessageSize = 1152;
  handlers: TransportHandlers | undefined;
  sent: Buffer[] = [];
  attach(h: TransportHandlers): void {
    this.handlers = h;
  }
  send(data: Uint8Array): void {
    this.sent.push(Buffer.from(data));
  }
  localAddress() {
    return { address: '127.0.0.1', port: 1, family: 'IPv4' as const };
  }
  async close(): Promise<void> {}
}

const peer: Peer = makePeer('127.0.0.2', 2000);
/** A frame as the transport hands it up: NON, Message ID 0. */
const incoming = (code: number, token: number[], payload = '') =>
  encodeMessage({
    type: MessageType.NON,
    code,
    messageId: 0,
    token: Buffer.from(token),
    payload: Buffer.from(payload),
  });

test('requests with the same (absent) Message ID are all handled; nothing is acknowledged', async () => {
  const clock = new VirtualClock();
  const t = new FakeReliable();
  const ep = new Endpoint(t, { clock });
  let handled = 0;
  ep.handler = () => {
    handled++;
    return { code: 0x45, payload: Buffer.from('ok') };
  };
  t.handlers!.message(incoming(1, [1]), peer);
  t.handlers!.message(incoming(1, [2]), peer);
  t.handlers!.message(incoming(1, [2]), peer);
  assert.equal(handled, 3);
  assert.equal(t.sent.length, 3);
  for (const b of t.sent) {
    const m = decodeMessage(b);
    assert.equal(m.code, 0x45);
    assert.notEqual(m.type, MessageType.ACK); // no piggybacking on an ACK that does not exist
  }
  // A response matching nothing is ignored: no RST.
  t.handlers!.message(incoming(0x45, [9, 9]), peer);
  assert.equal(t.sent.length, 3);
  await ep.close();
});

test('a CON request goes out once (no retransmission) and its response is matched by token', async () => {
  const clock = new VirtualClock();
  const t = new FakeReliable();
  const ep = new Endpoint(t, { clock });
  let got: number | undefined;
  const ex = ep.request(
    peer,
    { code: 1 },
    {
      onResponse: (r) => {
        got = r.message.code;
        return true;
      },
      onError: () => {},
    },
  );
  await clock.advance(60_000);
  assert.equal(t.sent.length, 1, 'no retransmission');
  t.handlers!.message(incoming(0x45, [...ex.token]), peer);
  assert.equal(got, 0x45);
  await ep.close();
});

test('ping: resolves on the Pong (an RST for its Message ID), fails when the connection fails', async () => {
  const clock = new VirtualClock();
  const t = new FakeReliable();
  const ep = new Endpoint(t, { clock });
  const p = ep.ping(peer);
  assert.equal(t.sent.length, 1);
  const mid = t.sent[0]!.readUInt16BE(2);
  t.handlers!.message(Buffer.from([0x70, 0, mid >> 8, mid & 0xff]), peer);
  assert.ok((await p) >= 0);
  const p2 = ep.ping(peer);
  t.handlers!.peerError!(peer, new Error('connection closed'));
  await assert.rejects(p2, /connection closed/);
  await ep.close();
});
