/**
 * Per-record cost of established coaps traffic through the DTLS transports,
 * without the network (not a test). The transports' sockets are stubbed: the
 * server's 'message' listener is fed pre-built encrypted datagrams from 64
 * sessions, the handler answers each with a CoAP-sized response through
 * transport.send() (encrypt + hand to the stubbed socket.send), and the client
 * side is timed the same way (send a request + receive a pre-built response).
 * Printed next to the floor: the node:crypto calls alone (createDecipheriv +
 * setAuthTag + setAAD + update + final, createCipheriv + setAAD + update +
 * final + getAuthTag) for the same sizes; the difference is coapkit's own
 * per-request overhead. Times are this process's CPU time (process.cpuUsage),
 * best of the rounds, so other load on a shared machine inflates them little.
 * Run: node --import tsx test/vectors/dtls-record-bench.mts [suiteHex] [rounds]
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { RemoteInfo, Socket } from 'node:dgram';
import { DtlsClientTransport, DtlsServerTransport } from '../../src/transport/dtls.js';
import { makePeer, type Peer } from '../../src/transport/transport.js';

const suite = Number.parseInt(process.argv[2] ?? 'c0a8', 16);
const rounds = Number(process.argv[3] ?? 5);
const SESSIONS = 64;
const PER_SESSION = 1500;
const psk = { identity: 'bench', key: 'bench-key' };
// GET /hello (CON, TKL 4) and its piggybacked 2.05 "world" response.
const REQ = Buffer.from([0x44, 0x01, 0, 1, 1, 2, 3, 4, 0xb5, 0x68, 0x65, 0x6c, 0x6c, 0x6f]);
const RESP = Buffer.from([0x64, 0x45, 0, 1, 1, 2, 3, 4, 0xc0, 0xff, 0x77, 0x6f, 0x72, 0x6c, 0x64]);

type Listener = (msg: Buffer, rinfo: RemoteInfo) => void;
type Sender = (d: Buffer, ...rest: unknown[]) => void;
const stub = (s: Socket, fn: Sender) => {
  (s as unknown as { send: unknown }).send = (d: Buffer, ...rest: unknown[]) => {
    fn(d, ...rest);
    const cb = rest[rest.length - 1];
    if (typeof cb === 'function') cb(null, d.length);
  };
};
const rinfo = (address: string, port: number): RemoteInfo => ({ address, port, family: 'IPv4', size: 0 });

const server = await DtlsServerTransport.create({
  host: '127.0.0.1',
  port: 0,
  psk,
  cipherSuites: [suite],
  maxSessions: 1000,
  handshakeRate: false, // 64 sessions from one address, set up at once
});
const sport = server.localAddress().port;
const ssock = (server as unknown as { socket: Socket }).socket;
const sListener = ssock.listeners('message')[0] as Listener;
let toClient: Buffer[] = [];
stub(ssock, (d) => toClient.push(d));
let served = 0;
const serverPeers: Peer[] = [];
server.attach({
  message(_d, peer) {
    served++;
    server.send(RESP, peer);
  },
});

interface Sess {
  t: DtlsClientTransport;
  port: number;
  listener: Listener;
  out: Buffer[];
  reqs: Buffer[];
  resps: Buffer[];
  speer?: Peer;
}
const sessions: Sess[] = [];
const speer = makePeer('127.0.0.1', sport);
let received = 0;
for (let i = 0; i < SESSIONS; i++) {
  // The shared socket, which the bench stubs (not a connected socket per session).
  const t = await DtlsClientTransport.create({ psk, cipherSuites: [suite], maxConnectedSockets: 0 });
  const sock = (t as unknown as { sockets: Map<number, Socket> }).sockets.get(4)!;
  const s: Sess = {
    t,
    port: t.localAddress().port,
    listener: sock.listeners('message')[0] as Listener,
    out: [],
    reqs: [],
    resps: [],
  };
  stub(sock, (d) => s.out.push(d));
  t.attach({
    message() {
      received++;
    },
  });
  const up = t.connect(speer);
  let done = false;
  void up.then(() => {
    done = true;
  });
  while (!done) {
    await new Promise((r) => setImmediate(r));
    for (const d of s.out.splice(0)) sListener(d, rinfo('127.0.0.1', s.port));
    for (const d of toClient.splice(0)) s.listener(d, rinfo('127.0.0.1', sport));
  }
  sessions.push(s);
}
// Learn the server-side Peer of each session (first request) and drain.
server.attach({
  message(_d, peer) {
    serverPeers.push(peer);
    server.send(RESP, peer);
  },
});
for (const s of sessions) {
  s.t.send(REQ, speer);
  for (const d of s.out.splice(0)) sListener(d, rinfo('127.0.0.1', s.port));
  s.speer = serverPeers.at(-1);
  for (const d of toClient.splice(0)) s.listener(d, rinfo('127.0.0.1', sport));
}
server.attach({
  message(_d, peer) {
    served++;
    server.send(RESP, peer);
  },
});

function prepare(): void {
  for (const s of sessions) {
    s.out = [];
    for (let i = 0; i < PER_SESSION; i++) s.t.send(REQ, speer);
    s.reqs = s.out;
    s.out = [];
    toClient = [];
    // Server responses for the client-side phase (the server's seq moves on in order).
    for (let i = 0; i < PER_SESSION; i++) server.send(RESP, s.speer!);
    s.resps = toClient;
    toClient = [];
  }
}

const N = SESSIONS * PER_SESSION;
/** CPU time of this process in ms (user + system): robust against other processes on a shared machine. */
const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const results: { server: number; client: number; floor: number }[] = [];
for (let r = 0; r < rounds; r++) {
  prepare();
  served = 0;
  let sentBack = 0;
  stub(ssock, () => {
    sentBack++;
  });
  const srvAddr = '127.0.0.1';
  let t0 = cpuNow();
  for (let i = 0; i < PER_SESSION; i++) {
    for (const s of sessions) sListener(s.reqs[i]!, rinfo(srvAddr, s.port));
  }
  const serverNs = ((cpuNow() - t0) * 1e6) / N;
  if (served !== N || sentBack !== N) throw new Error(`server handled ${served}/${sentBack} of ${N}`);
  stub(ssock, (d) => toClient.push(d));

  received = 0;
  for (const s of sessions)
    stub((s.t as unknown as { sockets: Map<number, Socket> }).sockets.get(4)!, () => {});
  t0 = cpuNow();
  for (let i = 0; i < PER_SESSION; i++) {
    for (const s of sessions) {
      s.t.send(REQ, speer);
      s.listener(s.resps[i]!, rinfo(srvAddr, sport));
    }
  }
  const clientNs = ((cpuNow() - t0) * 1e6) / N;
  if (received !== N) throw new Error(`client received ${received} of ${N}`);
  for (const s of sessions) {
    const sock = (s.t as unknown as { sockets: Map<number, Socket> }).sockets.get(4)!;
    stub(sock, (d) => s.out.push(d));
  }
  const fl = floorNs();
  results.push({ server: serverNs, client: clientNs, floor: fl.dec + fl.enc });
}

// The floor: the node:crypto calls alone, same sizes (CCM_8: 8-byte explicit nonce + 8-byte tag).
function floorNs(): { dec: number; enc: number } {
  const key = randomBytes(16);
  const nonce = randomBytes(12);
  const aad = randomBytes(13);
  const opts = { authTagLength: 8 } as const;
  const e = createCipheriv('aes-128-ccm', key, nonce, opts);
  e.setAAD(aad, { plaintextLength: REQ.length });
  const ct = e.update(REQ);
  e.final();
  const tag = e.getAuthTag();
  const M = 50_000;
  let best = { dec: Infinity, enc: Infinity };
  for (let r = 0; r < 2; r++) {
    let t0 = cpuNow();
    for (let i = 0; i < M; i++) {
      const d = createDecipheriv('aes-128-ccm', key, nonce, opts);
      d.setAuthTag(tag);
      d.setAAD(aad, { plaintextLength: ct.length });
      d.update(ct);
      d.final();
    }
    const dec = ((cpuNow() - t0) * 1e6) / M;
    t0 = cpuNow();
    for (let i = 0; i < M; i++) {
      const c = createCipheriv('aes-128-ccm', key, nonce, opts);
      c.setAAD(aad, { plaintextLength: RESP.length });
      c.update(RESP);
      c.final();
      c.getAuthTag();
    }
    const enc = ((cpuNow() - t0) * 1e6) / M;
    best = { dec: Math.min(best.dec, dec), enc: Math.min(best.enc, enc) };
  }
  return best;
}

// Minimum over the rounds: the machine is shared, interference only ever adds time.
const min = (xs: number[]) => Math.min(...xs);
const srv = min(results.map((r) => r.server));
const cli = min(results.map((r) => r.client));
const floor = suite === 0xc0a8 ? true : undefined;
const f = min(results.map((r) => r.floor));
console.log(
  `suite 0x${suite.toString(16)}, ${SESSIONS} sessions x ${PER_SESSION} requests, best of ${rounds} rounds:\n` +
    `  server (transport: receive + decrypt + deliver, send + encrypt): ${srv.toFixed(0)} ns/request` +
    (floor ? `  (node:crypto floor ${f.toFixed(0)} ns: overhead ${(srv - f).toFixed(0)} ns)` : '') +
    `\n  client (transport: send + encrypt, receive + decrypt + deliver): ${cli.toFixed(0)} ns/request` +
    (floor ? `  (overhead ${(cli - f).toFixed(0)} ns)` : '') +
    `\n  rounds: server ${results.map((r) => r.server.toFixed(0)).join(' ')}; client ${results.map((r) => r.client.toFixed(0)).join(' ')}; floor ${results.map((r) => r.floor.toFixed(0)).join(' ')}`,
);
await Promise.all([server.close(), ...sessions.map((s) => s.t.close())]);
process.exit(0);
