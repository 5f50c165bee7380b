import * as assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { after, test } from 'node:test';
import { CIPHER_SUITES } from '../../src/dtls/crypto/suites.js';
import { parseHandshakeFragments } from '../../src/dtls/handshake/fragment.js';
import { decodeHelloVerifyRequest } from '../../src/dtls/handshake/messages.js';
import { encodeRecord, parseDatagram } from '../../src/dtls/record/record.js';
import { DtlsAlertError, DtlsError, DtlsHandshakeTimeoutError } from '../../src/errors.js';
import {
  type DtlsClientOptions,
  DtlsClientTransport,
  DtlsServerTransport,
  type DtlsServerTransportOptions,
} from '../../src/transport/dtls.js';
import { makePeer, type Peer } from '../../src/transport/transport.js';
import { VirtualClock } from '../../src/util/clock.js';
import { clientHelloRecord } from '../helpers/dtls-raw.js';
import { LossyProxy, randomImpairments } from '../helpers/lossy-proxy.js';
import { onVirtualTime, sleep, until, withTimeout } from '../helpers/timing.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const PSK = { identity: 'client-1', key: 'secret-key-123' };

interface EchoServer {
  server: DtlsServerTransport;
  port: number;
  received: { data: string; peer: Peer }[];
  errors: Error[];
}

async function echoServer(opts: Partial<DtlsServerTransportOptions> = {}): Promise<EchoServer> {
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    psk: PSK,
    retransmitInitialMs: 50,
    ...opts,
  });
  cleanups.push(() => server.close());
  const es: EchoServer = { server, port: server.localAddress().port, received: [], errors: [] };
  server.attach({
    message: (data, peer) => {
      es.received.push({ data: data.toString(), peer });
      server.send(Buffer.concat([Buffer.from('echo:'), data]), peer);
    },
    peerError: (_peer, err) => es.errors.push(err),
  });
  return es;
}

interface TestClient {
  client: DtlsClientTransport;
  messages: string[];
  errors: Error[];
  next(): Promise<string>;
}

async function testClient(opts: Partial<DtlsClientOptions> = {}): Promise<TestClient> {
  const client = await DtlsClientTransport.create({
    psk: PSK,
    retransmitInitialMs: 50,
    handshakeTimeoutMs: 5000,
    ...opts,
  });
  cleanups.push(() => client.close());
  const tc: TestClient = {
    client,
    messages: [],
    errors: [],
    next: () =>
      new Promise((resolve) => {
        waiters.push(resolve);
      }),
  };
  const waiters: ((s: string) => void)[] = [];
  client.attach({
    message: (d) => {
      tc.messages.push(d.toString());
      waiters.shift()?.(d.toString());
    },
    peerError: (_p, e) => tc.errors.push(e),
  });
  return tc;
}

// The certificate suites (ECDHE_ECDSA) have their own test: dtls-cert.test.ts.
for (const suite of [...CIPHER_SUITES.values()].filter((s) => s.keyExchange !== 'ecdhe_ecdsa')) {
  test(`handshake + echo in both directions: ${suite.name}`, async () => {
    const es = await echoServer({ cipherSuites: [suite.id], identityHint: 'the-hint' });
    const tc = await testClient({ cipherSuites: [0xc0a8, 0xc0a4, 0x00a8, 0xccac, 0xc037] });
    const peer = makePeer('127.0.0.1', es.port);
    const reply = tc.next();
    tc.client.send(Buffer.from('queued-before-handshake'), peer);
    await withTimeout(tc.client.connect(peer), 5000, 'connect');
    assert.equal(await withTimeout(reply, 2000, 'echo'), 'echo:queued-before-handshake');
    const info = tc.client.sessionInfo(peer)!;
    assert.equal(info.suiteId, suite.id);
    assert.equal(info.suite, suite.name);
    assert.equal(info.extendedMasterSecret, true);
    assert.equal(es.received[0]?.peer.identity, 'client-1');
    assert.equal(es.received[0]?.peer.address, '127.0.0.1');
    // a large message that needs most of the MTU
    const big = 'x'.repeat(tc.client.maxMessageSize - 10);
    const r2 = tc.next();
    tc.client.send(Buffer.from(big), peer);
    assert.equal(await withTimeout(r2, 2000, 'big echo'), `echo:${big}`);
    await tc.client.close();
    await until(() => es.server.server.sessionCount === 0, 'close_notify removed the server session');
    assert.deepEqual(es.errors, []);
  });
}

for (const seed of [1, 2, 3, 4]) {
  test(`handshake through a lossy, duplicating, reordering proxy with fragmentation (seed ${seed})`, async () => {
    const suiteId = [0xc0a8, 0xccac, 0xc037, 0x00a8][seed - 1]!;
    const longIdentity = `id-${'i'.repeat(300)}`;
    const es = await echoServer({
      cipherSuites: [suiteId],
      identityHint: 'h'.repeat(250),
      mtu: 200,
      psk: (id) => (id === longIdentity ? 'k' : undefined),
      retransmitInitialMs: 40,
    });
    const proxy = await LossyProxy.create({
      target: es.port,
      ...randomImpairments({ loss: 0.25, duplicate: 0.25, jitter: 0.4, maxDelayMs: 30, seed }),
    });
    cleanups.push(() => proxy.close());
    const tc = await testClient({
      psk: { identity: longIdentity, key: 'k' },
      mtu: 200,
      retransmitInitialMs: 40,
      handshakeTimeoutMs: 20_000,
    });
    const peer = makePeer('127.0.0.1', proxy.port);
    await withTimeout(tc.client.connect(peer), 20_000, 'lossy connect');
    assert.equal(tc.client.sessionInfo(peer)?.suiteId, suiteId);
    // application data survives too (retry like CoAP would)
    let got: string | undefined;
    for (let i = 0; i < 40 && got === undefined; i++) {
      tc.client.send(Buffer.from(`ping${i}`), peer);
      await sleep(25);
      got = tc.messages.find((m) => m.startsWith('echo:ping'));
    }
    assert.ok(got, 'an echo came back through the lossy proxy');
    assert.ok(
      es.received.every((r) => r.peer.identity === longIdentity),
      'assertion at line 152',
    );
  });
}

test('wrong key fails cleanly on both sides; the server keeps serving others', async () => {
  const es = await echoServer();
  const bad = await testClient({ psk: { identity: PSK.identity, key: 'wrong' } });
  const peer = makePeer('127.0.0.1', es.port);
  await assert.rejects(withTimeout(bad.client.connect(peer), 5000, 'bad connect'), (e: unknown) => {
    assert.ok(e instanceof DtlsAlertError, String(e));
    assert.equal(e.alert, 20);
    return true;
  });
  assert.ok(bad.errors[0] instanceof DtlsError, 'assertion at line 165');
  await until(() => es.errors.length > 0, 'the server reported the failed handshake');
  assert.ok(
    es.errors.some((e) => e instanceof DtlsError && e.alert === 20),
    'assertion at line 167',
  );
  assert.equal(es.server.server.sessionCount, 0);
  const good = await testClient();
  const reply = good.next();
  good.client.send(Buffer.from('hi'), peer);
  assert.equal(await withTimeout(reply, 5000, 'good echo'), 'echo:hi');
});

test('unknown identity → unknown_psk_identity (115) on both sides; async PSK lookup', async () => {
  const es = await echoServer({
    psk: async (id) => {
      await sleep(5);
      return id === 'known' ? 'k' : undefined;
    },
  });
  const peer = makePeer('127.0.0.1', es.port);
  const bad = await testClient({ psk: { identity: 'stranger', key: 'k' } });
  await assert.rejects(withTimeout(bad.client.connect(peer), 5000, 'connect'), (e: unknown) => {
    assert.ok(e instanceof DtlsAlertError, 'assertion at line 185');
    assert.equal(e.alert, 115);
    return true;
  });
  await until(() => es.errors.length > 0, 'the server reported the failed handshake');
  assert.ok(
    es.errors.some((e) => e instanceof DtlsError && e.alert === 115),
    'assertion at line 190',
  );
  const good = await testClient({ psk: { identity: 'known', key: 'k' } });
  await withTimeout(good.client.connect(peer), 5000, 'good connect');
});

test('no common cipher suite → handshake_failure (40)', async () => {
  const es = await echoServer({ cipherSuites: [0x00a8] });
  const tc = await testClient({ cipherSuites: [0xc0a8] });
  await assert.rejects(
    withTimeout(tc.client.connect(makePeer('127.0.0.1', es.port)), 5000, 'connect'),
    (e: unknown) => {
      assert.ok(e instanceof DtlsAlertError, 'assertion at line 201');
      assert.equal(e.alert, 40);
      return true;
    },
  );
});

test('handshake timeout when nobody answers', async () => {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  let count = 0;
  sock.on('message', () => count++);
  // The client's timers on a virtual clock: the deadline is the protocol's, not the machine's speed.
  const clock = new VirtualClock();
  const tc = await testClient({ retransmitInitialMs: 20, handshakeTimeoutMs: 300, clock });
  const connecting = tc.client.connect(makePeer('127.0.0.1', sock.address().port));
  const took = await onVirtualTime(clock, connecting);
  await assert.rejects(connecting, DtlsHandshakeTimeoutError);
  assert.equal(took, 300, 'failed at the handshake deadline');
  // 0, 20, 60, 140 (and 300) ms: the initial ClientHello and doubling retransmissions, not a flood
  await until(() => count >= 4, 'ClientHello and its retransmissions');
  assert.ok(count <= 5, `ClientHello sent ${count} times`);
});

/** A ClientHello record (record sequence 7) from test/helpers/dtls-raw.ts. */
const rawClientHello = (cookie: Buffer, random = Buffer.alloc(32, 5)): Buffer =>
  clientHelloRecord(cookie, random, 7);

test('stateless cookie exchange: HelloVerifyRequest, no state before a valid cookie', async () => {
  const es = await echoServer();
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  const replies: Buffer[] = [];
  sock.on('message', (m) => replies.push(m));
  sock.send(rawClientHello(Buffer.alloc(0)), es.port, '127.0.0.1');
  await until(() => replies.length >= 1, 'HelloVerifyRequest');
  assert.equal(replies.length, 1);
  const [rec] = parseDatagram(replies[0]!);
  assert.equal(rec?.seq, 7, 'HVR reuses the ClientHello record sequence number');
  const [frag] = parseHandshakeFragments(rec!.fragment);
  assert.equal(frag?.msgType, 3);
  const cookie = decodeHelloVerifyRequest(frag!.body).cookie;
  assert.equal(cookie.length, 32);
  assert.equal(es.server.server.sessionCount, 0, 'no state allocated for a cookieless ClientHello');
  // forged cookie → another HVR, still no state
  sock.send(rawClientHello(Buffer.alloc(32, 0xaa)), es.port, '127.0.0.1');
  // right cookie but different random (cookie is bound to the whole ClientHello)
  sock.send(rawClientHello(cookie, Buffer.alloc(32, 6)), es.port, '127.0.0.1');
  await until(() => replies.length >= 3, 'two more HelloVerifyRequests');
  assert.equal(replies.length, 3);
  assert.equal(es.server.server.sessionCount, 0);
  assert.equal(es.server.server.stats.badCookies, 2);
  // valid cookie → the server starts a handshake (ServerHello flight)
  sock.send(rawClientHello(cookie), es.port, '127.0.0.1');
  await until(() => replies.length >= 4, 'the ServerHello flight');
  assert.equal(es.server.server.sessionCount, 1);
  const types = parseHandshakeFragments(parseDatagram(replies[3]!)[0]!.fragment).map((f) => f.msgType);
  assert.equal(types[0], 2, 'ServerHello');
  // cookie still valid after one rotation, invalid after two
  es.server.server.rotateCookieSecret();
  const before = es.server.server.stats.helloVerifySent;
  sock.send(rawClientHello(cookie, Buffer.alloc(32, 5)), es.port, '127.0.0.1');
  await sleep(30);
  assert.equal(
    es.server.server.stats.helloVerifySent,
    before,
    'retransmitted ClientHello of the running handshake',
  );
  es.server.server.rotateCookieSecret();
  sock.send(rawClientHello(cookie, Buffer.alloc(32, 8)), es.port, '127.0.0.1');
  await until(() => es.server.server.stats.helloVerifySent > before, 'stale cookie rejected');
  assert.equal(es.server.server.stats.helloVerifySent, before + 1, 'stale cookie rejected');
});

test('client that lost its session restarts from the same address/port', async () => {
  const es = await echoServer();
  const proxy = await LossyProxy.create({ target: es.port, upstream: 'shared' });
  cleanups.push(() => proxy.close());
  const peer = makePeer('127.0.0.1', proxy.port);
  const c1 = await testClient();
  const r1 = c1.next();
  c1.client.send(Buffer.from('one'), peer);
  assert.equal(await withTimeout(r1, 5000, 'first echo'), 'echo:one');
  proxy.options.drop = () => true; // close_notify is lost: the server keeps the old session
  await c1.client.close();
  await sleep(20);
  proxy.options.drop = undefined;
  assert.equal(es.server.server.sessionCount, 1);
  const c2 = await testClient();
  const r2 = c2.next();
  c2.client.send(Buffer.from('two'), peer);
  assert.equal(await withTimeout(r2, 5000, 'second echo'), 'echo:two');
  assert.equal(es.server.server.stats.replaced, 1);
  assert.equal(es.server.server.sessionCount, 1);
});

test('server limit: max sessions', async () => {
  const es = await echoServer({ maxSessions: 1 });
  const peer = makePeer('127.0.0.1', es.port);
  const a = await testClient();
  await withTimeout(a.client.connect(peer), 5000, 'a');
  const b = await testClient({ handshakeTimeoutMs: 300 });
  await assert.rejects(b.client.connect(peer), DtlsHandshakeTimeoutError);
  assert.ok(es.server.server.stats.rejectedFull >= 1, 'new handshake refused while full');
  await a.client.close();
  await until(() => es.server.server.sessionCount === 0, 'close_notify removed the session');
  const c = await testClient();
  await withTimeout(c.client.connect(peer), 5000, 'c after a closed');
});

test('server evicts idle sessions', async () => {
  const es = await echoServer({ idleTimeoutMs: 150 });
  const peer = makePeer('127.0.0.1', es.port);
  const a = await testClient();
  await withTimeout(a.client.connect(peer), 5000, 'a');
  assert.equal(es.server.server.sessionCount, 1);
  await until(() => es.server.server.sessionCount === 0, 'idle session evicted');
  assert.equal(es.server.server.sessionCount, 0, 'idle session evicted');
  assert.ok(es.server.server.stats.evictedIdle >= 1, 'eviction counted');
  // The close_notify is in flight when the server's count drops: data sent before the client
  // has read it goes to the dead session and is lost (CoAP would retransmit). Wait for it.
  await until(() => a.client.sessionInfo(peer)?.established !== true, 'the client read the close_notify');
  assert.notEqual(a.client.sessionInfo(peer)?.established, true, 'the client read the close_notify');
  // the client got close_notify and starts a new session transparently
  const r = a.next();
  a.client.send(Buffer.from('again'), peer);
  assert.equal(await withTimeout(r, 5000, 'echo after eviction'), 'echo:again');
});

test('key log lines (NSS format) match on both sides', async () => {
  const serverLines: string[] = [];
  const clientLines: string[] = [];
  const es = await echoServer({ keyLogFile: (l) => serverLines.push(l) });
  const tc = await testClient({ keyLogFile: (l) => clientLines.push(l) });
  await withTimeout(tc.client.connect(makePeer('127.0.0.1', es.port)), 5000, 'connect');
  assert.equal(clientLines.length, 1);
  assert.match(clientLines[0]!, /^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}$/);
  assert.deepEqual(serverLines, clientLines);
});

test('diagnostics channel events', async () => {
  const events: { name: string; msg: Record<string, unknown> }[] = [];
  const names = [
    'coapkit:dtls:handshake:start',
    'coapkit:dtls:handshake:done',
    'coapkit:dtls:handshake:error',
    'coapkit:dtls:record:sent',
    'coapkit:dtls:record:received',
  ];
  const subs = names.map((name) => {
    const fn = (msg: unknown) => events.push({ name, msg: msg as Record<string, unknown> });
    subscribe(name, fn);
    return [name, fn] as const;
  });
  try {
    const es = await echoServer();
    const tc = await testClient();
    await withTimeout(tc.client.connect(makePeer('127.0.0.1', es.port)), 5000, 'connect');
    const done = events.filter((e) => e.name === 'coapkit:dtls:handshake:done');
    assert.equal(done.length, 2);
    assert.equal(done[0]?.msg.suite, 'TLS_PSK_WITH_AES_128_CCM_8');
    assert.ok(
      events.some((e) => e.name === 'coapkit:dtls:handshake:start' && e.msg.role === 'client'),
      'assertion at line 354',
    );
    const sent = events.filter((e) => e.name === 'coapkit:dtls:record:sent').map((e) => e.msg);
    const hs = sent.flatMap(
      (m) =>
        (m.handshake as {
          typeName: string;
          cookie?: string;
          offeredSuites?: string[];
          identity?: string;
        }[]) ?? [],
    );
    const hellos = hs.filter((h) => h.typeName === 'client_hello');
    assert.equal(hellos.length, 2);
    assert.equal(hellos[0]?.cookie, '');
    assert.equal(hellos[1]?.cookie?.length, 64);
    assert.ok(hellos[0]?.offeredSuites?.includes('TLS_PSK_WITH_AES_128_CCM_8'), 'assertion at line 369');
    assert.ok(
      hs.some((h) => h.typeName === 'hello_verify_request'),
      'assertion at line 370',
    );
    assert.ok(
      hs.some((h) => h.typeName === 'client_key_exchange' && h.identity === 'client-1'),
      'assertion at line 371',
    );
    assert.ok(
      events.some((e) => e.name === 'coapkit:dtls:record:received' && e.msg.epoch === 1),
      'assertion at line 372',
    );
  } finally {
    for (const [name, fn] of subs) unsubscribe(name, fn);
  }
});

test('server retransmits its last flight when the client retransmits its Finished flight', async () => {
  const es = await echoServer();
  let droppedFinal = 0;
  const proxy = await LossyProxy.create({
    target: es.port,
    drop: (d) => {
      // drop the server's ChangeCipherSpec+Finished flight twice
      const recs = parseDatagram(d.data);
      if (d.dir === 'down' && recs.some((r) => r.type === 20) && droppedFinal < 2) {
        droppedFinal++;
        return true;
      }
      return false;
    },
  });
  cleanups.push(() => proxy.close());
  const tc = await testClient();
  const peer = makePeer('127.0.0.1', proxy.port);
  await withTimeout(tc.client.connect(peer), 5000, 'connect');
  assert.equal(droppedFinal, 2);
  const r = tc.next();
  tc.client.send(Buffer.from('after-retransmit'), peer);
  assert.equal(await withTimeout(r, 2000, 'echo'), 'echo:after-retransmit');
});

test('half-open handshake limit (maxHandshakes): a new verified ClientHello evicts the oldest', async () => {
  const es = await echoServer({ maxHandshakes: 2 });
  const socks = await Promise.all(
    [0, 1, 2].map(async () => {
      const s = createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      cleanups.push(() => new Promise<void>((r) => s.close(() => r())));
      return s;
    }),
  );
  for (const [i, s] of socks.entries()) {
    const random = Buffer.alloc(32, 10 + i);
    const hvr = new Promise<Buffer>((resolve) => s.once('message', resolve));
    s.send(rawClientHello(Buffer.alloc(0), random), es.port, '127.0.0.1');
    const [rec] = parseDatagram(await withTimeout(hvr, 2000, 'hvr'));
    const cookie = decodeHelloVerifyRequest(parseHandshakeFragments(rec!.fragment)[0]!.body).cookie;
    s.send(rawClientHello(cookie, random), es.port, '127.0.0.1');
  }
  await until(() => es.server.server.stats.evictedHalfOpen >= 1, 'the oldest half-open handshake evicted');
  assert.equal(es.server.server.handshakeCount, 2);
  assert.equal(es.server.server.stats.rejectedFull, 0);
  assert.equal(es.server.server.stats.evictedHalfOpen, 1);
  const port0 = socks[0]!.address().port;
  assert.equal(es.server.server.connection(`127.0.0.1%${port0}`), undefined, 'the oldest was evicted');
});

test('IPv6 loopback, host name resolution and server_name extension', async () => {
  const names: (string | undefined)[] = [];
  const fn = (msg: unknown) => {
    for (const h of (msg as { handshake?: { typeName: string; serverName?: string }[] }).handshake ?? []) {
      if (h.typeName === 'client_hello') names.push(h.serverName);
    }
  };
  subscribe('coapkit:dtls:record:sent', fn);
  try {
    const server = await DtlsServerTransport.create({
      host: '::',
      port: 0,
      psk: PSK,
      retransmitInitialMs: 50,
    });
    cleanups.push(() => server.close());
    const seen: Peer[] = [];
    server.attach({
      message: (d, p) => {
        seen.push(p);
        server.send(d, p);
      },
    });
    const port = server.localAddress().port;
    const v6 = await testClient({ family: 6 });
    const r6 = v6.next();
    v6.client.send(Buffer.from('v6'), makePeer('::1', port));
    assert.equal(await withTimeout(r6, 5000, 'v6 echo'), 'v6');
    assert.equal(seen[0]?.address, '::1');
    assert.equal(seen[0]?.family, 'IPv6');
    const byName = await testClient();
    const rn = byName.next();
    byName.client.send(Buffer.from('named'), makePeer('localhost', port));
    assert.equal(await withTimeout(rn, 5000, 'named echo'), 'named');
    assert.ok(names.includes('localhost'), `server_name sent for a host name (${names.join(',')})`);
    assert.equal(names[0], undefined, 'no server_name for an IP literal');
  } finally {
    unsubscribe('coapkit:dtls:record:sent', fn);
  }
});

test('after the handshake: forged records are silently dropped, replayed records are not delivered twice', async () => {
  const es = await echoServer();
  const appRecords: Buffer[] = [];
  const proxy = await LossyProxy.create({
    target: es.port,
    drop: (d) => {
      if (d.dir === 'up' && parseDatagram(d.data).some((r) => r.type === 23))
        appRecords.push(Buffer.from(d.data));
      return false;
    },
  });
  cleanups.push(() => proxy.close());
  const tc = await testClient();
  const peer = makePeer('127.0.0.1', proxy.port);
  const r1 = tc.next();
  tc.client.send(Buffer.from('original'), peer);
  assert.equal(await withTimeout(r1, 5000, 'echo'), 'echo:original');
  assert.equal(appRecords.length, 1);
  // replay of the captured record: anti-replay window drops it
  proxy.inject(appRecords[0]!, 'up');
  // forged record: same header, flipped ciphertext byte; also a record with a far-future sequence number
  const forged = Buffer.from(appRecords[0]!);
  forged[forged.length - 1]! ^= 0xff;
  proxy.inject(forged, 'up');
  const future = Buffer.from(forged);
  future.writeUIntBE(2 ** 40, 5, 6);
  proxy.inject(future, 'up');
  // epoch-0 fatal alert (unauthenticated) must be ignored after the handshake
  proxy.inject(encodeRecord(21, 0, 99, Buffer.from([2, 40])), 'up');
  await sleep(50);
  assert.deepEqual(
    es.received.map((r) => r.data),
    ['original'],
    'replayed / forged records were not delivered',
  );
  assert.deepEqual(es.errors, []);
  assert.equal(es.server.server.sessionCount, 1, 'session survived');
  const r2 = tc.next();
  tc.client.send(Buffer.from('still-works'), peer);
  assert.equal(await withTimeout(r2, 5000, 'echo 2'), 'echo:still-works');
});
