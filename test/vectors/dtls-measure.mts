/**
 * Quick measurements (not a test):
 *  1. full PSK handshakes per second, coapkit client ↔ coapkit server over
 *     loopback UDP, including the HelloVerifyRequest cookie exchange;
 *  2. heap bytes per idle established server session (in-memory wiring, GC'd).
 * Run: node --expose-gc --import tsx test/vectors/dtls-measure.mts [suiteHex]
 */
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { parseDatagram } from '../../src/dtls/record/record.js';
import { DtlsServer } from '../../src/dtls/server.js';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';

const suite = Number.parseInt(process.argv[2] ?? 'c0a8', 16);
const psk = { identity: 'bench', key: 'bench-key' };

// 1. handshakes/s over loopback (sequential and 16 in parallel)
const server = await DtlsServerTransport.create({
  host: '127.0.0.1',
  port: 0,
  psk,
  cipherSuites: [suite],
  maxSessions: 100_000,
});
server.attach({ message: () => {} });
const port = server.localAddress().port;
for (const parallel of [1, 16]) {
  const clients = await Promise.all(
    Array.from({ length: parallel }, () => DtlsClientTransport.create({ psk, cipherSuites: [suite] })),
  );
  for (const c of clients) c.attach({ message: () => {} });
  const durationMs = 3000;
  const t0 = performance.now();
  let n = 0;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() - t0 < durationMs) {
        const peer = makePeer('127.0.0.1', port);
        await c.connect(peer);
        n++;
        await c.close().catch(() => {});
        // a fresh transport (new source port) per handshake
        const idx = clients.indexOf(c);
        c = await DtlsClientTransport.create({ psk, cipherSuites: [suite] });
        c.attach({ message: () => {} });
        clients[idx] = c;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `suite 0x${suite.toString(16)}: ${parallel} parallel: ${(n / secs).toFixed(0)} full handshakes/s (${n} in ${secs.toFixed(1)} s)`,
  );
  for (const c of clients) await c.close();
}
await server.close();

// 2. heap per idle server session
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.log('run with --expose-gc for the heap figure');
  process.exit(0);
}
const N = 2000;
const srv = new DtlsServer(
  {
    pskLookup: () => Buffer.from(psk.key),
    cipherSuites: [suite],
    maxSessions: N + 10,
    maxHandshakes: N + 10,
  },
  {
    send: (d, _a, port) => queue.push(() => clients.get(port)?.deliver(d)),
    established: () => {},
    data: () => {},
    closed: () => {},
  },
);
const queue: (() => void)[] = [];
const clients = new Map<number, { deliver: (d: Buffer) => void }>();
async function drain() {
  while (queue.length > 0) queue.shift()!();
}
gc();
const before = process.memoryUsage().heapUsed;
for (let i = 0; i < N; i++) {
  const clientPort = 10000 + i;
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
      sendDatagram: (d) => queue.push(() => srv.handleDatagram(d, '10.0.0.1', clientPort)),
      established: () => {
        done = true;
      },
      data: () => {},
      closed: () => {},
    },
  );
  clients.set(clientPort, {
    deliver: (d) => {
      for (const r of parseDatagram(d)) conn.handleRecord(r);
    },
  });
  conn.start();
  await drain();
  if (!done) throw new Error('in-memory handshake did not complete');
  clients.delete(clientPort);
  conn.destroy();
}
await new Promise((r) => setTimeout(r, 50));
gc();
const after = process.memoryUsage().heapUsed;
console.log(
  `suite 0x${suite.toString(16)}: ${srv.sessionCount} idle server sessions: ${((after - before) / N).toFixed(0)} heap bytes per session`,
);
srv.close();
