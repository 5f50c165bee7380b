/**
 * RFC 7641 §4.5.2: when the resource changes while a CON notification is
 * still being retransmitted, the newest state replaces it — its next
 * retransmissions carry the newest state (new sequence number, new Message
 * ID) and the retransmission counter and timeout go on. Over the in-memory
 * transport, with a raw client that answers only when a test says so; every
 * step waits for a datagram, never for a fixed time.
 */

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { getUintOption } from '../../src/codec/options.js';
import { MessageType, Method, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { Endpoint } from '../../src/endpoint/endpoint.js';
import type { ObserveEvent } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import type { MemoryTransport } from '../../src/transport/memory.js';
import { MemoryNetwork } from '../../src/transport/memory.js';
import { RawPeer, type Received } from '../helpers/memory.js';

const MAX_RETRANSMIT = 3;
const TRANSMISSION = { ackTimeout: 40, ackRandomFactor: 1.0, maxRetransmit: MAX_RETRANSMIT };
const TOKEN = Buffer.from([0xab, 0xcd]);

interface Rig {
  server: CoapServer;
  raw: RawPeer;
  st: MemoryTransport;
  state: { value: string };
  events: ObserveEvent[];
  /** Notifications received so far (CON or NON responses with our token). */
  notes(): Received[];
  nextNote(after: number): Promise<Received>;
  ack(messageId: number): void;
}

let net: MemoryNetwork;
let rig: Rig;

beforeEach(async () => {
  net = new MemoryNetwork();
  const server = new CoapServer({ transmission: TRANSMISSION, amplificationFactor: false });
  const observe = server.enableObserve({ confirmable: true, refreshBeforeMaxAge: false });
  const events: ObserveEvent[] = [];
  observe.onEvent = (e) => events.push(e);
  const state = { value: 'v0' };
  server.get('/obs', () => ({ payload: state.value }), { obs: true });
  const st = net.createTransport('10.0.0.1', 5683);
  await server.listen(st);
  const raw = new RawPeer(net.createTransport('10.0.0.9', 40000));
  const isNote = (r: Received) =>
    r.msg !== undefined &&
    (r.msg.type === MessageType.CON || r.msg.type === MessageType.NON) &&
    r.msg.code >> 5 === 2 &&
    r.msg.token.equals(TOKEN);
  rig = {
    server,
    raw,
    st,
    state,
    events,
    notes: () => raw.received.filter(isNote),
    async nextNote(after) {
      await raw.until(() => rig.notes().length > after, 5000);
      return rig.notes()[after]!;
    },
    ack(messageId) {
      raw.send(st.self, { type: MessageType.ACK, code: 0, messageId });
    },
  };
  // Register: CON GET /obs with Observe=0; the 2.05 comes piggybacked on the ACK.
  raw.send(st.self, {
    type: MessageType.CON,
    code: Method.GET,
    messageId: 0x1000,
    token: TOKEN,
    options: [
      { number: OptionNumber.Observe, value: Buffer.alloc(0) },
      { number: OptionNumber.UriPath, value: Buffer.from('obs') },
    ],
  });
  const reg = await raw.until((r) => r.msg?.type === MessageType.ACK && r.msg.messageId === 0x1000);
  assert.equal(reg.msg!.code, ResponseCode.Content);
  assert.ok(getUintOption(reg.msg!.options, OptionNumber.Observe) !== undefined, 'registered');
});

afterEach(async () => {
  await rig.server.close();
  await rig.raw.transport.close();
});

function change(value: string): void {
  rig.state.value = value;
  rig.server.observe!.notify('/obs');
}

const seqOf = (r: Received) => getUintOption(r.msg!.options, OptionNumber.Observe)!;

describe('observe: a CON notification in flight is replaced by the newest state (RFC 7641 §4.5.2)', () => {
  it('each retransmission carries the state current when it goes out; the counter is not reset', async () => {
    change('v1');
    const first = await rig.nextNote(0);
    assert.equal(first.msg!.type, MessageType.CON);
    assert.equal(first.msg!.payload.toString(), 'v1');
    const sent = [first];
    // The observer never answers; the resource changes (twice) after every transmission.
    for (let k = 1; k <= MAX_RETRANSMIT; k++) {
      change(`v${k}a`);
      change(`v${k + 1}`);
      sent.push(await rig.nextNote(k));
    }
    for (let k = 1; k <= MAX_RETRANSMIT; k++) {
      const m = sent[k]!.msg!;
      assert.equal(m.type, MessageType.CON);
      assert.equal(m.payload.toString(), `v${k + 1}`, `transmission ${k + 1} carries the newest state`);
      assert.ok(seqOf(sent[k]!) > seqOf(sent[k - 1]!), 'a newer state has a newer sequence number');
      assert.notEqual(m.messageId, sent[k - 1]!.msg!.messageId, 'a new message needs a new Message ID');
    }
    // The retransmission counter went on: after MAX_RETRANSMIT retransmissions the observer is removed.
    const removed = await waitEvent((e) => e.type === 'removed');
    assert.deepEqual(removed, { type: 'removed', path: '/obs', peer: rig.raw.peer.key, reason: 'timeout' });
    assert.equal(rig.notes().length, 1 + MAX_RETRANSMIT, 'one transmission plus MAX_RETRANSMIT, no more');
    assert.equal(rig.server.observe!.observerCount(), 0);
  });

  it('an ACK of the newest Message ID ends the CON: nothing more is sent until the next change', async () => {
    change('v1');
    await rig.nextNote(0);
    change('v2');
    const second = await rig.nextNote(1);
    assert.equal(second.msg!.payload.toString(), 'v2');
    rig.ack(second.msg!.messageId);
    // The next change is a fresh notification (the CON was acknowledged, not timed out).
    change('v3');
    const third = await rig.nextNote(2);
    assert.equal(third.msg!.payload.toString(), 'v3');
    assert.notEqual(third.msg!.messageId, second.msg!.messageId);
    rig.ack(third.msg!.messageId);
    assert.equal(rig.server.observe!.observerCount(), 1);
    assert.ok(!rig.events.some((e) => e.type === 'removed'));
  });

  it('a late ACK of a replaced Message ID ends the CON, and the newest state follows in a new notification', async () => {
    change('v1');
    const first = await rig.nextNote(0);
    change('v2'); // replaces v1 before its retransmission
    // The ACK of the first transmission (v1) arrives: the peer is there but holds v1.
    rig.ack(first.msg!.messageId);
    const next = await rig.nextNote(1);
    assert.equal(next.msg!.payload.toString(), 'v2');
    assert.ok(seqOf(next) > seqOf(first));
    assert.equal(rig.server.observe!.observerCount(), 1);
    rig.ack(next.msg!.messageId);
  });

  it('a RST to any Message ID the notification was sent under removes the observer', async () => {
    change('v1');
    const first = await rig.nextNote(0);
    change('v2');
    await rig.nextNote(1);
    rig.raw.send(rig.st.self, { type: MessageType.RST, code: 0, messageId: first.msg!.messageId });
    const removed = await waitEvent((e) => e.type === 'removed');
    assert.equal((removed as { reason: string }).reason, 'reset');
  });
});

describe('MessageLayer.replaceCon', () => {
  it('replaces the bytes of a pending CON, keeps its counter, matches old and new Message IDs', async () => {
    const ep = new Endpoint(net.createTransport('10.0.0.2', 41000), { transmission: TRANSMISSION });
    const raw = new RawPeer(net.createTransport('10.0.0.3', 41001));
    try {
      const ml = ep.messageLayer;
      const ps = ml.peerState(raw.peer);
      const enc = (mid: number, text: string) =>
        Buffer.from([0x40 | 0, ResponseCode.Content, mid >> 8, mid & 0xff, 0xff, ...Buffer.from(text)]);
      const mid1 = ml.nextMessageId();
      let acked: number | undefined;
      let timedOut = false;
      ml.sendCon(ps, mid1, enc(mid1, 'a'), {
        onAck: (a) => {
          acked = a.messageId;
        },
        onReset: () => {},
        onTimeout: () => {
          timedOut = true;
        },
      });
      await raw.waitFor(1);
      const mid2 = ml.nextMessageId();
      assert.equal(ml.replaceCon(raw.peer, mid2, mid2, enc(mid2, 'x')), false, 'only the pending Message ID');
      assert.equal(ml.replaceCon(raw.peer, mid1, mid2, enc(mid2, 'b')), true);
      const mid3 = ml.nextMessageId();
      // Replaced twice before the next retransmission: mid2 was never sent.
      assert.equal(ml.replaceCon(raw.peer, mid2, mid3, enc(mid3, 'c')), true);
      const [, second] = await raw.waitFor(2);
      assert.equal(second!.msg!.messageId, mid3);
      assert.equal(second!.msg!.payload.toString(), 'c');
      assert.equal(ps.pendingCons, 1);
      // An ACK for the Message ID sent first still ends the CON.
      raw.send((ep.transport as MemoryTransport).self, { type: MessageType.ACK, code: 0, messageId: mid1 });
      await waitFor(() => acked !== undefined);
      assert.equal(acked, mid1);
      assert.equal(ps.pendingCons, 0);
      assert.equal(timedOut, false);
      assert.equal(ml.replaceCon(raw.peer, mid3, ml.nextMessageId(), enc(0, 'd')), false, 'done');
    } finally {
      await ep.close();
      await raw.transport.close();
    }
  });
});

async function waitEvent(pred: (e: ObserveEvent) => boolean): Promise<ObserveEvent> {
  await waitFor(() => rig.events.some(pred));
  return rig.events.find(pred)!;
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
