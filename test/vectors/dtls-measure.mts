/**
 * Quick measurements of the DTLS server (not a test):
 *  1. full PSK handshakes per second over loopback UDP, including the
 *     HelloVerifyRequest cookie exchange, 1 and 16 in parallel. The server runs
 *     in a child process (so its CPU use per handshake is its own); each
 *     handshake uses a fresh client transport (new socket), like bench/.
 *  2. server CPU per handshake without sockets (in-memory wiring; client work
 *     excluded): the ceiling of handshakes/s per core.
 *  3. heap (+ external Buffer memory) per idle established server session
 *     (in-memory wiring, 2,000 sessions, GC'd).
 *  4. per-record cost of an established session (server decrypt + encrypt of a
 *     small CoAP-sized record).
 *  5. the floor: only the node:crypto calls a PSK server makes per handshake
 *     (2 cookie HMACs, server random, 3 transcript hashes, 12 PRF HMACs, AEAD
 *     for the two Finished messages and the client's close_notify) and per
 *     request (AEAD decrypt + encrypt).
 * Run: node --expose-gc --import tsx test/vectors/dtls-measure.mts [suiteHex] [seconds]
 */
import { fork } from 'node:child_process';
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { parseDatagram } from '../../src/dtls/record/record.js';
import { DtlsServer, type DtlsServerConnection } from '../../src/dtls/server.js';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';

const suite = Number.parseInt(process.argv[2] ?? 'c0a8', 16);
const seconds = Number(process.argv[3] ?? 3);
const psk = { identity: 'bench', key: 'bench-key' };
const hex = `0x${suite.toString(16)}`;
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

if (process.argv[4] === 'server') {
  // Child: the loopback server. Reports its CPU time on request.
  const server = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    psk,
    cipherSuites: [suite],
    maxSessions: 1_000_000,
    maxHandshakes: 10_000,
    idleTimeoutMs: 5_000,
    handshakeRate: false, // measures capacity: every handshake comes from one address
  });
  server.attach({ message: () => {} });
  const send = process.send!.bind(process);
  process.on('message', (m: string) => {
    if (m === 'cpu') send({ cpu: process.cpuUsage(), hvr: server.server.stats.helloVerifySent });
    if (m === 'exit') void server.close().then(() => process.exit(0));
  });
  send({ port: server.localAddress().port });
} else {
  await loopback();
  inMemoryCpu();
  await idleHeap();
  recordCost();
  cryptoFloor();
}

function cryptoFloor(): void {
  const key = randomBytes(32);
  const k16 = randomBytes(16);
  const nonce = randomBytes(12);
  const body = randomBytes(120);
  const aad = randomBytes(13);
  const ccm = (decrypt: boolean, len: number) => {
    const c = decrypt
      ? createDecipheriv('aes-128-ccm', k16, nonce, { authTagLength: 8 })
      : createCipheriv('aes-128-ccm', k16, nonce, { authTagLength: 8 });
    c.setAAD(aad, { plaintextLength: len });
    c.update(body.subarray(0, len));
    if (!decrypt) {
      c.final();
      (c as ReturnType<typeof createCipheriv> & { getAuthTag(): Buffer }).getAuthTag();
    }
  };
  const handshake = () => {
    for (let i = 0; i < 2; i++) createHmac('sha256', key).update(body).digest(); // cookie: HVR + check
    randomBytes(32); // server random
    for (let i = 0; i < 3; i++) {
      const h = createHash('sha256');
      for (let j = 0; j < 6; j++) h.update(body.subarray(0, 40));
      h.digest(); // session hash, client Finished, server Finished
    }
    for (let i = 0; i < 12; i++) createHmac('sha256', key).update(body.subarray(0, 77)).digest(); // PRF
    ccm(true, 24); // client Finished
    ccm(false, 24); // server Finished
    ccm(true, 2); // close_notify
  };
  const request = () => {
    ccm(true, 24);
    ccm(false, 30);
  };
  for (const [name, fn] of [
    ['handshake', handshake],
    ['request', request],
  ] as const) {
    const N = 5000;
    for (let i = 0; i < 500; i++) fn();
    const t = process.cpuUsage();
    for (let i = 0; i < N; i++) fn();
    const us = (cpuMs(process.cpuUsage(t)) * 1000) / N;
    console.log(
      `node:crypto calls alone per ${name}: ${us.toFixed(1)} us (${(1e6 / us).toFixed(0)}/s per core)`,
    );
  }
}

async function loopback(): Promise<void> {
  const child = fork(new URL(import.meta.url).pathname, [process.argv[2] ?? 'c0a8', '0', 'server'], {
    execArgv: ['--import', 'tsx'],
  });
  const ask = <T,>(m: string) =>
    new Promise<T>((resolve) => {
      child.once('message', (r) => resolve(r as T));
      child.send(m);
    });
  // Never hang (a lost IPC message, a stuck child): give up after a generous time.
  const watchdog = setTimeout(
    () => {
      console.error('dtls-measure: loopback phase timed out');
      child.kill('SIGKILL');
      process.exit(1);
    },
    (4 * seconds + 60) * 1000,
  );
  const { port } = await new Promise<{ port: number }>((r) => child.once('message', (m) => r(m as never)));
  for (const parallel of [1, 16]) {
    const cpu0 = (await ask<{ cpu: NodeJS.CpuUsage }>('cpu')).cpu;
    const own0 = process.cpuUsage();
    const t0 = performance.now();
    let n = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (performance.now() - t0 < seconds * 1000) {
          // a fresh transport (new source port) per handshake
          const c = await DtlsClientTransport.create({
            psk,
            cipherSuites: [suite],
            handshakeTimeoutMs: 10_000,
          });
          c.attach({ message: () => {} });
          await c.connect(makePeer('127.0.0.1', port));
          n++;
          await c.close();
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const cpu1 = (await ask<{ cpu: NodeJS.CpuUsage }>('cpu')).cpu;
    const serverMs = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / 1000;
    const clientMs = cpuMs(process.cpuUsage(own0));
    console.log(
      `suite ${hex}: loopback, ${parallel} parallel: ${(n / secs).toFixed(0)} full handshakes/s (${n} in ${secs.toFixed(1)} s); ` +
        `server CPU ${((1000 * serverMs) / n).toFixed(0)} us/handshake (${((100 * serverMs) / 1000 / secs).toFixed(0)}% of a core), ` +
        `client CPU ${((1000 * clientMs) / n).toFixed(0)} us/handshake (${((100 * clientMs) / 1000 / secs).toFixed(0)}%)`,
    );
  }
  child.send('exit');
  await new Promise((r) => child.once('exit', r));
  clearTimeout(watchdog);
}

/** In-memory client <-> server wiring; returns a function running one full handshake. */
function inMemory(
  srv: { handleDatagram(d: Buffer, a: string, p: number): void },
  serverCpu?: { us: number },
) {
  const queue: (() => void)[] = [];
  const clients = new Map<number, DtlsClientConnection>();
  const deliver = (port: number, d: Buffer) => {
    const c = clients.get(port);
    if (c) for (const r of parseDatagram(d)) c.handleRecord(r);
  };
  const toServer = (d: Buffer, port: number) => {
    if (serverCpu === undefined) return srv.handleDatagram(d, '10.0.0.1', port);
    const t = process.cpuUsage();
    srv.handleDatagram(d, '10.0.0.1', port);
    serverCpu.us += cpuMs(process.cpuUsage(t)) * 1000;
  };
  const handshake = (clientPort: number, keep = false): DtlsClientConnection => {
    let done = false;
    const conn = new DtlsClientConnection(
      {
        mtu: 1280,
        ipOverhead: 28,
        retransmitInitialMs: 1000,
        retransmitMaxMs: 60000,
        handshakeTimeoutMs: 30000,
        peerLabel: 'x',
        identity: Buffer.from(psk.identity),
        psk: Buffer.from(psk.key),
        cipherSuites: [suite],
      },
      {
        sendDatagram: (d) => queue.push(() => toServer(d, clientPort)),
        established: () => {
          done = true;
        },
        data: () => {},
        closed: () => {},
      },
    );
    clients.set(clientPort, conn);
    conn.start();
    while (queue.length > 0) queue.shift()!();
    if (!done) throw new Error('in-memory handshake did not complete');
    if (!keep) {
      clients.delete(clientPort);
      conn.destroy();
    }
    return conn;
  };
  return { handshake, queue, deliver };
}

function newServer(
  send: (d: Buffer, a: string, p: number) => void,
  data = (_d: Buffer, _c: DtlsServerConnection) => {},
) {
  return new DtlsServer(
    {
      pskLookup: () => Buffer.from(psk.key),
      cipherSuites: [suite],
      maxSessions: 1e6,
      maxHandshakes: 1e6,
      handshakeRate: false,
    },
    { send, established: () => {}, data, closed: () => {} },
  );
}

function inMemoryCpu(): void {
  let wire: ReturnType<typeof inMemory>;
  const srv = newServer((d, _a, p) => wire.queue.push(() => wire.deliver(p, d)));
  const cpu = { us: 0 };
  wire = inMemory(srv, cpu);
  for (let i = 0; i < 300; i++) wire.handshake(i);
  cpu.us = 0;
  const N = 3000;
  for (let i = 0; i < N; i++) wire.handshake(1000 + i);
  console.log(
    `suite ${hex}: in-memory server CPU ${(cpu.us / N).toFixed(0)} us/handshake (${((1e6 * N) / cpu.us).toFixed(0)} handshakes/s per core, sockets excluded)`,
  );
  srv.close();
}

async function idleHeap(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    console.log('run with --expose-gc for the heap figure');
    return;
  }
  let wire: ReturnType<typeof inMemory>;
  const srv = newServer((d, _a, p) => wire.queue.push(() => wire.deliver(p, d)));
  wire = inMemory(srv);
  for (let i = 0; i < 50; i++) wire.handshake(60000 + i); // warm-up (code, pools)
  await new Promise((r) => setTimeout(r, 50));
  gc();
  gc();
  const before = process.memoryUsage();
  const N = 2000;
  for (let i = 0; i < N; i++) wire.handshake(10000 + i);
  await new Promise((r) => setTimeout(r, 50));
  gc();
  gc();
  const after = process.memoryUsage();
  const heap = (after.heapUsed - before.heapUsed) / N;
  const ext = (after.external - before.external) / N;
  console.log(
    `suite ${hex}: ${N} idle server sessions: ${heap.toFixed(0)} heap bytes + ${ext.toFixed(0)} external bytes per session (${(heap + ext).toFixed(0)} total)`,
  );
  srv.close();
}

function recordCost(): void {
  let wire: ReturnType<typeof inMemory>;
  let conn: DtlsServerConnection | undefined;
  const srv = newServer(
    (d, _a, p) => wire.queue.push(() => wire.deliver(p, d)),
    (d, c) => {
      conn = c;
      c.sendApplicationData(d); // echo
    },
  );
  wire = inMemory(srv);
  const client = wire.handshake(7, true);
  const msg = Buffer.alloc(24, 1); // a small CoAP request
  const N = 20000;
  let us = 0;
  for (let round = 0; round < 2; round++) {
    us = 0;
    for (let i = 0; i < N; i++) {
      client.sendApplicationData(msg);
      const t = process.cpuUsage();
      while (wire.queue.length > 0) wire.queue.shift()!();
      us += cpuMs(process.cpuUsage(t)) * 1000;
    }
  }
  void conn;
  console.log(
    `suite ${hex}: established record round trip (server decrypt + encrypt, client decrypt): ${(us / N).toFixed(1)} us`,
  );
  client.destroy();
  srv.close();
}
