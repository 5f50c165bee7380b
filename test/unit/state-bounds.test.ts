/**
 * Bounds of per-path and per-peer state (issue 10, items 4, 5, 7):
 * DynamicStore counters and byte budget, request URI limits, the cached
 * /.well-known/core document, the message layer's peer table and the UDP
 * transport's peer interning.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { afterEach, test } from 'node:test';
import type { CoapMessage } from '../../src/codec/message.js';
import { getOption } from '../../src/codec/options.js';
import { MessageType, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber as O } from '../../src/constants/options.js';
import { DynamicStore, RESOURCE_OVERHEAD_BYTES } from '../../src/server/dynamic-store.js';
import { CoapServer } from '../../src/server/server.js';
import { MemoryNetwork } from '../../src/transport/memory.js';
import { UdpTransport } from '../../src/transport/udp.js';
import { memorySetup, RawPeer, selfOf } from '../helpers/memory.js';
import { sleep } from '../helpers/timing.js';

/** Polls `cond` until it holds (fails after `ms`). */
async function waitUntil(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timeout: ${what}`);
    await sleep(5);
  }
}

const { CON, NON } = MessageType;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function post(store: DynamicStore, path: string, payload = 'x') {
  return store.handle({ method: 'POST', path, options: [], payload: Buffer.from(payload) });
}
function del(store: DynamicStore, path: string) {
  return store.handle({ method: 'DELETE', path, options: [], payload: Buffer.alloc(0) });
}
function locPath(res: { locationPath?: string[] }): string {
  return `/${(res.locationPath ?? []).join('/')}`;
}

// ---- DynamicStore ------------------------------------------------------------

test('store: POST/DELETE pairs on ever new collection paths leave no counters and no bytes', () => {
  const store = new DynamicStore({ builtins: false });
  for (let i = 0; i < 2000; i++) {
    const collection = `/c${i}/${'x'.repeat(900)}`;
    const r = post(store, collection);
    assert.equal(r.code, ResponseCode.Created);
    assert.equal(del(store, locPath(r)).code, ResponseCode.Deleted);
  }
  assert.equal(store.size, 0);
  assert.equal(store.counterCount, 0, 'every collection counter given back');
  assert.equal(store.bytes, 0, 'every accounted byte given back');
});

test('store: a collection keeps its counter (no reused entry names) while it has entries', () => {
  const store = new DynamicStore({ builtins: false });
  const a = locPath(post(store, '/c'));
  const b = locPath(post(store, '/c'));
  assert.deepEqual([a, b], ['/c/1', '/c/2']);
  del(store, a);
  assert.equal(locPath(post(store, '/c')), '/c/3', 'the counter survives while /c/2 exists');
  del(store, '/c/2');
  del(store, '/c/3');
  assert.equal(store.counterCount, 0);
  // DELETE of the collection itself drops its counter and its subtree's counters.
  post(store, '/d');
  post(store, '/d/1');
  assert.equal(store.counterCount, 2);
  del(store, '/d');
  assert.equal(store.counterCount, 0);
  assert.equal(store.bytes, 0);
  store.set('/e/f', 'v');
  post(store, '/e');
  store.clear();
  assert.equal(store.counterCount, 0);
  assert.equal(store.bytes, 0);
});

test('store: maxBytes counts path bytes and payload bytes; over it PUT and POST get 5.03', () => {
  const budget = 3 * (RESOURCE_OVERHEAD_BYTES + 600);
  const store = new DynamicStore({ builtins: false, maxBytes: budget });
  const long = `/${'p'.repeat(500)}`;
  const put = (path: string, body: string) =>
    store.handle({ method: 'PUT', path, options: [], payload: Buffer.from(body) });
  assert.equal(put(`${long}1`, 'x'.repeat(50)).code, ResponseCode.Created);
  assert.equal(store.bytes, RESOURCE_OVERHEAD_BYTES + 502 + 50);
  assert.equal(put(`${long}2`, 'x'.repeat(50)).code, ResponseCode.Created);
  assert.equal(put(`${long}3`, 'x'.repeat(50)).code, ResponseCode.Created);
  const full = put(`${long}4`, 'x');
  assert.equal(
    full.code,
    ResponseCode.ServiceUnavailable,
    'paths count: 4 x 500-byte paths exceed the budget',
  );
  assert.match(String(full.payload), /store limit/);
  assert.equal(post(store, long).code, ResponseCode.ServiceUnavailable);
  assert.equal(store.counterCount, 0, 'a refused POST keeps no counter');
  // Replacing with a larger payload is checked too; a smaller one always fits.
  assert.equal(put(`${long}1`, 'x'.repeat(200)).code, ResponseCode.ServiceUnavailable);
  assert.equal(put(`${long}1`, 'y').code, ResponseCode.Changed);
  del(store, `${long}1`);
  del(store, `${long}2`);
  del(store, `${long}3`);
  assert.equal(store.bytes, 0);
});

test('store: links are cached until a change (sz follows updates)', () => {
  const store = new DynamicStore({ builtins: false });
  store.set('/a', 'xx');
  const sz = () => store.dynamicLinks()[0]!.attributes.find(([n]) => n === 'sz')![1];
  assert.equal(sz(), '2');
  store.set('/a', 'xxxx');
  assert.equal(sz(), '4');
  store.delete('/a');
  assert.deepEqual(store.dynamicLinks(), []);
});

// ---- CoapServer: URI limits and discovery -------------------------------------

async function serverSetup(options: ConstructorParameters<typeof CoapServer>[0] = {}) {
  const net = new MemoryNetwork();
  const server = new CoapServer({ transmission: { ackTimeout: 50 }, ...options });
  const t = net.createTransport('10.0.0.1', 5683);
  await server.listen(t);
  const raw = new RawPeer(net.createTransport('10.0.0.2', 40000));
  cleanups.push(async () => {
    await server.close();
    await raw.transport.close();
  });
  let mid = 1;
  const request = async (
    options: Array<{ number: number; value: Buffer }>,
    code = 1,
  ): Promise<CoapMessage> => {
    const messageId = mid++;
    raw.send(t.self, { type: CON, code, messageId, token: Buffer.from([messageId & 0xff]), options });
    const r = await raw.until((x) => x.msg?.messageId === messageId);
    return r.msg!;
  };
  return { server, raw, request };
}

const seg = (s: string) => ({ number: O.UriPath, value: Buffer.from(s) });
const query = (s: string) => ({ number: O.UriQuery, value: Buffer.from(s) });

test('server: Uri-Path bytes, segment count and Uri-Query bytes are limited (4.00 before any middleware)', async () => {
  const { server, request } = await serverSetup({
    maxUriPathBytes: 100,
    maxUriPathSegments: 4,
    maxUriQueryBytes: 50,
  });
  let seen = 0;
  server.use(() => {
    seen++;
    return undefined;
  });
  server.get('/*', () => 'ok');
  // "/" + 99 bytes = 100: at the limit.
  assert.equal((await request([seg('a'.repeat(99))])).code, ResponseCode.Content);
  const long = await request([seg('a'.repeat(50)), seg('b'.repeat(49))]);
  assert.equal(long.code, ResponseCode.BadRequest, '51 + 50 = 101 bytes');
  assert.match(long.payload.toString(), /Uri-Path longer than 100 bytes/);
  assert.equal((await request([seg('a'), seg('b'), seg('c'), seg('d')])).code, ResponseCode.Content);
  const many = await request([seg('a'), seg('b'), seg('c'), seg('d'), seg('e')]);
  assert.equal(many.code, ResponseCode.BadRequest);
  assert.match(many.payload.toString(), /more than 4 Uri-Path segments/);
  assert.equal((await request([seg('q'), query('x'.repeat(24)), query('y'.repeat(24))])).code, 0x45);
  const q = await request([seg('q'), query('x'.repeat(24)), query('y'.repeat(25))]);
  assert.equal(q.code, ResponseCode.BadRequest);
  assert.match(q.payload.toString(), /Uri-Query longer than 50 bytes/);
  assert.equal(seen, 3, 'rejected requests never reach the middlewares');
});

test('server: default URI limits are 1024 path bytes, 32 segments, 1024 query bytes', async () => {
  const { server, request } = await serverSetup();
  server.get('/*', () => 'ok');
  const segs = Array.from({ length: 32 }, () => seg('s'.repeat(31))); // 32 x 32 = 1024
  assert.equal((await request(segs)).code, ResponseCode.Content);
  assert.equal((await request([...segs.slice(0, 31), seg('s'.repeat(32))])).code, ResponseCode.BadRequest);
  assert.equal((await request([...segs, seg('')])).code, ResponseCode.BadRequest);
  // (One Uri-Query value is at most 255 bytes: 4 x (255 + 1) = 1024.)
  const qs = Array.from({ length: 4 }, () => query('v'.repeat(255)));
  assert.equal((await request([seg('q'), ...qs])).code, ResponseCode.Content);
  assert.equal((await request([seg('q'), ...qs, query('')])).code, ResponseCode.BadRequest);
});

test('server: /.well-known/core is served from a cache invalidated by routes and watched providers', async () => {
  const { server, request } = await serverSetup();
  const store = new DynamicStore({ builtins: false });
  let calls = 0;
  const links = () => {
    calls++;
    return store.dynamicLinks();
  };
  // The store's links through a spy, watched like DynamicStore.mount() does.
  server.addLinkProvider(links, (invalidate) => store.on('change', invalidate));
  const wk = [seg('.well-known'), seg('core')];
  store.set('/one', '1');
  const a = await request(wk);
  assert.equal(a.code, ResponseCode.Content);
  assert.match(a.payload.toString(), /<\/one>/);
  const etag = getOption(a.options, O.ETag);
  assert.ok(etag, 'the document carries an ETag');
  await request(wk);
  assert.equal(calls, 1, 'second request served from the cache');
  const valid = await request([...wk, { number: O.ETag, value: etag }]);
  assert.equal(valid.code, ResponseCode.Valid);
  store.set('/two', '2');
  const b = await request(wk);
  assert.match(b.payload.toString(), /<\/two>/);
  assert.equal(calls, 2, 'a store change invalidates');
  server.get('/added', () => 'x', { title: 'added' });
  assert.match((await request(wk)).payload.toString(), /<\/added>/);
  server.unroute('/added');
  assert.doesNotMatch((await request(wk)).payload.toString(), /<\/added>/);
  // Filters are applied to the cached links.
  const f = await request([...wk, query('href=/tw*')]);
  assert.equal(f.payload.toString().split(',').length, 1);
  // A provider without a watch function disables the cache (asked every time).
  let unwatched = 0;
  server.addLinkProvider(() => {
    unwatched++;
    return [];
  });
  await request(wk);
  await request(wk);
  assert.equal(unwatched, 2);
});

// ---- Message layer: peer table --------------------------------------------------

test('message layer: the peer table is bounded; idle peers are evicted, every peer is served', async () => {
  const s = memorySetup();
  cleanups.push(() => s.close());
  const ep = s.endpoint({ peers: { max: 4, idleMs: 60_000 } });
  let calls = 0;
  ep.handler = () => ({ code: 0x45, payload: Buffer.from(String(++calls)) });
  const raws = Array.from({ length: 20 }, (_, i) => s.raw('10.0.1.1', 30000 + i));
  for (const [i, r] of raws.entries()) {
    r.send(selfOf(ep), { type: CON, code: 1, messageId: i, token: Buffer.from([i]) });
    const got = await r.next();
    assert.equal(got.msg!.code, 0x45);
    assert.ok(ep.messageLayer.peerCount <= 4, `peer table holds ${ep.messageLayer.peerCount}`);
  }
  assert.equal(calls, 20);
  assert.equal(ep.messageLayer.peersEvicted, 16);
  // Deduplication outlives an evicted state: a retransmission is answered from memory.
  raws[0]!.send(selfOf(ep), { type: CON, code: 1, messageId: 0, token: Buffer.from([0]) });
  const replay = await raws[0]!.next();
  assert.equal(replay.msg!.payload.toString(), '1');
  assert.equal(calls, 20, 'the handler did not run again');
});

test('message layer: a peer with a pending CON is not evicted; a full table of busy peers serves newcomers without keeping them', async () => {
  const s = memorySetup();
  cleanups.push(() => s.close());
  const ep = s.endpoint({ peers: { max: 2, idleMs: 60_000 } });
  ep.handler = () => ({ code: 0x45 });
  const busy = [s.raw('10.0.2.1', 1), s.raw('10.0.2.2', 1)];
  // Two outgoing CONs that nobody acknowledges: both peers stay busy.
  const failures: Promise<unknown>[] = [];
  for (const b of busy) {
    failures.push(
      new Promise((resolve) =>
        ep.request(b.peer, { code: 1 }, { onResponse: () => true, onError: resolve, timeoutMs: 60_000 }),
      ),
    );
  }
  await Promise.all(busy.map((b) => b.next()));
  assert.equal(ep.messageLayer.peerCount, 2);
  const newcomer = s.raw('10.0.2.3', 1);
  newcomer.send(selfOf(ep), { type: CON, code: 1, messageId: 7, token: Buffer.from([7]) });
  assert.equal((await newcomer.next()).msg!.code, 0x45, 'served');
  assert.equal(ep.messageLayer.peerCount, 2, 'not kept');
  assert.equal(ep.messageLayer.peersEvicted, 0, 'busy peers stay');
});

test('message layer: idle peers expire after idleMs; malformed datagrams create no state', async () => {
  const s = memorySetup();
  cleanups.push(() => s.close());
  const ep = s.endpoint({ peers: { idleMs: 100 } });
  ep.handler = () => ({ code: 0x45 });
  const raws = Array.from({ length: 10 }, (_, i) => s.raw('10.0.3.1', 2000 + i));
  for (const [i, r] of raws.entries()) {
    r.send(selfOf(ep), { type: NON, code: 1, messageId: i, token: Buffer.from([i]) });
    await r.next();
  }
  assert.equal(ep.messageLayer.peerCount, 10);
  await waitUntil(() => !(ep.messageLayer.peerCount > 0), 5000, 'idle peers were not dropped');
  // Malformed: bad version, truncated token, option past the end, reserved class, stray ACK/RST.
  const bad = s.raw('10.0.4.1', 1);
  const crafted = [
    Buffer.from([0x80, 1, 0, 1]),
    Buffer.from([0x48, 1, 0, 2, 1]),
    Buffer.from([0x40, 1, 0, 3, 0xd1]),
    Buffer.from([0x40, 0x20, 0, 4]),
    Buffer.from([0x60, 0, 0, 5]),
    Buffer.from([0x70, 0, 0, 6]),
    Buffer.from([0x40, 0, 0, 7]), // CoAP ping: answered with RST, no state either
    Buffer.from([0x60, 0x45, 0, 8, 0xff, 1]), // ACK carrying a response nobody asked for
  ];
  for (const d of crafted) bad.send(selfOf(ep), d);
  await bad.waitFor(4); // RSTs for the CON ones and the ping
  assert.equal(ep.messageLayer.peerCount, 0, 'no state for rejected or ignored datagrams');
});

// ---- UDP transport: peer interning ----------------------------------------------

test('udp: interned peers are bounded (two generations) and expire', async () => {
  const t = await UdpTransport.create({ host: '127.0.0.1', peerCacheSize: 8, peerCacheMs: 100 });
  cleanups.push(() => t.close());
  let got = 0;
  const seen = new Set<string>();
  t.attach({
    message: (_d, peer) => {
      got++;
      seen.add(peer.key);
    },
  });
  const sockets: dgram.Socket[] = [];
  cleanups.push(() => {
    for (const s of sockets) s.close();
  });
  const port = t.localAddress().port;
  let maxCached = 0;
  for (let i = 0; i < 40; i++) {
    const s = dgram.createSocket('udp4');
    sockets.push(s);
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    s.send(Buffer.from([0x50, 1, 0, i]), port, '127.0.0.1');
    await waitUntil(() => !(got <= i), 5000, 'datagram not delivered');
    maxCached = Math.max(maxCached, t.cachedPeers);
  }
  assert.equal(seen.size, 40);
  assert.ok(maxCached <= 16, `at most two generations of 8 (saw ${maxCached})`);
  await waitUntil(() => !(t.cachedPeers > 0), 5000, 'interned peers did not expire');
});
