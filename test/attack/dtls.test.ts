/**
 * DTLS attack tests (issue 10, item 1 and "one HelloVerifyRequest per datagram"),
 * loopback only, bounded traffic:
 *  (a) many half-open handshakes (past the cookie) from one address, and from a
 *      few more addresses to fill the global table, while a legitimate coaps
 *      client completes a request;
 *  (b) fragments claiming 16 KB (and 4 KB) handshake messages on every half-open
 *      handshake: the server's heap (after gc, child process) stays within a
 *      stated margin and comes back once the handshakes expire;
 *  (c) one datagram with 900 ClientHellos gets one HelloVerifyRequest.
 */
import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CoapClient } from '../../src/client/client.js';
import { CoapServer } from '../../src/server/server.js';
import { DtlsServerTransport } from '../../src/transport/dtls.js';
import {
  alerts,
  clientHelloRecord,
  fragmentRecord,
  handshakeTypes,
  openHalfHandshake,
  RawDtlsPeer,
} from '../helpers/dtls-raw.js';
import { withTimeout } from '../helpers/timing.js';

const PSK = { identity: 'dev', key: 'k3y' };
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function peers(address: string, n: number): Promise<RawDtlsPeer[]> {
  const out = await Promise.all(Array.from({ length: n }, () => RawDtlsPeer.create(address)));
  cleanups.push(() => Promise.all(out.map((p) => p.close())));
  return out;
}

async function coapsServer(opts: { maxHandshakes?: number } = {}) {
  const server = new CoapServer();
  server.get('/hello', () => 'world');
  const t = await DtlsServerTransport.create({ host: '127.0.0.1', port: 0, psk: PSK, ...opts });
  await server.listen(t);
  cleanups.push(() => server.close());
  return { server, transport: t, port: t.localAddress().port };
}

let seed = 0;
const random = (): Buffer => {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(++seed);
  return b;
};

test('(a) half-open handshakes from one and from a few addresses do not lock a legitimate client out', async () => {
  // maxHandshakes 64 instead of 1000 so that 8 loopback addresses can fill the table.
  const { transport, port } = await coapsServer({ maxHandshakes: 64 });
  const dtls = transport.server;
  const one = await peers('127.0.0.1', 100); // one address: only its share (16) is kept
  const others = (await Promise.all([2, 3, 4, 5, 6, 7, 8, 9].map((i) => peers(`127.0.0.${i}`, 10)))).flat();
  const attackers = [...one, ...others];
  let stop = false;
  let opened = 0;
  // Every attacker keeps restarting a handshake it never finishes (bounded: 20 rounds).
  const attack = (async () => {
    for (let round = 0; round < 20 && !stop; round++) {
      await Promise.all(
        attackers.map(async (p) => {
          await openHalfHandshake(p, port, random(), false);
          opened++;
        }),
      );
    }
  })();
  try {
    // The first round is in: the table is full and 127.0.0.1 is at its share.
    while (opened < attackers.length) await new Promise((r) => setImmediate(r));
    const client = new CoapClient({ psk: PSK, bind: { address: '127.0.0.20' } });
    cleanups.push(() => client.close());
    const res = await withTimeout(client.get(`coaps://127.0.0.1:${port}/hello`), 10_000, 'legitimate GET');
    assert.equal(res.text(), 'world');
    assert.ok(opened < attackers.length * 20, 'served while the attack was still running');
  } finally {
    stop = true;
    await attack;
  }
  assert.ok(dtls.handshakeCount <= 64, `handshakes ${dtls.handshakeCount}`);
  assert.ok(
    dtls.handshakeCountOf('127.0.0.1') <= 16,
    `127.0.0.1 holds ${dtls.handshakeCountOf('127.0.0.1')}`,
  );
  assert.ok(dtls.stats.rejectedAddress > 0, 'one address was held to its share');
  assert.ok(dtls.stats.evictedHalfOpen > 0, 'the full table evicted attackers');
});

interface Mem {
  heapUsed: number;
  rss: number;
  handshakes: number;
  buffered: number;
  stats: Record<string, number>;
}

function startChild(): Promise<{ port: number; mem(): Promise<Mem>; child: ChildProcess }> {
  const file = fileURLToPath(new URL('./dtls-server-child.ts', import.meta.url));
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', file], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, HALF_OPEN_MS: '5000' },
  });
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const mem = () =>
    new Promise<Mem>((resolve) => {
      child.once('message', (m) => resolve(m as Mem));
      child.send('mem');
    });
  return withTimeout(
    new Promise((resolve, reject) => {
      child.once('message', (m) => resolve({ port: (m as { port: number }).port, mem, child }));
      child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
    }),
    20_000,
    'child server start',
  );
}

const MB = 1024 * 1024;

test('(b) fragments claiming 16 KB messages: memory stays bounded and comes back', async () => {
  const srv = await startChild();
  const base = await srv.mem();
  // 8 addresses × 16 half-open handshakes (each address's full share) = 128.
  const attackers = (
    await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((i) => peers(`127.0.0.${i + 30}`, 16)))
  ).flat();
  for (let i = 0; i < attackers.length; i += 16)
    await Promise.all(attackers.slice(i, i + 16).map((p) => openHalfHandshake(p, srv.port, random())));
  // Each sends 16 one-byte fragments of messages 1..16 (16 records in one
  // datagram): half claim 16 KB (the attack; the server aborts with
  // illegal_parameter), half claim 4 KB (accepted, charged by the received
  // bytes). Resent until every one had its effect (a burst can overflow the
  // server's socket buffer); resends also check that duplicates are not charged twice.
  const datagrams = attackers.map((_, i) => {
    const claim = i % 2 === 0 ? 16384 : 4096;
    const recs = [];
    for (let seq = 1; seq <= 16; seq++)
      recs.push(fragmentRecord(16, seq, claim, claim - 1 - seq, Buffer.from([seq]), 2 + seq));
    return Buffer.concat(recs);
  });
  const expected = 64 * 16 * (1 + 2 * 96); // 64 handshakes × 16 pieces of 1 byte, charged 1 + 2 × 96
  let sent = 0;
  let during = await srv.mem();
  for (let round = 0; round < 20; round++) {
    const todo = attackers.filter((p, i) =>
      i % 2 === 0 ? !p.received.some((d) => alerts(d).includes(47)) : true,
    );
    if (todo.length === attackers.length / 2 && during.buffered === expected) break;
    for (const [i, p] of attackers.entries()) {
      if (!todo.includes(p)) continue;
      p.send(datagrams[i]!, srv.port);
      sent += datagrams[i]!.length;
      if (i % 16 === 15) await new Promise((r) => setImmediate(r));
    }
    const t = Date.now() + 300;
    do {
      await new Promise((r) => setTimeout(r, 50));
      during = await srv.mem();
    } while (during.buffered !== expected && Date.now() < t);
  }
  // The 64 handshakes that claimed 16 KB got an illegal_parameter alert.
  for (const [i, p] of attackers.entries())
    if (i % 2 === 0)
      assert.ok(
        p.received.some((d) => alerts(d).includes(47)),
        `alert for attacker ${i}`,
      );
  assert.equal(during.buffered, expected);
  assert.equal(during.handshakes, 64);
  // Margin: 8 MB over the baseline heap (the old reassembler allocated 32 KB per
  // claimed 16 KB message: 64 MB for this traffic).
  assert.ok(
    during.heapUsed - base.heapUsed < 8 * MB,
    `heap during attack ${(during.heapUsed / MB).toFixed(1)} MB vs baseline ${(base.heapUsed / MB).toFixed(1)} MB`,
  );
  // A legitimate client is served meanwhile (from its own address).
  const client = new CoapClient({ psk: PSK, bind: { address: '127.0.0.99' } });
  cleanups.push(() => client.close());
  const res = await withTimeout(client.get(`coaps://127.0.0.1:${srv.port}/hello`), 10_000, 'legitimate GET');
  assert.equal(res.text(), 'world');
  // The half-open handshakes expire (halfOpenTimeoutMs 5 s in the child) and give everything back.
  let now = during;
  const deadline = Date.now() + 15_000;
  while ((now.handshakes > 0 || now.buffered > 0) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    now = await srv.mem();
  }
  assert.equal(now.handshakes, 0, 'half-open handshakes expired');
  assert.equal(now.buffered, 0, 'reassembly budget given back');
  assert.ok(
    now.heapUsed - base.heapUsed < 2 * MB,
    `heap after ${(now.heapUsed / MB).toFixed(1)} MB vs baseline ${(base.heapUsed / MB).toFixed(1)} MB`,
  );
  console.log(
    `# (b) ${sent} bytes of fragments; heap MB baseline ${(base.heapUsed / MB).toFixed(1)}, during ${(during.heapUsed / MB).toFixed(1)}, after ${(now.heapUsed / MB).toFixed(1)}; RSS MB ${(base.rss / MB).toFixed(0)} / ${(during.rss / MB).toFixed(0)} / ${(now.rss / MB).toFixed(0)}`,
  );
  srv.child.send('exit');
});

test('(c) a datagram with 900 ClientHellos gets one HelloVerifyRequest', async () => {
  const { transport, port } = await coapsServer();
  const [p] = await peers('127.0.0.1', 1);
  const records = Array.from({ length: 900 }, (_, i) => clientHelloRecord(Buffer.alloc(0), random(), i));
  const datagram = Buffer.concat(records);
  assert.ok(datagram.length < 65_000, `datagram ${datagram.length} bytes`);
  p!.send(datagram, port);
  // A probe sent afterwards: its answer comes after everything the big datagram caused.
  p!.send(clientHelloRecord(Buffer.alloc(0), random(), 4242), port);
  await p!.waitFor((d) => handshakeTypes(d).includes(3) && d.readUIntBE(5, 6) === 4242, 0, 10_000);
  const hvrs = p!.received.filter((d) => handshakeTypes(d).includes(3));
  assert.equal(hvrs.length, 2, 'one HelloVerifyRequest for the 900 ClientHellos, one for the probe');
  assert.equal(transport.server.stats.extraHellos, 899);
  assert.equal(transport.server.stats.helloVerifySent, 2);
});
