/**
 * DTLS handshake rate limit under attack, loopback only, bounded loops: one
 * address that answers cookies runs full handshakes back to back (PSK, then
 * mutual X.509), several at a time, while a legitimate coaps client on another
 * address (127.0.0.2) completes its handshake and a request. The attacker's
 * completed handshakes stay within what its bucket allows over the measured
 * run (burst + rate x elapsed, divided by the handshake's weight): the bound
 * only grows with elapsed time, so a slow machine cannot break it. Exact
 * bucket arithmetic is in test/unit/dtls-handshake-rate.test.ts.
 */
import * as assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { after, test } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { HANDSHAKE_WEIGHTS, type HandshakeRateOptions } from '../../src/dtls/handshake-rate.js';
import { CoapServer } from '../../src/server/server.js';
import {
  type DtlsClientOptions,
  DtlsClientTransport,
  DtlsServerTransport,
} from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';
import { makePki } from '../helpers/pki.js';
import { sleep, until, withTimeout } from '../helpers/timing.js';
import { LOOPBACK_PORTS, startServe } from '../integration/cli-helpers.js';

const pki = makePki();
const PSK = { identity: 'dev', key: 'k3y' };
const cleanups: (() => Promise<unknown> | unknown)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(pki.dir, { recursive: true, force: true });
});

/** Small enough that any machine's attacker goes over it within the run. */
const RATE: HandshakeRateOptions = { perAddress: 3, burst: 12 };

async function coapsServer() {
  const server = new CoapServer();
  server.get('/hello', () => 'world');
  const t = await DtlsServerTransport.create({
    host: '127.0.0.1',
    port: 0,
    psk: PSK,
    cert: pki.serverCert,
    key: pki.serverKey,
    ca: pki.ca,
    handshakeRate: RATE,
  });
  await server.listen(t);
  cleanups.push(() => server.close());
  return { transport: t, port: t.localAddress().port };
}

/**
 * `workers` loops, each doing full handshakes from 127.0.0.1 (a new client
 * socket each) until `stop()` or `rounds` attempts; returns the completed count.
 */
function attack(port: number, creds: Partial<DtlsClientOptions>, workers: number, rounds: number) {
  let stopped = false;
  let completed = 0;
  let attempts = 0;
  const loop = async () => {
    for (let i = 0; i < rounds && !stopped; i++) {
      attempts++;
      const c = await DtlsClientTransport.create({
        ...creds,
        bind: { address: '127.0.0.1' },
        retransmitInitialMs: 100,
        handshakeTimeoutMs: 600,
        maxConnectedSockets: 0,
      });
      c.attach({ message: () => {}, peerError: () => {} });
      try {
        await c.connect(makePeer('127.0.0.1', port));
        completed++;
      } catch {
        // refused (rate-limited): the client gave up after its retransmissions
      } finally {
        await c.close();
      }
    }
  };
  const done = Promise.all(Array.from({ length: workers }, loop));
  return {
    stop: async () => {
      stopped = true;
      await done;
      return { completed, attempts };
    },
  };
}

for (const [name, creds, weight] of [
  ['PSK', { psk: PSK }, HANDSHAKE_WEIGHTS.psk],
  [
    'mutual X.509',
    { cert: pki.clientCert, key: pki.clientKey, ca: pki.ca },
    HANDSHAKE_WEIGHTS.certificateMutual,
  ],
] as const) {
  test(`one address running full ${name} handshakes in a loop gets its share only; a client elsewhere is served`, async () => {
    const t0 = performance.now();
    const { transport, port } = await coapsServer();
    const a = attack(port, creds, 6, 400);
    let result: { completed: number; attempts: number };
    try {
      // Let the attacker use its burst up and run into the limit first.
      await until(() => transport.server.stats.rateLimited > 0, 'the attacker went over its rate', 20_000);
      assert.ok(transport.server.stats.rateLimited > 0, 'the attacker went over its rate');
      const client = new CoapClient({ psk: PSK, bind: { address: '127.0.0.2' } });
      cleanups.push(() => client.close());
      const res = await withTimeout(client.get(`coaps://127.0.0.1:${port}/hello`), 10_000, 'legitimate GET');
      assert.equal(res.text(), 'world');
      // Keep attacking a little longer (bounded by the rounds), then stop.
      await sleep(1000);
    } finally {
      result = await a.stop();
    }
    const elapsedS = (performance.now() - t0) / 1000;
    const allowance = Math.floor((RATE.burst! + RATE.perAddress! * elapsedS) / weight);
    console.log(
      `# ${name}: ${result.completed} of ${result.attempts} attacker handshakes completed in ${elapsedS.toFixed(1)} s (allowance ${allowance}); ${transport.server.stats.rateLimited} ClientHellos dropped`,
    );
    assert.ok(result.completed >= 1, 'the attacker got its burst');
    assert.ok(
      result.completed <= allowance,
      `${result.completed} handshakes completed, the bucket allows ${allowance} in ${elapsedS.toFixed(1)} s`,
    );
    assert.ok(
      transport.server.handshakeRate!.trackedAddresses <= 2,
      'one bucket per address that handshook (attacker, client)',
    );
  });
}

test('coapkit serve --handshake-rate 1: the seventh handshake at once from one address waits for a token', async () => {
  const srv = await startServe([
    ...LOOPBACK_PORTS,
    '-v',
    '--identity',
    'dev',
    '--psk',
    'rate-secret',
    '--handshake-rate',
    '1',
  ]);
  const clients = Array.from(
    { length: 9 },
    () => new CoapClient({ psk: { identity: 'dev', key: 'rate-secret' } }),
  );
  try {
    // Nine clients (nine handshakes) from 127.0.0.1 at once: a burst of 6, then one a second.
    const url = `coaps://127.0.0.1:${srv.securePort}/time`;
    const answers = await Promise.all(clients.map((c) => c.get(url, { timeout: 60_000 })));
    assert.ok(answers.every((r) => r.code === 0x45));
    assert.match(srv.output(), /over its handshake rate/);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await srv.stop();
  }
});
