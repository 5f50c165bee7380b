/**
 * CoapServer over the in-memory transport: response codes (§5.9), option
 * handling (§5.4), content negotiation, preconditions, No-Response (RFC 7967),
 * /.well-known/core (RFC 6690) and routing.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { parseLinkFormat } from '../../src/codec/link-format.js';
import { type CoapMessage, encodeMessage } from '../../src/codec/message.js';
import { decodeUint, encodeUint, getOption, getOptions } from '../../src/codec/options.js';
import { MessageType } from '../../src/constants/codes.js';
import { OptionNumber as O } from '../../src/constants/options.js';
import { ResponseCodeError } from '../../src/errors.js';
import { CoapServer } from '../../src/server/server.js';
import { MemoryNetwork } from '../../src/transport/memory.js';
import type { Peer } from '../../src/transport/transport.js';
import { RawPeer, sleep } from '../helpers/memory.js';

const { CON, NON, ACK } = MessageType;

let net: MemoryNetwork;
let server: CoapServer;
let serverPeer: Peer;
let raw: RawPeer;
let mid = 1;
const errors: unknown[] = [];

beforeEach(async () => {
  net = new MemoryNetwork();
  errors.length = 0;
  server = new CoapServer({
    transmission: { ackTimeout: 50, ackRandomFactor: 1.5, maxRetransmit: 3 },
    maxPayloadSize: 64,
    onError: (e) => errors.push(e),
  });
  const t = net.createTransport('10.0.0.1', 5683);
  serverPeer = t.self;
  await server.listen(t);
  raw = new RawPeer(net.createTransport('10.0.0.2', 40000));
});
afterEach(async () => {
  await server.close();
  await raw.transport.close();
});

type Opt = { number: number; value: Buffer | string | number };
function opts(list: Opt[]): Array<{ number: number; value: Buffer }> {
  return list.map((o) => ({
    number: o.number,
    value: typeof o.value === 'number' ? encodeUint(o.value) : Buffer.from(o.value),
  }));
}
function pathOpts(path: string): Opt[] {
  return path
    .split('/')
    .filter(Boolean)
    .map((s) => ({ number: O.UriPath, value: s }));
}

/** Sends a request and returns the (first) reply message. */
async function ask(
  code: number,
  path: string,
  extra: Opt[] = [],
  payload?: string,
  type: 0 | 1 = CON,
): Promise<CoapMessage> {
  const messageId = mid++ & 0xffff;
  const n = raw.received.length;
  raw.send(
    serverPeer,
    encodeMessage({
      type,
      code,
      messageId,
      token: Buffer.from([0xde, 0xad, messageId & 0xff]),
      options: opts([...pathOpts(path), ...extra]),
      ...(payload ? { payload: Buffer.from(payload) } : {}),
    }),
  );
  await raw.waitFor(n + 1, 1500);
  const r = raw.received[n]!;
  assert.ok(r.msg, 'reply decodes');
  if (type === CON) {
    assert.equal(r.msg.type, ACK);
    assert.equal(r.msg.messageId, messageId);
  }
  return r.msg;
}

const codeOf = (m: CoapMessage) => `${m.code >> 5}.${String(m.code & 31).padStart(2, '0')}`;

test('4.04 for an unknown path, 4.05 for a known path with another method, 2.05/2.04/2.02/2.01 defaults', async () => {
  server.get('/a', () => 'A');
  server.post('/a', () => ({}));
  server.put('/a', () => undefined);
  server.delete('/a', () => undefined);
  server.post('/create', () => ({ locationPath: ['items', '7'] }));
  assert.equal(codeOf(await ask(1, '/nope')), '4.04');
  assert.equal(codeOf(await ask(5, '/a')), '4.05', 'FETCH not routed');
  assert.equal(codeOf(await ask(0x08, '/a')), '4.05', 'unknown method code 0.08 (§5.8)');
  const g = await ask(1, '/a');
  assert.equal(codeOf(g), '2.05');
  assert.equal(g.payload.toString(), 'A');
  assert.equal(codeOf(await ask(2, '/a')), '2.04');
  assert.equal(codeOf(await ask(3, '/a')), '2.04');
  assert.equal(codeOf(await ask(4, '/a')), '2.02');
  const c = await ask(2, '/create');
  assert.equal(codeOf(c), '2.01');
  assert.deepEqual(getOptions(c.options, O.LocationPath).map(String), ['items', '7']);
});

test('§5.4.1: an unrecognized critical option gets 4.02 in a CON request; an elective one is ignored', async () => {
  let calls = 0;
  server.get('/x', () => {
    calls++;
    return 'x';
  });
  const bad = await ask(1, '/x', [{ number: 9999, value: 'v' }]);
  assert.equal(codeOf(bad), '4.02');
  assert.equal(calls, 0);
  const ok = await ask(1, '/x', [{ number: 9998, value: 'v' }]);
  assert.equal(codeOf(ok), '2.05');
  assert.equal(calls, 1);
  // A recognized critical option with a malformed value (Uri-Port of 3 bytes) is treated as unrecognized (§5.4.3).
  assert.equal(codeOf(await ask(1, '/x', [{ number: O.UriPort, value: Buffer.from([1, 2, 3]) }])), '4.02');
});

test('§5.4.1: an unrecognized critical option in a NON request causes the message to be rejected (no 4.02)', async () => {
  let calls = 0;
  server.get('/x', () => {
    calls++;
    return 'x';
  });
  raw.send(
    serverPeer,
    encodeMessage({
      type: NON,
      code: 1,
      messageId: 4242,
      token: Buffer.from([1]),
      options: opts([...pathOpts('/x'), { number: 9999, value: 'v' }]),
    }),
  );
  await sleep(80);
  assert.equal(calls, 0);
  assert.ok(
    raw.received.every((r) => r.msg?.code !== 0x82),
    'no 4.02 response to a NON request',
  );
});

test('§5.10.4: 4.06 when Accept names a format the resource does not produce', async () => {
  server.get('/j', () => ({ payload: '{"a":1}', contentFormat: 50 }));
  assert.equal(codeOf(await ask(1, '/j', [{ number: O.Accept, value: 0 }])), '4.06');
  const ok = await ask(1, '/j', [{ number: O.Accept, value: 50 }]);
  assert.equal(codeOf(ok), '2.05');
  assert.equal(decodeUint(getOption(ok.options, O.ContentFormat)!), 50);
  // A handler may pick the representation from req.accept.
  server.get('/multi', (req) =>
    req.accept === 50 ? { payload: '{}', contentFormat: 50 } : { payload: 'text', contentFormat: 0 },
  );
  assert.equal((await ask(1, '/multi', [{ number: O.Accept, value: 50 }])).payload.toString(), '{}');
  assert.equal((await ask(1, '/multi', [{ number: O.Accept, value: 0 }])).payload.toString(), 'text');
});

test('§5.10.8: 4.12 via checkPreconditions (If-Match, If-None-Match)', async () => {
  let etag: Buffer | undefined;
  server.put('/r', (req) => {
    req.checkPreconditions(etag);
    etag = Buffer.from([etag ? etag[0]! + 1 : 1]);
    return { code: etag[0] === 1 ? '2.01' : '2.04', etag };
  });
  // If-None-Match on a non-existing resource → created.
  assert.equal(codeOf(await ask(3, '/r', [{ number: O.IfNoneMatch, value: '' }], 'v1')), '2.01');
  // Again: it exists now → 4.12.
  assert.equal(codeOf(await ask(3, '/r', [{ number: O.IfNoneMatch, value: '' }], 'v2')), '4.12');
  // If-Match with the wrong ETag → 4.12, with the right one → 2.04; empty If-Match matches any.
  assert.equal(codeOf(await ask(3, '/r', [{ number: O.IfMatch, value: Buffer.from([9]) }], 'v3')), '4.12');
  assert.equal(codeOf(await ask(3, '/r', [{ number: O.IfMatch, value: Buffer.from([1]) }], 'v3')), '2.04');
  assert.equal(codeOf(await ask(3, '/r', [{ number: O.IfMatch, value: '' }], 'v4')), '2.04');
});

test('§5.9.2.9: 4.13 with Size1 for a too large payload', async () => {
  server.post('/up', () => 'ok');
  const r = await ask(2, '/up', [], 'x'.repeat(65));
  assert.equal(codeOf(r), '4.13');
  assert.equal(decodeUint(getOption(r.options, O.Size1)!), 64);
  assert.equal(codeOf(await ask(2, '/up', [], 'x'.repeat(64))), '2.04');
});

test('§5.9.2.11: 4.15 when the payload format is not in `accepts`', async () => {
  server.post('/json', () => 'ok', { accepts: [50] });
  assert.equal(codeOf(await ask(2, '/json', [{ number: O.ContentFormat, value: 0 }], 'hi')), '4.15');
  assert.equal(codeOf(await ask(2, '/json', [], 'hi')), '4.15', 'no Content-Format');
  assert.equal(codeOf(await ask(2, '/json', [{ number: O.ContentFormat, value: 50 }], '{}')), '2.04');
});

test('5.00 when a handler throws (sync or async); the server keeps serving; ResponseCodeError maps to its code', async () => {
  server.get('/boom', () => {
    throw new Error('kaput');
  });
  server.get('/aboom', async () => {
    await sleep(1);
    throw new Error('async kaput');
  });
  server.get('/forbidden', () => {
    throw new ResponseCodeError('4.03', 'go away');
  });
  server.get('/ok', () => 'fine');
  const r = await ask(1, '/boom');
  assert.equal(codeOf(r), '5.00');
  assert.equal(codeOf(await ask(1, '/aboom')), '5.00');
  assert.equal(errors.length, 2);
  const f = await ask(1, '/forbidden');
  assert.equal(codeOf(f), '4.03');
  assert.equal(f.payload.toString(), 'go away');
  assert.equal(codeOf(await ask(1, '/ok')), '2.05');
  // A handler returning an invalid response code is a server error too.
  server.get('/badcode', () => ({ code: '1.00' }));
  assert.equal(codeOf(await ask(1, '/badcode')), '5.00');
});

test('§5.7.2: 5.05 for Proxy-Uri / Proxy-Scheme when the server is not a proxy', async () => {
  server.get('/ok', () => 'fine');
  assert.equal(codeOf(await ask(1, '', [{ number: O.ProxyUri, value: 'coap://example.com/x' }])), '5.05');
  assert.equal(codeOf(await ask(1, '/ok', [{ number: O.ProxyScheme, value: 'coap' }])), '5.05');
});

test('§5.10.6.2: a GET carrying the current ETag gets 2.03 Valid without payload', async () => {
  server.get('/e', () => ({ payload: 'body', etag: Buffer.from([0xab, 0xcd]), maxAge: 30 }));
  const full = await ask(1, '/e');
  assert.equal(codeOf(full), '2.05');
  const v = await ask(1, '/e', [
    { number: O.ETag, value: Buffer.from([0x01]) },
    { number: O.ETag, value: Buffer.from([0xab, 0xcd]) },
  ]);
  assert.equal(codeOf(v), '2.03');
  assert.equal(v.payload.length, 0);
  assert.deepEqual(getOption(v.options, O.ETag), Buffer.from([0xab, 0xcd]));
  assert.equal(decodeUint(getOption(v.options, O.MaxAge)!), 30);
  assert.equal(codeOf(await ask(1, '/e', [{ number: O.ETag, value: Buffer.from([0x02]) }])), '2.05');
});

test('RFC 7967 No-Response: suppressed classes get no response (CON: empty ACK), others still do', async () => {
  server.get('/ok', () => 'fine');
  // 2 = not interested in 2.xx.
  const r = await ask(1, '/ok', [{ number: O.NoResponse, value: 2 }]);
  assert.equal(r.type, ACK);
  assert.equal(r.code, 0, 'empty ACK');
  assert.equal(codeOf(await ask(1, '/missing', [{ number: O.NoResponse, value: 2 }])), '4.04');
  // 8 = not interested in 4.xx.
  assert.equal((await ask(1, '/missing', [{ number: O.NoResponse, value: 8 }])).code, 0);
  assert.equal(codeOf(await ask(1, '/ok', [{ number: O.NoResponse, value: 8 }])), '2.05');
  // NON with 2.xx suppressed: nothing at all.
  const n = raw.received.length;
  raw.send(
    serverPeer,
    encodeMessage({
      type: NON,
      code: 1,
      messageId: 999,
      token: Buffer.from([5]),
      options: opts([...pathOpts('/ok'), { number: O.NoResponse, value: 26 }]),
    }),
  );
  await sleep(80);
  assert.equal(raw.received.length, n);
});

test('RFC 6690: /.well-known/core lists resources and filters by rt, if, href (with trailing *)', async () => {
  server.get('/sensors/temp', () => '21', {
    rt: 'temperature-c',
    if: 'sensor',
    ct: 0,
    obs: true,
    title: 'Temp',
  });
  server.get('/sensors/light', () => '5', { rt: 'light-lux core.s', if: 'sensor' });
  server.get('/actuators/led', () => 'on', { rt: 'led', if: 'core.a' });
  server.get('/hidden', () => 'h', { hidden: true });
  server.get('/items/:id', () => 'p');
  const all = await ask(1, '/.well-known/core');
  assert.equal(codeOf(all), '2.05');
  assert.equal(decodeUint(getOption(all.options, O.ContentFormat)!), 40);
  const links = parseLinkFormat(all.payload.toString());
  const targets = links.map((l) => l.target).sort();
  assert.deepEqual(targets, ['/actuators/led', '/sensors/light', '/sensors/temp']);
  const temp = links.find((l) => l.target === '/sensors/temp')!;
  assert.ok(temp.attributes.some(([k, v]) => k === 'obs' && v === true));
  const q = async (query: string) =>
    parseLinkFormat(
      (await ask(1, '/.well-known/core', [{ number: O.UriQuery, value: query }])).payload.toString(),
    )
      .map((l) => l.target)
      .sort();
  assert.deepEqual(await q('rt=temperature-c'), ['/sensors/temp']);
  assert.deepEqual(await q('rt=core.s'), ['/sensors/light'], 'rt is a space-separated list');
  assert.deepEqual(await q('rt=light*'), ['/sensors/light']);
  assert.deepEqual(await q('if=sensor'), ['/sensors/light', '/sensors/temp']);
  assert.deepEqual(await q('href=/sensors*'), ['/sensors/light', '/sensors/temp']);
  assert.deepEqual(await q('href=/actuators/led'), ['/actuators/led']);
  const none = await ask(1, '/.well-known/core', [{ number: O.UriQuery, value: 'rt=nothing' }]);
  assert.equal(codeOf(none), '4.04');
});

test('routing: :params, trailing * wildcard, exact before pattern', async () => {
  server.get('/users/:id/posts/:post', (req) => `${req.params.id}:${req.params.post}`);
  server.get('/files/*', (req) => `rest=${req.params['*']}`);
  server.get('/users/me/posts/latest', () => 'exact');
  server.get('/', () => 'root');
  assert.equal((await ask(1, '/users/42/posts/7')).payload.toString(), '42:7');
  assert.equal((await ask(1, '/users/me/posts/latest')).payload.toString(), 'exact');
  assert.equal((await ask(1, '/files/a/b/c')).payload.toString(), 'rest=a/b/c');
  assert.equal((await ask(1, '/files')).payload.toString(), 'rest=');
  assert.equal(codeOf(await ask(1, '/users/42/posts')), '4.04');
  assert.equal((await ask(1, '')).payload.toString(), 'root');
  // Percent-encoded and special characters arrive decoded in Uri-Path options.
  server.get('/a b/c%2Fd', () => 'odd');
  assert.equal(
    (
      await ask(1, '', [
        { number: O.UriPath, value: 'a b' },
        { number: O.UriPath, value: 'c%2Fd' },
      ])
    ).payload.toString(),
    'odd',
  );
});

test('request fields: query, options, payload, token, confirmable, peer', async () => {
  let seen: Record<string, unknown> = {};
  server.post('/echo', (req) => {
    seen = {
      query: req.query,
      payload: req.text(),
      cf: req.contentFormat,
      confirmable: req.confirmable,
      token: req.token.toString('hex'),
      peer: `${req.peer.address}:${req.peer.port}`,
      method: req.method,
    };
    return { payload: req.payload, contentFormat: 0 };
  });
  const r = await ask(
    2,
    '/echo',
    [
      { number: O.ContentFormat, value: 0 },
      { number: O.UriQuery, value: 'a=1' },
      { number: O.UriQuery, value: 'b' },
    ],
    'hello',
  );
  assert.equal(r.payload.toString(), 'hello');
  assert.deepEqual(seen.query, ['a=1', 'b']);
  assert.equal(seen.payload, 'hello');
  assert.equal(seen.cf, 0);
  assert.equal(seen.confirmable, true);
  assert.equal(seen.peer, '10.0.0.2:40000');
  assert.equal(seen.method, 'POST');
});

test('a handler response that cannot be encoded becomes 5.00 instead of crashing the process (sync and async)', async () => {
  server.get('/bad', () => ({ options: [{ number: 70000, value: 'x' }] }));
  server.get('/abad', async () => ({ options: [{ number: 70000, value: 'x' }] }));
  server.get('/ok', () => 'fine');
  const crashes: unknown[] = [];
  const onCrash = (e: unknown) => crashes.push(e);
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  try {
    assert.equal(codeOf(await ask(1, '/bad')), '5.00');
    assert.equal(codeOf(await ask(1, '/abad')), '5.00');
    assert.equal(codeOf(await ask(1, '/ok')), '2.05');
    // NON too.
    const n = raw.received.length;
    raw.send(
      serverPeer,
      encodeMessage({
        type: NON,
        code: 1,
        messageId: 31337,
        token: Buffer.from([3]),
        options: opts(pathOpts('/bad')),
      }),
    );
    await raw.waitFor(n + 1);
    assert.equal(codeOf(raw.received[n]!.msg!), '5.00');
    await sleep(20);
  } finally {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  }
  assert.deepEqual(crashes, []);
});

test('a handler may name its Content-Format ("json") as the client does; an unknown name is a 5.00', async () => {
  server.get('/named', () => ({ payload: '{}', contentFormat: 'json' }));
  server.get('/bogus', () => ({ payload: '{}', contentFormat: 'no-such-format' }));
  const ok = await ask(0x01, '/named', [{ number: O.Accept, value: 50 }]);
  assert.equal(ok.code, 0x45);
  assert.equal(decodeUint(getOption(ok.options, O.ContentFormat)!), 50);
  const bad = await ask(0x01, '/bogus');
  assert.equal(bad.code, 0xa0);
  assert.match(String(errors[0]), /unknown content format "no-such-format"/);
});
