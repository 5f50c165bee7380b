/**
 * The trace's turn buffer (src/trace/state.ts): a DTLS flight the peer sent in
 * several datagrams is shown as one flight even when its datagrams arrive over
 * several turns of the event loop (a busy machine), and nothing waits once the
 * flight has ended.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { HandshakeInfo, RecordEvent } from '../../src/dtls/diag.js';
import { TurnBuffer, type TurnEntry } from '../../src/trace/state.js';
import { until } from '../helpers/timing.js';

function hs(type: number, length = 10, fragmentLength = length): HandshakeInfo {
  return { type, typeName: String(type), length, messageSeq: 0, fragmentOffset: 0, fragmentLength };
}

function rec(type: number, handshake?: HandshakeInfo[]): RecordEvent {
  const ev: RecordEvent = {
    peer: '127.0.0.1%5684',
    role: 'client',
    type,
    typeName: String(type),
    epoch: 0,
    seq: 0,
    length: 10,
  };
  if (handshake) ev.handshake = handshake;
  return ev;
}

function collect(): { turns: TurnEntry<string>[][]; buf: TurnBuffer<string> } {
  const turns: TurnEntry<string>[][] = [];
  return { turns, buf: new TurnBuffer<string>((items) => turns.push(items)) };
}

const names = (items: TurnEntry<string>[]) =>
  items.map((e) =>
    e.kind === 'record' ? (e.ev.handshake ?? []).map((h) => h.type).join('+') || `ct${e.ev.type}` : e.kind,
  );

describe('TurnBuffer: flights across turns', () => {
  it('holds a ServerHello until the rest of its flight arrives in a later turn', async () => {
    const { turns, buf } = collect();
    buf.record(rec(22, [hs(2)]), 'in', 1);
    await nextTurn();
    await nextTurn();
    assert.equal(turns.length, 0, 'the first datagram of the flight is not shown on its own');
    buf.record(rec(22, [hs(11)]), 'in', 2);
    await nextTurn();
    assert.equal(turns.length, 0);
    buf.record(rec(22, [hs(12), hs(13), hs(14)]), 'in', 3);
    await nextTurn();
    assert.deepEqual(turns.map(names), [['2', '11', '12+13+14']]);
  });

  it('a fragment of the last message still holds; the whole message ends the flight', async () => {
    const { turns, buf } = collect();
    buf.record(rec(22, [hs(20, 12, 6)]), 'in', 1);
    await nextTurn();
    await nextTurn();
    assert.equal(turns.length, 0);
    buf.record(rec(20), 'in', 2);
    await nextTurn();
    assert.equal(turns.length, 0, 'a ChangeCipherSpec is followed by Finished');
    buf.record(rec(22, [hs(20)]), 'in', 3);
    await nextTurn();
    assert.equal(turns.length, 1);
  });

  it('shows a complete flight, an outgoing record or a CoAP message at the end of its turn', async () => {
    for (const push of [
      (b: TurnBuffer<string>) => b.record(rec(22, [hs(3)]), 'in', 1),
      (b: TurnBuffer<string>) => b.record(rec(22, [hs(1)]), 'in', 1),
      (b: TurnBuffer<string>) => b.record(rec(22, [hs(2)]), 'out', 1),
      (b: TurnBuffer<string>) => b.record(rec(21), 'in', 1),
      (b: TurnBuffer<string>) => b.note(1, 'note'),
    ]) {
      const { turns, buf } = collect();
      push(buf);
      await nextTurn();
      assert.equal(turns.length, 1);
    }
  });

  it('a flight whose end never comes is shown after the hold', async () => {
    const { turns, buf } = collect();
    buf.record(rec(22, [hs(2)]), 'in', 1);
    await nextTurn();
    assert.equal(turns.length, 0);
    await until(() => turns.length === 1, 'the held entries shown');
    assert.deepEqual(turns.map(names), [['2']]);
  });

  it('flush() shows a held flight at once (the end of a trace)', async () => {
    const { turns, buf } = collect();
    buf.record(rec(22, [hs(2)]), 'in', 1);
    await nextTurn();
    assert.equal(turns.length, 0);
    buf.flush();
    assert.equal(turns.length, 1);
    buf.flush();
    assert.equal(turns.length, 1, 'an empty flush shows nothing');
  });
});
