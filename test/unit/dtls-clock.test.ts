/**
 * DTLS timers on a VirtualClock, socket-free: handshake retransmission
 * (doubling), the handshake deadline, the server's half-open stall and the
 * idle expiry of established sessions. Exact times, no real waiting.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { parseDatagram } from '../../src/dtls/record/record.js';
import { DtlsServer } from '../../src/dtls/server.js';
import { DtlsHandshakeTimeoutError } from '../../src/errors.js';
import { VirtualClock } from '../../src/util/clock.js';
import { memClientOptions } from '../helpers/dtls-raw.js';

interface Pair {
  clock: VirtualClock;
  server: DtlsServer;
  client: DtlsClientConnection;
  /** When each client datagram was sent (clock ms). */
  clientSends: number[];
  serverSends: number[];
  clientClosed: (Error | undefined)[];
  serverClosed: (Error | undefined)[];
  /** Delivers queued datagrams (both ways) until none is left. */
  drain(): void;
  /**
   * Datagrams toward the server / the client are dropped while true;
   * `toServerWhenHalfOpen`: toward the server once it holds a half-open handshake.
   */
  drop: { toServer: boolean; toClient: boolean; toServerWhenHalfOpen: boolean };
}

function pair(
  serverOpts: Partial<ConstructorParameters<typeof DtlsServer>[0]> = {},
  clientOpts: { retransmitInitialMs?: number; handshakeTimeoutMs?: number } = {},
): Pair {
  const clock = new VirtualClock();
  const queue: (() => void)[] = [];
  const drop = { toServer: false, toClient: false, toServerWhenHalfOpen: false };
  const p: Partial<Pair> = {
    clock,
    clientSends: [],
    serverSends: [],
    clientClosed: [],
    serverClosed: [],
    drop,
  };
  const server = new DtlsServer(
    { pskLookup: (id) => (id === 'mem' ? Buffer.from('k') : undefined), clock, ...serverOpts },
    {
      send: (d) => {
        p.serverSends!.push(clock.now());
        if (!drop.toClient) queue.push(() => parseDatagram(d).forEach((r) => void client.handleRecord(r)));
      },
      established: () => {},
      data: () => {},
      closed: (_c, _a, _p, e) => p.serverClosed!.push(e),
    },
  );
  const client: DtlsClientConnection = new DtlsClientConnection(
    memClientOptions({
      retransmitInitialMs: clientOpts.retransmitInitialMs ?? 1000,
      handshakeTimeoutMs: clientOpts.handshakeTimeoutMs ?? 30_000,
      clock,
    }),
    {
      sendDatagram: (d) => {
        p.clientSends!.push(clock.now());
        if (drop.toServer || (drop.toServerWhenHalfOpen && server.handshakeCount > 0)) return;
        queue.push(() => server.handleDatagram(d, '2001:db8::1', 1234));
      },
      established: () => {},
      data: () => {},
      closed: (e) => p.clientClosed!.push(e),
    },
  );
  p.server = server;
  p.client = client;
  p.drain = () => {
    for (let i = 0; i < 1000 && queue.length > 0; i++) queue.shift()!();
  };
  return p as Pair;
}

test('DTLS client: the ClientHello is retransmitted after 1, 2, 4, 8 s (RFC 6347 §4.2.4.1), then the handshake deadline fails it', () => {
  const { clock, client, clientSends, clientClosed, drop, server } = pair({}, { handshakeTimeoutMs: 20_000 });
  drop.toServer = true;
  const t0 = clock.now();
  client.start();
  clock.advanceSync(999);
  assert.deepEqual(
    clientSends.map((t) => t - t0),
    [0],
    'nothing more before the first timeout',
  );
  clock.advanceSync(1);
  clock.advanceSync(2000 + 4000 + 8000);
  assert.deepEqual(
    clientSends.map((t) => t - t0),
    [0, 1000, 3000, 7000, 15000],
    'doubling timeouts',
  );
  assert.equal(client.state, 'handshaking');
  // The next doubled timeout (16 s) would pass the 20 s deadline: the timer is cut to it.
  clock.advanceSync(4999);
  assert.equal(client.state, 'handshaking');
  clock.advanceSync(1);
  assert.equal(client.state, 'closed');
  assert.ok(clientClosed[0] instanceof DtlsHandshakeTimeoutError, String(clientClosed[0]));
  assert.equal(clock.now() - t0, 20_000);
  client.destroy();
  server.close();
});

test('DTLS server: a handshake that makes no progress is dropped exactly halfOpenTimeoutMs after its last flight', () => {
  const { clock, client, server, drain, drop, serverSends, serverClosed } = pair({
    halfOpenTimeoutMs: 3000,
    retransmitInitialMs: 1000,
  });
  drop.toServerWhenHalfOpen = true; // the client's Finished flight never arrives
  client.start();
  drain();
  assert.equal(server.handshakeCount, 1, 'a half-open handshake (cookie verified, hello flight sent)');
  const lastFlight = serverSends.at(-1)!;
  clock.advanceSync(lastFlight + 2999 - clock.now());
  assert.equal(server.handshakeCount, 1, 'still there just before halfOpenTimeoutMs');
  assert.ok(serverSends.length >= 3, 'the server retransmitted its flight meanwhile (1 s, 2 s)');
  clock.advanceSync(1);
  assert.equal(server.handshakeCount, 0, 'dropped at halfOpenTimeoutMs');
  assert.equal(server.sessionCount, 0);
  assert.ok(serverClosed[0] instanceof DtlsHandshakeTimeoutError, String(serverClosed[0]));
  client.destroy();
  server.close();
});

test('DTLS server: an established session idle for idleTimeoutMs is closed by the sweep; an active one stays', () => {
  const { clock, client, server, drain } = pair({ idleTimeoutMs: 10_000 });
  client.start();
  for (let i = 0; i < 10 && client.state !== 'established'; i++) drain();
  drain();
  assert.equal(client.state, 'established');
  assert.equal(server.sessionCount, 1);
  // Activity at 8 s keeps it (idle is measured from the last authenticated record).
  clock.advanceSync(8000);
  client.sendApplicationData(Buffer.from('still here'));
  drain();
  clock.advanceSync(9000);
  assert.equal(server.sessionCount, 1, 'active 9 s ago: kept');
  clock.advanceSync(10_000);
  assert.equal(server.sessionCount, 0, 'idle for more than idleTimeoutMs: closed');
  assert.equal(server.stats.evictedIdle, 1);
  client.destroy();
  server.close();
});
