/** DTLS server bounds: reassembly byte accounting, per-address share of half-open handshakes, stall timeout, diagnostics. */
import * as assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, test } from 'node:test';
import type { HandshakeErrorEvent } from '../../src/dtls/diag.js';
import {
  CHUNK_OVERHEAD,
  fragmentMessage,
  type HandshakeFragment,
  HandshakeReassembler,
  parseHandshakeFragments,
  ReassemblyBudget,
} from '../../src/dtls/handshake/fragment.js';
import {
  DtlsAlertError,
  DtlsError,
  DtlsHandshakeTimeoutError,
  InvalidArgumentError,
} from '../../src/errors.js';
import {
  DtlsClientTransport,
  DtlsServerTransport,
  type DtlsServerTransportOptions,
} from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';
import { alerts, fragmentRecord, openHalfHandshake, RawDtlsPeer } from '../helpers/dtls-raw.js';
import { withTimeout } from '../helpers/timing.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const PSK = { identity: 'client-1', key: 'secret-key-123' };

function frag(msgType: number, seq: number, length: number, offset: number, body: Buffer): HandshakeFragment {
  return { msgType, length, messageSeq: seq, fragmentOffset: offset, fragmentLength: body.length, body };
}

function captureErrors(): { events: HandshakeErrorEvent[]; stop(): void } {
  const events: HandshakeErrorEvent[] = [];
  const fn = (m: unknown) => events.push(m as HandshakeErrorEvent);
  subscribe('coapkit:dtls:handshake:error', fn);
  return { events, stop: () => unsubscribe('coapkit:dtls:handshake:error', fn) };
}

async function server(opts: Partial<DtlsServerTransportOptions> = {}): Promise<DtlsServerTransport> {
  const s = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    psk: PSK,
    retransmitInitialMs: 100,
    ...opts,
  });
  s.attach({ message: (d, peer) => s.send(d, peer), peerError: () => {} });
  cleanups.push(() => s.close());
  return s;
}

async function rawPeer(address = '127.0.0.1'): Promise<RawDtlsPeer> {
  const p = await RawDtlsPeer.create(address);
  cleanups.push(() => p.close());
  return p;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ------------------------------------------------------------ reassembler

test('reassembler charges received bytes, not the claimed length', () => {
  const shared = new ReassemblyBudget(1 << 20);
  const r = new HandshakeReassembler(1, 16, { maxMessageBytes: 4096, maxBufferedBytes: 1 << 20, shared });
  // 16 one-byte fragments, each the start of a different 4096-byte message
  for (let i = 0; i < 16; i++) assert.deepEqual(r.add(frag(16, 1 + i, 4096, 100, Buffer.from([i]))), []);
  const perMessage = CHUNK_OVERHEAD /* partial */ + 1 + CHUNK_OVERHEAD; /* piece */
  assert.equal(r.bufferedBytes, 16 * perMessage);
  assert.equal(shared.used, 16 * perMessage);
  assert.ok(r.bufferedBytes < 4096, 'far below one claimed message');
  // duplicate and overlapping fragments are not charged twice
  r.add(frag(16, 1, 4096, 100, Buffer.from([0])));
  r.add(frag(16, 1, 4096, 99, Buffer.from([7, 0])));
  assert.equal(r.bufferedBytes, 16 * perMessage + 1 + CHUNK_OVERHEAD);
  r.release();
  assert.equal(r.bufferedBytes, 0);
  assert.equal(shared.used, 0, 'memory is given back');
});

test('reassembler assembles pieces in any order, then gives the bytes back', () => {
  const shared = new ReassemblyBudget(1 << 20);
  const r = new HandshakeReassembler(0, 16, { maxMessageBytes: 4096, maxBufferedBytes: 8192, shared });
  const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 0xff));
  const frags = fragmentMessage(16, 0, body, 64).flatMap((b) => parseHandshakeFragments(b));
  frags.reverse();
  const out = frags.flatMap((f) => r.add(f));
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.body, body);
  assert.equal(r.bufferedBytes, 0);
  assert.equal(shared.used, 0);
  // a zero-length message that arrives before its predecessor
  const r2 = new HandshakeReassembler(0, 16, { maxMessageBytes: 4096, maxBufferedBytes: 8192, shared });
  assert.deepEqual(r2.add(frag(14, 1, 0, 0, Buffer.alloc(0))), []);
  const got = r2.add(frag(2, 0, 3, 0, Buffer.from([1, 2, 3])));
  assert.deepEqual(
    got.map((m) => [m.msgType, m.body.length]),
    [
      [2, 3],
      [14, 0],
    ],
  );
  assert.equal(shared.used, 0);
});

test('reassembler bounds: claimed length, per-handshake budget, shared budget', () => {
  const shared = new ReassemblyBudget(600);
  const r = new HandshakeReassembler(0, 16, { maxMessageBytes: 4096, maxBufferedBytes: 1000, shared });
  assert.throws(
    () => r.add(frag(16, 0, 16384, 0, Buffer.from([1]))),
    (e: unknown) => e instanceof DtlsError && e.alert === 47,
  );
  assert.equal(r.bufferedBytes, 0);
  // Fills the shared budget: the next fragment is dropped (not an error), nothing charged.
  r.add(frag(16, 0, 4096, 0, Buffer.alloc(300)));
  const before = shared.used;
  assert.deepEqual(r.add(frag(16, 0, 4096, 1000, Buffer.alloc(300))), []);
  assert.equal(shared.used, before, 'dropped fragment is not charged');
  r.release();
  // Per-handshake budget: a fatal error (the peer is misbehaving).
  const big = new ReassemblyBudget(1 << 20);
  const r2 = new HandshakeReassembler(0, 16, { maxMessageBytes: 4096, maxBufferedBytes: 1000, shared: big });
  assert.throws(
    () => {
      for (let i = 0; i < 100; i++) r2.add(frag(16, 0, 4096, i * 2, Buffer.from([1])));
    },
    (e: unknown) => e instanceof DtlsError && e.alert === 47,
  );
  assert.ok(r2.bufferedBytes <= 1000);
  r2.release();
  assert.equal(big.used, 0);
  // hold() / unhold() share the same budgets
  assert.equal(r2.hold(900), true);
  assert.equal(r2.hold(200), false);
  assert.equal(big.used, 900);
  r2.unhold(900);
  assert.equal(big.used, 0);
});

// ------------------------------------------------------------ server

test('bad bound options are refused with InvalidArgumentError', async () => {
  await assert.rejects(
    DtlsServerTransport.create({ host: '127.0.0.1', port: 0, psk: PSK, maxHandshakesPerAddress: 0 }),
    InvalidArgumentError,
  );
});

test('per-address share: an address over it is refused, another address is served', async () => {
  const s = await server({ maxHandshakesPerAddress: 3 });
  const port = s.localAddress().port;
  const cap = captureErrors();
  try {
    for (let i = 0; i < 3; i++) await openHalfHandshake(await rawPeer(), port, Buffer.alloc(32, 1 + i));
    assert.equal(s.server.handshakeCountOf('127.0.0.1'), 3);
    // Two more from the same address: refused (no ServerHello, no state).
    for (let i = 0; i < 2; i++)
      await openHalfHandshake(await rawPeer(), port, Buffer.alloc(32, 10 + i), false);
    await until(() => s.server.stats.rejectedAddress === 2, 5000, 'two refusals');
    assert.equal(s.server.handshakeCount, 3);
    assert.equal(cap.events.filter((e) => e.reason === 'address-share').length, 2);
    // A client on another address completes its handshake and an exchange.
    const c = await DtlsClientTransport.create({ psk: PSK, bind: { address: '127.0.0.2' } });
    cleanups.push(() => c.close());
    const got = new Promise<string>((r) => c.attach({ message: (d) => r(d.toString()) }));
    c.send(Buffer.from('hello'), makePeer('127.0.0.1', port));
    assert.equal(await withTimeout(got, 5000, 'echo'), 'hello');
  } finally {
    cap.stop();
  }
});

test('table full: the heaviest address loses its oldest half-open handshake, not a lone client', async () => {
  const s = await server({ maxHandshakes: 4 });
  const port = s.localAddress().port;
  const lone = await rawPeer('127.0.0.2');
  await openHalfHandshake(lone, port, Buffer.alloc(32, 1)); // the oldest of all
  const heavy: RawDtlsPeer[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await rawPeer();
    heavy.push(p);
    await openHalfHandshake(p, port, Buffer.alloc(32, 2 + i));
  }
  assert.equal(s.server.handshakeCount, 4);
  await openHalfHandshake(await rawPeer(), port, Buffer.alloc(32, 9)); // 127.0.0.1 again: evicts its own oldest
  await openHalfHandshake(await rawPeer('127.0.0.3'), port, Buffer.alloc(32, 10));
  assert.equal(s.server.stats.evictedHalfOpen, 2);
  assert.equal(s.server.handshakeCount, 4);
  assert.ok(s.server.connection(`127.0.0.2%${lone.port}`), 'the lone client keeps its handshake');
  assert.equal(s.server.connection(`127.0.0.1%${heavy[0]!.port}`), undefined);
  assert.equal(s.server.connection(`127.0.0.1%${heavy[1]!.port}`), undefined);
  assert.equal(s.server.handshakeCountOf('127.0.0.1'), 2);
});

test('half-open handshakes without progress expire after halfOpenTimeoutMs', async () => {
  const s = await server({ halfOpenTimeoutMs: 300 });
  const cap = captureErrors();
  try {
    const t0 = Date.now();
    await openHalfHandshake(await rawPeer(), s.localAddress().port, Buffer.alloc(32, 1));
    assert.equal(s.server.handshakeCount, 1);
    await until(() => s.server.handshakeCount === 0, 10_000, 'expiry');
    assert.ok(Date.now() - t0 >= 250, 'not before the timeout');
    const ev = cap.events.find((e) => e.reason === 'stalled');
    assert.ok(ev, 'stall reported');
    assert.ok(ev.error instanceof DtlsHandshakeTimeoutError);
    assert.equal(ev.role, 'server');
  } finally {
    cap.stop();
  }
});

test('fragments claiming 16 KB messages: handshake fails with illegal_parameter, memory given back', async () => {
  const s = await server();
  const port = s.localAddress().port;
  const p = await rawPeer();
  await openHalfHandshake(p, port, Buffer.alloc(32, 1));
  const from = p.received.length;
  p.send(fragmentRecord(16, 1, 16384, 0, Buffer.from([0]), 2), port);
  const d = await p.waitFor((x) => alerts(x).length > 0, from);
  assert.deepEqual(alerts(d), [47]);
  assert.equal(s.server.handshakeCount, 0);
  // Claims within the limit hold only what was received, and are released when the handshake ends.
  const q = await rawPeer();
  await openHalfHandshake(q, port, Buffer.alloc(32, 2));
  for (let i = 0; i < 8; i++) q.send(fragmentRecord(16, 1 + i, 4096, 100, Buffer.from([i]), 2 + i), port);
  await until(() => s.server.handshakeBufferBytes > 0, 5000, 'buffered');
  await until(() => s.server.handshakeBufferBytes === 8 * (2 * CHUNK_OVERHEAD + 1), 5000, '8 fragments');
  const from2 = q.received.length;
  q.send(fragmentRecord(16, 1, 4095, 100, Buffer.from([9]), 20), port); // inconsistent → decode_error
  await q.waitFor((x) => alerts(x).length > 0, from2);
  assert.equal(s.server.handshakeBufferBytes, 0);
});

test('handshake:error carries identity and alert (sent by the server, received by the client)', async () => {
  const s = await server();
  const cap = captureErrors();
  try {
    const c = await DtlsClientTransport.create({ psk: { identity: 'mallory', key: 'nope' } });
    cleanups.push(() => c.close());
    await assert.rejects(c.connect(makePeer('127.0.0.1', s.localAddress().port)), DtlsAlertError);
    const srv = cap.events.find((e) => e.role === 'server');
    const cli = cap.events.find((e) => e.role === 'client');
    assert.equal(srv?.identity, 'mallory');
    assert.deepEqual(srv?.alert, {
      level: 2,
      description: 115,
      name: 'unknown_psk_identity',
      direction: 'sent',
    });
    assert.equal(cli?.identity, 'mallory');
    assert.deepEqual(cli?.alert, {
      level: 2,
      description: 115,
      name: 'unknown_psk_identity',
      direction: 'received',
    });
  } finally {
    cap.stop();
  }
});
