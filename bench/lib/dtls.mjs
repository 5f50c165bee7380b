// ---- DTLS section ----------------------------------------------------------------------------
// coaps figures: full PSK handshakes per second (each one ClientHello, HelloVerifyRequest,
// ClientHello with cookie, ServerHello..., Finished, on a fresh client socket), established
// coaps requests/s (64 sessions, one CON GET outstanding each) and server heap per idle session.
// Runs only when coapkit's DTLS transport is built (dist/transport/dtls.js); "n/a" otherwise.
// The server is bench/peers/coapkit-dtls.mjs, the client bench/lib/dtls-client.mjs, each its own
// process.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPeer } from './peers.mjs';
import { cpuSeconds, run, sleep, track } from './proc.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENT = join(HERE, 'dtls-client.mjs');

/**
 * @param {{ root: string, quick: boolean, pinCpu: string | null, duration: number, log: (s: string) => void }} ctx
 */
export async function dtlsBench(ctx) {
  const transport = join(ctx.root, 'dist/transport/dtls.js');
  if (!existsSync(transport)) return { status: 'n/a', note: 'n/a (not built: dist/transport/dtls.js)' };
  const def = {
    id: 'coapkit-dtls',
    label: 'coapkit coaps',
    kind: 'node',
    path: '/hello',
    script: join(HERE, '../peers/coapkit-dtls.mjs'),
    noProbe: true,
  };
  const popts = { pinCpu: ctx.pinCpu, maxOldSpaceMb: 8192 };
  const clientCmd = (args) =>
    ctx.pinCpu !== null
      ? ['taskset', ['-c', '0', process.execPath, CLIENT, ...args]]
      : [process.execPath, [CLIENT, ...args]];
  const lastJson = (s) => JSON.parse(s.trim().split('\n').pop() ?? '{}');
  const result = { status: 'ok', clients: 64 };

  // 1. Full handshakes per second.
  let h = await startPeer(def, popts);
  try {
    const secs = ctx.quick ? 0.5 : ctx.duration;
    ctx.log(`dtls: full PSK handshakes, ${secs} s`);
    const cpu0 = cpuSeconds(h.pid);
    const t0 = Date.now();
    const [cmd, args] = clientCmd(['handshakes', String(h.port), String(secs), '32']);
    const r = lastJson((await run(cmd, args, { timeoutMs: (secs + 30) * 1000 })).stdout);
    const mem = await h.memory(false);
    result.handshakes = r;
    result.handshakes_per_s = r.per_s;
    result.handshake_server_cpu_pct =
      Math.round((1000 * (cpuSeconds(h.pid) - cpu0)) / ((Date.now() - t0) / 1000)) / 10;
    result.hello_verify_sent = mem?.extra?.helloVerifySent ?? null;
  } finally {
    await h.stop();
  }

  // 2. Established coaps throughput.
  h = await startPeer(def, popts);
  try {
    const secs = ctx.quick ? 0.5 : ctx.duration;
    ctx.log(`dtls: coaps requests, ${result.clients} sessions, ${secs} s`);
    const cpu0 = cpuSeconds(h.pid);
    const t0 = Date.now();
    const [cmd, args] = clientCmd(['requests', String(h.port), String(secs), String(result.clients)]);
    const r = lastJson((await run(cmd, args, { timeoutMs: (secs + 40) * 1000 })).stdout);
    result.requests = r;
    result.requests_per_s = r.rps;
    result.requests_server_cpu_pct =
      Math.round((1000 * (cpuSeconds(h.pid) - cpu0)) / ((Date.now() - t0) / 1000)) / 10;
  } finally {
    await h.stop();
  }

  // 3. Heap per idle session.
  h = await startPeer(def, popts);
  const n = ctx.quick ? 100 : 2000;
  try {
    ctx.log(`dtls: ${n} idle sessions`);
    await sleep(200);
    const before = await h.memory(true);
    const [cmd, args] = clientCmd(['idle', String(h.port), String(n), '32']);
    const client = track(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const opened = new Promise((resolve, reject) => {
      client.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]));
      });
      client.on('exit', (code) => reject(new Error(`dtls idle client exited (${code})`)));
      setTimeout(() => reject(new Error('dtls idle client timed out')), 120_000);
    });
    const r = await opened;
    await sleep(300);
    const after = await h.memory(true);
    client.stdin.write('close\n');
    const sessions = after?.extra?.sessions ?? r.sessions;
    const delta =
      before && after
        ? after.mem.heapUsed + after.mem.external - before.mem.heapUsed - before.mem.external
        : null;
    result.idle = { ...r, server_sessions: sessions, heap_delta: delta };
    result.idle_sessions = sessions;
    result.heap_per_idle_session = delta !== null && sessions > 0 ? delta / sessions : null;
    result.heap_only_per_idle_session =
      before && after && sessions > 0 ? (after.mem.heapUsed - before.mem.heapUsed) / sessions : null;
    await Promise.race([new Promise((r2) => client.once('exit', r2)), sleep(10_000)]);
    client.kill('SIGKILL');
  } finally {
    await h.stop();
  }
  return result;
}
