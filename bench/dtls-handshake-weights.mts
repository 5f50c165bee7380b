/**
 * What one full DTLS handshake costs the server, by kind (not a test): the
 * weights of the handshake rate limit (src/dtls/handshake-rate.ts). In one
 * process and without sockets, coapkit's own DTLS client and server exchange
 * datagrams through a queue; only the time spent inside the server's
 * `handleDatagram` is counted (cookie exchange included). N handshakes per
 * kind, each from a new client port, after a warm-up, in 7 interleaved rounds.
 * Run: npx tsx bench/dtls-handshake-weights.mts   (N=100 by default). Sockets add
 * about the same to every kind (bench/README.md, "Handshake weights").
 */
import { Buffer } from 'node:buffer';
import { rmSync } from 'node:fs';
import { DtlsClientConnection } from '../src/dtls/client.js';
import { buildCertOptions } from '../src/dtls/crypto/certs.js';
import { parseDatagram } from '../src/dtls/record/record.js';
import { DtlsServer, type DtlsServerOptions } from '../src/dtls/server.js';
import { makePki } from '../test/helpers/pki.js';

const pki = makePki();
process.on('exit', () => rmSync(pki.dir, { recursive: true, force: true }));
const N = Number(process.env.N ?? 100);
const PSK = Buffer.from('k3y');

const serverCerts = buildCertOptions({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca }, 'server');
const clientCerts = buildCertOptions({ cert: pki.clientCert, key: pki.clientKey, ca: pki.ca }, 'client');
const rpkServer = buildCertOptions({ rpk: pki.rpkServerKey, rpkTrust: [pki.rpkClientFingerprint] }, 'server');
const rpkClient = buildCertOptions({ rpk: pki.rpkClientKey, rpkTrust: [pki.rpkServerFingerprint] }, 'client');
const serverNoClientAuth = buildCertOptions(
  { cert: pki.serverCert, key: pki.serverKey, verifyPeer: false },
  'server',
);
const clientNoCert = buildCertOptions({ ca: pki.ca }, 'client');

interface Kind {
  name: string;
  server: Partial<DtlsServerOptions>;
  client: { psk?: boolean; certs?: typeof clientCerts; suites: number[] };
}
const kinds: Kind[] = [
  { name: 'PSK (TLS_PSK_WITH_AES_128_CCM_8)', server: {}, client: { psk: true, suites: [0xc0a8] } },
  {
    name: 'ECDHE_PSK (TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256)',
    server: {},
    client: { psk: true, suites: [0xccac] },
  },
  {
    name: 'X.509, server only (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)',
    server: { certs: serverNoClientAuth },
    client: { certs: clientNoCert, suites: [0xc0ae] },
  },
  {
    name: 'X.509, mutual',
    server: { certs: serverCerts },
    client: { certs: clientCerts, suites: [0xc0ae] },
  },
  {
    name: 'raw public keys, mutual',
    server: { certs: rpkServer },
    client: { certs: rpkClient, suites: [0xc0ae] },
  },
];

function batch(kind: Kind, n: number): number {
  let serverNs = 0n;
  const queue: (() => void)[] = [];
  let client: DtlsClientConnection | undefined;
  let port = 10_000;
  const server = new DtlsServer(
    {
      pskLookup: (id) => (id === 'dev' ? PSK : undefined),
      maxSessions: 100_000,
      handshakeRate: false,
      ...kind.server,
    },
    {
      send: (d) => {
        const c = client!;
        queue.push(() => {
          for (const r of parseDatagram(d)) void c.handleRecord(r);
        });
      },
      established: () => {},
      data: () => {},
      closed: () => {},
    },
  );
  for (let i = 0; i < n; i++) {
    let up = false;
    const p = port++;
    client = new DtlsClientConnection(
      {
        mtu: 1280,
        ipOverhead: 48,
        retransmitInitialMs: 60_000,
        retransmitMaxMs: 60_000,
        handshakeTimeoutMs: 120_000,
        peerLabel: 'bench',
        identity: kind.client.psk ? Buffer.from('dev') : undefined,
        psk: kind.client.psk ? PSK : undefined,
        certs: kind.client.certs,
        cipherSuites: kind.client.suites,
      },
      {
        sendDatagram: (d) =>
          queue.push(() => {
            const t = process.hrtime.bigint();
            server.handleDatagram(d, '127.0.0.1', p);
            serverNs += process.hrtime.bigint() - t;
          }),
        established: () => {
          up = true;
        },
        data: () => {},
        closed: (e) => {
          if (e) throw e;
        },
      },
    );
    client.start();
    for (let k = 0; k < 100 && queue.length > 0; k++) queue.shift()!();
    if (!up) throw new Error(`${kind.name}: handshake ${i} did not complete`);
    client.destroy();
  }
  server.close();
  return Number(serverNs) / n / 1e6;
}

// Rounds interleave the kinds (a busy machine slows them alike); each kind's figure
// and its ratio to PSK are the medians over the rounds.
const ROUNDS = 7;
const times = kinds.map(() => [] as number[]);
const ratios = kinds.map(() => [] as number[]);
for (const kind of kinds) batch(kind, Math.min(50, N)); // warm-up
for (let r = 0; r < ROUNDS; r++) {
  const t = kinds.map((kind) => batch(kind, N));
  t.forEach((ms, i) => {
    times[i]!.push(ms);
    ratios[i]!.push(ms / t[0]!);
  });
}
const median = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1]!;
for (const [i, kind] of kinds.entries())
  console.log(
    `${kind.name}: ${median(times[i]!).toFixed(3)} ms of server time per handshake, x${median(ratios[i]!).toFixed(1)} PSK`,
  );
process.exit(0);
