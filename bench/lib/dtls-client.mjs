// DTLS load driver for bench/lib/dtls.mjs (a child process, so it can sit on its own CPU).
//   node dtls-client.mjs handshakes PORT SECONDS CONCURRENCY   full handshakes/s (connect + close)
//   node dtls-client.mjs idle PORT COUNT CONCURRENCY           opens COUNT sessions, waits for "close" on stdin
//   node dtls-client.mjs requests PORT SECONDS SESSIONS        closed-loop coaps GETs, one outstanding per session
// Prints one JSON line per phase on stdout. Uses coapkit's DtlsClientTransport directly with a
// pre-encoded GET (no CoAP client stack), so that the client side stays cheaper than the server.
import { DtlsClientTransport } from '../../dist/transport/dtls.js';
import { makePeer } from '../../dist/transport/transport.js';
import { BENCH_IDENTITY, BENCH_KEY } from '../peers/dtls-psk.mjs';

const [mode, portS, amountS, concS] = process.argv.slice(2);
const port = Number(portS);
const peer = makePeer('127.0.0.1', port);
const psk = { identity: BENCH_IDENTITY, key: BENCH_KEY };
const CCM8 = 0xc0a8; // TLS_PSK_WITH_AES_128_CCM_8, CoAP's mandatory PSK suite (RFC 7252 §9.1.3.1)
const newClient = () => DtlsClientTransport.create({ psk, cipherSuites: [CCM8], handshakeTimeoutMs: 10_000 });
const cpu0 = process.cpuUsage();
const wall0 = performance.now();
/** This client's own CPU use since start, in % of one CPU: shows whether the client is the limit. */
const clientCpuPct = () => {
  const u = process.cpuUsage(cpu0);
  return Math.round((100 * (u.user + u.system)) / 1000 / (performance.now() - wall0));
};
const out = (o) => process.stdout.write(`${JSON.stringify({ ...o, client_cpu_pct: clientCpuPct() })}\n`);

async function handshakes(seconds, concurrency) {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (performance.now() < end) {
      const t = await newClient();
      t.attach({ message() {} });
      try {
        await t.connect(peer);
        done++;
      } catch {
        failed++;
      }
      await t.close();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const secs = (performance.now() - t0) / 1000;
  out({ mode: 'handshakes', handshakes: done, failed, seconds: secs, per_s: done / secs });
}

async function idle(count, concurrency) {
  const clients = [];
  let next = 0;
  let failed = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < count) {
      next++;
      const t = await newClient();
      t.attach({ message() {} });
      try {
        await t.connect(peer);
        clients.push(t);
      } catch {
        failed++;
        await t.close();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  out({ mode: 'idle', sessions: clients.length, failed, seconds: (performance.now() - t0) / 1000 });
  process.stdin.once('data', async () => {
    await Promise.all(clients.map((c) => c.close()));
    process.exit(0);
  });
}

async function requests(seconds, sessions) {
  // GET /hello, CON, TKL 4; MID and token are rewritten per request.
  const tmpl = Buffer.from([0x44, 0x01, 0, 0, 0, 0, 0, 0, 0xb5, 0x68, 0x65, 0x6c, 0x6c, 0x6f]);
  const lat = [];
  let completed = 0;
  let measuring = false;
  const clients = await Promise.all(
    Array.from({ length: sessions }, async (_, i) => {
      const t = await newClient();
      const c = { t, mid: (i * 7919) & 0xffff, token: 0, sentAt: 0 };
      const send = () => {
        c.mid = (c.mid + 1) & 0xffff;
        c.token = (Math.random() * 0x100000000) >>> 0;
        const b = Buffer.from(tmpl);
        b.writeUInt16BE(c.mid, 2);
        b.writeUInt32BE(c.token, 4);
        c.sentAt = performance.now();
        t.send(b, peer);
      };
      c.send = send;
      t.attach({
        message(data) {
          if (data.length < 8 || data.readUInt32BE(4) !== c.token) return;
          if (measuring) {
            completed++;
            lat.push(performance.now() - c.sentAt);
          }
          if (running) send();
        },
      });
      await t.connect(peer);
      return c;
    }),
  );
  let running = true;
  for (const c of clients) c.send();
  await new Promise((r) => setTimeout(r, Math.min(1000, seconds * 500))); // warm-up
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  running = false;
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (q) =>
    lat.length ? Math.round(1000 * lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]) : 0;
  out({
    mode: 'requests',
    sessions,
    completed,
    seconds: secs,
    rps: completed / secs,
    p50_us: pct(0.5),
    p99_us: pct(0.99),
  });
  await Promise.all(clients.map((c) => c.t.close()));
}

if (mode === 'handshakes') await handshakes(Number(amountS), Number(concS));
else if (mode === 'idle') await idle(Number(amountS), Number(concS));
else if (mode === 'requests') await requests(Number(amountS), Number(concS));
else {
  process.stderr.write('usage: dtls-client.mjs handshakes|idle|requests PORT N M\n');
  process.exit(2);
}
if (mode !== 'idle') process.exit(0);
