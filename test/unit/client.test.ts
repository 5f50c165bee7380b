/**
 * CoapClient over loopback UDP: the response object, request building
 * (§6.4 URI decomposition on the wire), typed errors, ping, abort, close.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, test } from 'node:test';
import { CoapClient, ping, request } from '../../src/client/client.js';
import { decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { MessageType } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import {
  AbortError,
  ClosedError,
  DnsError,
  InvalidArgumentError,
  ResetError,
  TimeoutError,
  UriError,
} from '../../src/errors.js';
import { CoapServer } from '../../src/server/server.js';
import { VirtualClock } from '../../src/util/clock.js';
import { onVirtualTime, until } from '../helpers/timing.js';

const FAST = { ackTimeout: 40, ackRandomFactor: 1.5, maxRetransmit: 2 };
let server: CoapServer;
let base: string;
let client: CoapClient;

/** A UDP socket that records requests and answers via `reply`. */
async function rawServer(reply: (msg: Buffer, send: (b: Buffer) => void) => void) {
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m, r) => {
    got.push(m);
    reply(m, (b) => sock.send(b, r.port, r.address));
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return {
    port: sock.address().port,
    got,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

before(async () => {
  server = new CoapServer();
  server.get('/json', () => ({
    payload: '{"a":[1,2]}',
    contentFormat: 50,
    etag: Buffer.from([7]),
    maxAge: 10,
  }));
  server.post('/things', (req) => ({ code: '2.01', locationPath: ['things', req.text()] }));
  server.put('/things/:id', () => undefined);
  server.delete('/things/:id', () => undefined);
  server.route(0x05, '/fetch', (req) => `fetched ${req.text()}`);
  server.get('/plain', () => 'plain');
  const ep = await server.listen({ host: '127.0.0.1', port: 0 });
  base = `coap://127.0.0.1:${ep.transport.localAddress().port}`;
  client = new CoapClient({ transmission: FAST });
});
after(async () => {
  await client.close();
  await server.close();
});

test('CoapResponse exposes code, type, token, options, payload and helpers', async () => {
  const r = await client.get(`${base}/json`);
  assert.equal(r.code, 0x45);
  assert.equal(r.codeText, '2.05 Content');
  assert.equal(r.ok, true);
  assert.equal(r.type, MessageType.ACK);
  assert.equal(r.piggybacked, true);
  assert.equal(r.token.length, 8);
  assert.ok(r.rttMs >= 0 && r.rttMs < 1000);
  assert.equal(r.contentFormat, 50);
  assert.deepEqual(r.etag, Buffer.from([7]));
  assert.equal(r.maxAge, 10);
  assert.deepEqual(r.json(), { a: [1, 2] });
  assert.equal(r.peer.address, '127.0.0.1');
  assert.deepEqual(r.option(OptionNumber.ContentFormat), Buffer.from([50]));
  const plain = await client.get(`${base}/plain`);
  assert.equal(plain.maxAge, 60, 'Max-Age defaults to 60 s (§5.10.5)');
  assert.equal(plain.text(), 'plain');
  const missing = await client.get(`${base}/missing`);
  assert.equal(missing.ok, false);
  assert.equal(missing.codeText, '4.04 Not Found');
});

test('methods: POST / PUT / DELETE / numeric FETCH', async () => {
  const c = await client.post(`${base}/things`, { payload: 'x1' });
  assert.equal(c.codeText, '2.01 Created');
  assert.deepEqual(c.locationPath, ['things', 'x1']);
  assert.equal((await client.put(`${base}/things/x1`, { payload: 'v' })).codeText, '2.04 Changed');
  assert.equal((await client.delete(`${base}/things/x1`)).codeText, '2.02 Deleted');
  const f = await client.request(`${base}/fetch`, { method: 'FETCH', payload: 'q', contentFormat: 0 });
  assert.equal(f.text(), 'fetched q');
  const f2 = await client.request(`${base}/fetch`, { method: 5, payload: 'n' });
  assert.equal(f2.text(), 'fetched n');
});

test('§6.4: the request carries Uri-Path/Uri-Query, no Uri-Host for an IP literal, no Uri-Port for the destination port', async () => {
  const raw = await rawServer((m, send) => {
    const msg = decodeMessage(m);
    send(encodeMessage({ type: MessageType.ACK, code: 0x45, messageId: msg.messageId, token: msg.token }));
  });
  try {
    await client.get(`coap://127.0.0.1:${raw.port}/a%20b/c?x=1&y=%26`, { accept: 'application/json' });
    const m = decodeMessage(raw.got[0]!);
    assert.equal(m.type, MessageType.CON);
    assert.equal(m.code, 1);
    const opts = m.options.map((o) => [o.number, o.value.toString()]);
    assert.deepEqual(opts, [
      [OptionNumber.UriPath, 'a b'],
      [OptionNumber.UriPath, 'c'],
      [OptionNumber.UriQuery, 'x=1'],
      [OptionNumber.UriQuery, 'y=&'],
      [OptionNumber.Accept, '2'],
    ]);
  } finally {
    await raw.close();
  }
});

test('typed errors: UriError, InvalidArgumentError, DnsError', async () => {
  await assert.rejects(client.get('http://127.0.0.1/x'), UriError);
  await assert.rejects(client.get('not a uri'), UriError);
  await assert.rejects(client.request(`${base}/x`, { method: 'BREW' as never }), InvalidArgumentError);
  await assert.rejects(
    client.request(`${base}/x`, { contentFormat: 'application/nope' }),
    InvalidArgumentError,
  );
  const c = new CoapClient({
    lookup: async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    },
  });
  try {
    await assert.rejects(c.get('coap://no.such.host.test/x'), DnsError);
  } finally {
    await c.close();
  }
});

test('a custom lookup resolves names (and prefers a family when asked)', async () => {
  const port = Number(base.split(':').at(-1));
  const c = new CoapClient({
    transmission: FAST,
    preferFamily: 4,
    lookup: async () => [
      { address: '::1', family: 6 },
      { address: '127.0.0.1', family: 4 },
    ],
  });
  try {
    const r = await c.get(`coap://my-device.test:${port}/plain`);
    assert.equal(r.text(), 'plain');
    assert.equal(r.peer.address, '127.0.0.1');
  } finally {
    await c.close();
  }
});

test('TimeoutError after MAX_RETRANSMIT retransmissions to a silent peer; `timeout` bounds the wait', async () => {
  const raw = await rawServer(() => {});
  // The client's timers on a virtual clock: the bounds below are the protocol's, not the machine's speed.
  const clock = new VirtualClock();
  const c = new CoapClient({ transmission: FAST, clock });
  try {
    const full = c.get(`coap://127.0.0.1:${raw.port}/x`);
    const took = await onVirtualTime(clock, full);
    await assert.rejects(full, TimeoutError);
    // MAX_TRANSMIT_WAIT = ACK_TIMEOUT * (2^(MAX_RETRANSMIT + 1) - 1) * ACK_RANDOM_FACTOR at most,
    // and at least the same without the random factor (§4.8.2).
    assert.ok(took >= 40 * 7 && took <= 40 * 7 * 1.5, `timed out after ${took} virtual ms`);
    await until(() => raw.got.length === 3, '1 + MAX_RETRANSMIT(2) transmissions');
    const bounded = c.get(`coap://127.0.0.1:${raw.port}/x`, { timeout: 30 });
    const tookBounded = await onVirtualTime(clock, bounded);
    await assert.rejects(bounded, TimeoutError);
    assert.equal(tookBounded, 30, 'the request timeout, before the first retransmission (>= 40 ms)');
    await until(() => raw.got.length === 4, 'one transmission of the bounded request');
    const pinged = c.ping(`coap://127.0.0.1:${raw.port}`);
    await onVirtualTime(clock, pinged);
    await assert.rejects(pinged, TimeoutError);
    await until(() => raw.got.length === 7, 'the empty CON and its 2 retransmissions');
  } finally {
    await c.close();
    await raw.close();
  }
});

test('ResetError when the peer answers with RST (CON and NON)', async () => {
  const raw = await rawServer((m, send) => send(Buffer.from([0x70, 0, m[2]!, m[3]!])));
  try {
    await assert.rejects(client.get(`coap://127.0.0.1:${raw.port}/x`), ResetError);
    await assert.rejects(client.get(`coap://127.0.0.1:${raw.port}/x`, { confirmable: false }), ResetError);
    // ping resolves on the RST.
    const rtt = await client.ping(`coap://127.0.0.1:${raw.port}`);
    assert.ok(rtt >= 0);
  } finally {
    await raw.close();
  }
});

test('AbortSignal aborts a pending request', async () => {
  const raw = await rawServer(() => {});
  try {
    const ac = new AbortController();
    const p = client.get(`coap://127.0.0.1:${raw.port}/x`, { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(p, AbortError);
  } finally {
    await raw.close();
  }
});

test('a closed client rejects new requests and fails pending ones', async () => {
  const raw = await rawServer(() => {});
  const c = new CoapClient({ transmission: FAST });
  try {
    const p = c.get(`coap://127.0.0.1:${raw.port}/x`, { timeout: 5000 });
    await new Promise((r) => setTimeout(r, 20));
    const pp = c.ping(`coap://127.0.0.1:${raw.port}`);
    await new Promise((r) => setTimeout(r, 20));
    await c.close();
    await assert.rejects(p, ClosedError);
    await assert.rejects(pp, ClosedError, 'a pending ping settles on close');
    await assert.rejects(c.get(`${base}/plain`), ClosedError);
  } finally {
    await raw.close();
  }
});

test('top-level request() and ping() use a shared client that does not keep the process alive', async () => {
  assert.equal((await request(`${base}/plain`)).text(), 'plain');
  assert.ok((await ping(base)) >= 0);
});
