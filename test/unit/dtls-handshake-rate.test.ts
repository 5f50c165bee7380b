/**
 * The DTLS server's handshake rate limit on a VirtualClock, socket-free: the
 * token buckets (exact refill, weights, per address and /64, global), the
 * bound on tracked addresses and their expiry, and the server charging only
 * cookie-verified ClientHellos by what the handshake costs, dropping the
 * others until their client's retransmission finds tokens again.
 */
import * as assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { handshakeRateOptions, logHandshakeFailures, parseServeArgs } from '../../src/cli/commands/serve.js';
import { DtlsClientConnection } from '../../src/dtls/client.js';
import { buildCertOptions, type CertOptions } from '../../src/dtls/crypto/certs.js';
import type { HandshakeErrorEvent } from '../../src/dtls/diag.js';
import {
  HANDSHAKE_RATE_DEFAULTS,
  HANDSHAKE_WEIGHTS,
  HandshakeRateLimiter,
} from '../../src/dtls/handshake-rate.js';
import { parseDatagram } from '../../src/dtls/record/record.js';
import { DTLS_SERVER_DEFAULTS, DtlsServer, type DtlsServerOptions } from '../../src/dtls/server.js';
import { UsageError } from '../../src/errors.js';
import { channels, InvalidArgumentError } from '../../src/index.js';
import { VirtualClock } from '../../src/util/clock.js';
import { clientHelloRecord, memClientOptions } from '../helpers/dtls-raw.js';
import { makePki } from '../helpers/pki.js';

const pki = makePki();
after(() => rmSync(pki.dir, { recursive: true, force: true }));

test('bucket: a burst, then exactly perAddress units a second', () => {
  const clock = new VirtualClock();
  const rl = new HandshakeRateLimiter({ perAddress: 10, burst: 60, global: 10_000 }, clock);
  for (let i = 0; i < 60; i++) assert.equal(rl.admit('192.0.2.1', 1), undefined, `handshake ${i}`);
  assert.equal(rl.admit('192.0.2.1', 1), 'address');
  assert.equal(rl.tokensOf('192.0.2.1'), 0);
  clock.advanceSync(99);
  assert.equal(rl.admit('192.0.2.1', 1), 'address', '0.99 tokens after 99 ms');
  clock.advanceSync(1);
  assert.equal(rl.admit('192.0.2.1', 1), undefined, 'one token after 100 ms');
  assert.equal(rl.admit('192.0.2.1', 1), 'address');
  // Another address has its own bucket.
  assert.equal(rl.admit('192.0.2.2', 1), undefined);
  // Over 10 s, 100 more units and no more.
  let admitted = 0;
  for (let ms = 0; ms < 10_000; ms += 10) {
    clock.advanceSync(10);
    while (rl.admit('192.0.2.1', 1) === undefined) admitted++;
  }
  assert.equal(admitted, 100);
  assert.equal(rl.stats.limitedAddress, 3 + 1000);
});

test('bucket: weights, a refused handshake charges nothing', () => {
  const clock = new VirtualClock();
  const rl = new HandshakeRateLimiter({ perAddress: 10, burst: 60 }, clock);
  const heavy = HANDSHAKE_WEIGHTS.certificateMutual;
  let n = 0;
  while (rl.admit('192.0.2.1', heavy) === undefined) n++;
  assert.equal(n, Math.floor(60 / heavy));
  const left = rl.tokensOf('192.0.2.1');
  assert.equal(left, 60 - n * heavy);
  // A lighter handshake fits in what is left only if it is small enough; refusals take nothing.
  assert.equal(rl.admit('192.0.2.1', heavy), 'address');
  assert.equal(rl.tokensOf('192.0.2.1'), left);
  // The global bucket was charged with the admitted ones only.
  assert.equal(rl.globalTokens, 1500 - n * heavy);
});

test('bucket: IPv6 addresses share by /64', () => {
  const clock = new VirtualClock();
  const rl = new HandshakeRateLimiter({ perAddress: 1, burst: 6 }, clock);
  for (let i = 1; i <= 6; i++) assert.equal(rl.admit(`2001:db8::${i}`, 1), undefined);
  assert.equal(rl.admit('2001:db8::abcd:1', 1), 'address', 'same /64');
  assert.equal(rl.admit('2001:db8:0:1::1', 1), undefined, 'another /64');
  assert.equal(rl.trackedAddresses, 2);
});

test('bucket: the global bucket bounds all addresses together', () => {
  const clock = new VirtualClock();
  const rl = new HandshakeRateLimiter({ perAddress: 10, burst: 60, global: 100 }, clock);
  let ok = 0;
  for (let a = 1; a <= 20; a++)
    for (let i = 0; i < 10; i++) if (rl.admit(`10.0.0.${a}`, 1) === undefined) ok++;
  assert.equal(ok, 100, 'one second of the global rate');
  assert.equal(rl.stats.limitedGlobal, 100);
  clock.advanceSync(50);
  assert.equal(rl.admit('10.0.0.99', 5), undefined, '5 units back after 50 ms');
  assert.equal(rl.admit('10.0.0.99', 1), 'global');
  // globalBurst smaller than one second's worth.
  const small = new HandshakeRateLimiter({ global: 100, globalBurst: 10 }, clock);
  let n = 0;
  for (let a = 1; a <= 20; a++) if (small.admit(`10.0.1.${a}`, 1) === undefined) n++;
  assert.equal(n, 10);
});

test('state: bounded by maxAddresses (least recently charged out), buckets expire once refilled', () => {
  const clock = new VirtualClock();
  const rl = new HandshakeRateLimiter({ perAddress: 10, burst: 60, maxAddresses: 3 }, clock);
  rl.admit('10.0.0.1', 1);
  rl.admit('10.0.0.2', 1);
  rl.admit('10.0.0.3', 1);
  rl.admit('10.0.0.1', 1); // .1 is now the most recently charged
  rl.admit('10.0.0.4', 1);
  assert.equal(rl.trackedAddresses, 3);
  assert.equal(rl.tokensOf('10.0.0.2'), 60, '.2 was dropped (least recently charged)');
  assert.equal(rl.tokensOf('10.0.0.1'), 58);
  assert.equal(rl.stats.evictedEarly, 1, 'it had not refilled yet');
  // A refilled bucket goes without being counted.
  clock.advanceSync(1000);
  rl.admit('10.0.0.5', 59);
  assert.equal(rl.stats.evictedEarly, 1, '.3 had refilled');
  assert.equal(rl.tokensOf('10.0.0.3'), 60);
  // Expiry: the sweep drops every bucket that has refilled (burst / perAddress = 6 s).
  assert.equal(rl.refillMs, 6000);
  clock.advanceSync(5899);
  rl.sweep();
  assert.equal(rl.trackedAddresses, 1, 'only .5 (59 units, 5.899 s ago) is still below full');
  clock.advanceSync(101);
  rl.sweep();
  assert.equal(rl.trackedAddresses, 0);
});

test('options are checked', () => {
  const clock = new VirtualClock();
  assert.throws(() => new HandshakeRateLimiter({ perAddress: 0 }, clock), InvalidArgumentError);
  assert.throws(() => new HandshakeRateLimiter({ global: Number.NaN }, clock), InvalidArgumentError);
  assert.throws(() => new HandshakeRateLimiter({ burst: 3 }, clock), /at least 4/);
  assert.throws(() => new HandshakeRateLimiter({ maxAddresses: 1.5 }, clock), InvalidArgumentError);
});

// ------------------------------------------------------------------ the server

const PSK = Buffer.from('k3y');

interface Net {
  clock: VirtualClock;
  server: DtlsServer;
  /** A client at address:port that starts its handshake now; `up()` says whether it finished. */
  connect(
    address: string,
    port: number,
    o?: { suites?: number[]; certs?: CertOptions | undefined },
  ): { up: () => boolean; client: DtlsClientConnection };
  drain(): void;
  events: HandshakeErrorEvent[];
}

function net(serverOpts: Partial<DtlsServerOptions>): Net {
  const clock = new VirtualClock();
  const queue: (() => void)[] = [];
  const clients = new Map<string, DtlsClientConnection>();
  const events: HandshakeErrorEvent[] = [];
  const onError = (e: HandshakeErrorEvent) => events.push(e);
  channels.dtlsHandshakeError.subscribe(onError);
  after(() => channels.dtlsHandshakeError.unsubscribe(onError));
  const server = new DtlsServer(
    { pskLookup: (id) => (id === 'dev' ? PSK : undefined), clock, ...serverOpts },
    {
      send: (d, address, port) => {
        const c = clients.get(`${address}%${port}`);
        if (c !== undefined) queue.push(() => parseDatagram(d).forEach((r) => void c.handleRecord(r)));
      },
      established: () => {},
      data: () => {},
      closed: () => {},
    },
  );
  const drain = () => {
    for (let i = 0; i < 100_000 && queue.length > 0; i++) queue.shift()!();
  };
  return {
    clock,
    server,
    events,
    drain,
    connect(address, port, o = {}) {
      let up = false;
      const client = new DtlsClientConnection(
        memClientOptions({
          handshakeTimeoutMs: 120_000,
          identity: o.certs ? undefined : Buffer.from('dev'),
          psk: o.certs ? undefined : PSK,
          certs: o.certs,
          cipherSuites: o.suites ?? [0xc0a8],
          clock,
        }),
        {
          sendDatagram: (d) => queue.push(() => server.handleDatagram(d, address, port)),
          established: () => {
            up = true;
          },
          data: () => {},
          closed: () => {},
        },
      );
      clients.set(`${address}%${port}`, client);
      client.start();
      drain();
      return { up: () => up, client };
    },
  };
}

test('server: cookie-verified handshakes are charged by their weight', () => {
  const certs = buildCertOptions({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca }, 'server');
  const n = net({ certs });
  const rl = n.server.handshakeRate!;
  const kinds: [string, { suites: number[]; certs?: CertOptions | undefined }, number][] = [
    ['10.0.0.1', { suites: [0xc0a8] }, HANDSHAKE_WEIGHTS.psk],
    ['10.0.0.2', { suites: [0xccac] }, HANDSHAKE_WEIGHTS.ecdhePsk],
    [
      '10.0.0.4',
      {
        suites: [0xc0ae],
        certs: buildCertOptions({ cert: pki.clientCert, key: pki.clientKey, ca: pki.ca }, 'client'),
      },
      HANDSHAKE_WEIGHTS.certificateMutual,
    ],
  ];
  for (const [address, o, weight] of kinds) {
    const c = n.connect(address, 5000, o);
    assert.ok(c.up(), `${address} handshake`);
    assert.equal(rl.tokensOf(address), 60 - weight, `${address} charged ${weight}`);
    c.client.destroy();
  }
  const noClientAuth = net({
    certs: buildCertOptions({ cert: pki.serverCert, key: pki.serverKey, verifyPeer: false }, 'server'),
  });
  const c = noClientAuth.connect('10.0.0.5', 5000, {
    suites: [0xc0ae],
    certs: buildCertOptions({ ca: pki.ca }, 'client'),
  });
  assert.ok(c.up());
  assert.equal(noClientAuth.server.handshakeRate!.tokensOf('10.0.0.5'), 60 - HANDSHAKE_WEIGHTS.certificate);
  n.server.close();
  noClientAuth.server.close();
});

test('server: over the limit the verified ClientHello is dropped, reported, and the retransmission gets in', () => {
  const n = net({ handshakeRate: { perAddress: 1, burst: 6, global: 1000 } });
  const rl = n.server.handshakeRate!;
  const done: (() => boolean)[] = [];
  for (let p = 1; p <= 8; p++) done.push(n.connect('10.0.0.1', p).up);
  assert.deepEqual(
    done.map((u) => u()),
    [true, true, true, true, true, true, false, false],
  );
  assert.equal(n.server.stats.rateLimited, 2);
  assert.equal(n.server.handshakeCount, 0, 'nothing was created for the dropped ones');
  const refused = n.events.filter((e) => e.reason === 'rate-limited');
  assert.equal(refused.length, 2);
  assert.match(refused[0]!.error.message, /10\.0\.0\.1 is over its handshake rate/);
  // Another address is served meanwhile.
  assert.ok(n.connect('10.0.0.2', 1).up());
  // The clients retransmit their ClientHello after 1 s: one token is back, one gets in.
  n.clock.advanceSync(1000);
  n.drain();
  assert.deepEqual(
    done.map((u) => u()),
    [true, true, true, true, true, true, true, false],
  );
  // The other retransmits at 3 s (2 s backoff): by then a token is back again.
  n.clock.advanceSync(2000);
  n.drain();
  assert.ok(done[7]!());
  assert.equal(rl.trackedAddresses, 2);
  n.server.close();
});

test('server: ClientHellos without a valid cookie create no bucket; the sweep expires buckets', () => {
  const n = net({ handshakeRate: { perAddress: 1, burst: 6 }, idleTimeoutMs: 2000 });
  const rl = n.server.handshakeRate!;
  // The cookie exchange alone (the server's HelloVerifyRequest is never answered: no client at that key).
  n.server.handleDatagram(clientHelloRecord(Buffer.alloc(0), Buffer.alloc(32, 7)), '10.9.9.9', 1);
  assert.equal(n.server.stats.helloVerifySent, 1);
  assert.equal(rl.trackedAddresses, 0);
  assert.ok(n.connect('10.0.0.1', 1).up());
  assert.equal(rl.trackedAddresses, 1);
  // The server's sweep (every idleTimeoutMs / 2 = 1 s) drops the bucket once it has refilled (1 unit at 1/s).
  n.clock.advanceSync(2000);
  assert.equal(rl.trackedAddresses, 0);
  n.server.close();
});

test('server: handshakeRate false: no limit', () => {
  const n = net({ handshakeRate: false });
  assert.equal(n.server.handshakeRate, undefined);
  for (let p = 1; p <= 100; p++) assert.ok(n.connect('10.0.0.1', p).up(), `handshake ${p}`);
  assert.equal(n.server.stats.rateLimited, 0);
  n.server.close();
});

test('serve -v: a dropped ClientHello is logged through the rate-limited failed-handshake log', () => {
  const lines: string[] = [];
  const stop = logHandshakeFailures((l) => lines.push(l), { perSecond: 10, perPeerPerSecond: 3 });
  try {
    const n = net({ handshakeRate: { perAddress: 1, burst: 6 } });
    for (let p = 1; p <= 12; p++) n.connect('10.0.0.1', p);
    assert.equal(n.server.stats.rateLimited, 6);
    n.server.close();
  } finally {
    stop();
  }
  const refused = lines.filter((l) => l.includes('is over its handshake rate'));
  assert.equal(refused.length, 3, 'at most 3 lines a second for one address');
  assert.match(
    refused[0]!,
    /DTLS handshake failed from 10\.0\.0\.1:7: DTLS handshake refused: 10\.0\.0\.1 is over its handshake rate/,
  );
  assert.match(lines.at(-1)!, /suppressed 3 similar lines/);
});

test('server defaults: a fleet reconnecting at once is not held back', () => {
  const n = net({});
  // 1,000 devices, one address each, all in the same instant (PSK): within the global second's worth.
  for (let i = 0; i < 1000; i++) assert.ok(n.connect(`10.${i >> 8}.${i & 255}.1`, 5683).up(), `device ${i}`);
  // 60 devices behind one NAT, at once: the address's burst.
  for (let p = 1; p <= 60; p++) assert.ok(n.connect('192.0.2.1', 40_000 + p).up(), `NAT port ${p}`);
  assert.equal(n.server.stats.rateLimited, 0);
  assert.equal(n.server.handshakeRate!.trackedAddresses, 1001);
  n.server.close();
});

test('coapkit serve --handshake-rate N|off: the per-address rate (burst 6 N); off leaves the global bound', () => {
  // What the flag makes of the DTLS transport's options.
  const transportOptionsOf = (args: string[]) => {
    const o = parseServeArgs(args, {});
    assert.notEqual(o, 'help');
    return handshakeRateOptions((o as { handshakeRate?: number | 'off' }).handshakeRate);
  };
  assert.deepEqual(transportOptionsOf([]), {}, 'default: the transport default');
  assert.deepEqual(transportOptionsOf(['--handshake-rate', '25']), {
    handshakeRate: { perAddress: 25, burst: 150 },
  });
  const g = HANDSHAKE_RATE_DEFAULTS.global;
  assert.deepEqual(transportOptionsOf(['--handshake-rate', 'off']), {
    handshakeRate: { perAddress: g, burst: 6 * g },
    maxHandshakesPerAddress: DTLS_SERVER_DEFAULTS.maxHandshakes,
  });
  // The global rate given as a number is a rate, not "off": the per-address half-open share stays.
  assert.deepEqual(transportOptionsOf(['--handshake-rate', String(g)]), {
    handshakeRate: { perAddress: g, burst: 6 * g },
  });
  for (const bad of ['0', 'fast', '-3'])
    assert.throws(() => parseServeArgs(['--handshake-rate', bad], {}), UsageError, bad);
});
