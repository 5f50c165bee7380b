// ---- DTLS section ----------------------------------------------------------------------------
// coaps figures: full PSK handshakes per second (each one ClientHello, HelloVerifyRequest,
// ClientHello with cookie, ServerHello..., Finished, on a fresh client socket), established
// coaps requests/s (64 sessions, one CON GET outstanding each) and server heap per idle session.
// Runs only when coapkit's DTLS transport is built (dist/transport/dtls.js); "n/a" otherwise.
// The server is bench/peers/coapkit-dtls.mjs, each phase a fresh process. Handshakes and requests
// are driven by the C generator bench/dtls-loadgen.c (OpenSSL, compiled here into bench/.build/),
// so that the driver costs far less CPU than the server, as the plain-CoAP loadgen does; when it
// cannot be built (no gcc or no OpenSSL headers) or with BENCH_DTLS_DRIVER=node, by the Node
// client bench/lib/dtls-client.mjs (coapkit's own DtlsClientTransport) instead. The idle-session
// phase always uses the Node client. Each row names its driver and the driver's own CPU %.
import { spawnSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_IDENTITY, BENCH_KEY } from '../peers/dtls-psk.mjs';
import { startPeer } from './peers.mjs';
import { cpuSeconds, run, sleep, track, which } from './proc.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENT = join(HERE, 'dtls-client.mjs');
const LOADGEN_SRC = join(HERE, '../dtls-loadgen.c');
const LOADGEN_COMMON = join(HERE, '../loadgen-common.h');
const LOADGEN_BIN = join(HERE, '../.build/dtls-loadgen');
/** TLS_PSK_WITH_AES_128_CCM_8, CoAP's mandatory PSK suite (RFC 7252 §9.1.3.1); the Node client uses it too. */
const CIPHER = 'PSK-AES128-CCM8';

/**
 * Compiles bench/dtls-loadgen.c against OpenSSL unless the binary is newer than the source.
 * A full (non-quick) run as root installs libssl-dev with apt-get when the headers are missing.
 * @param {{ root: string, quick: boolean, log: (s: string) => void }} ctx
 * @returns {{ ok: true, binary: string, compiler: string, flags: string } | { ok: false, reason: string }}
 */
export function buildDtlsLoadgen(ctx) {
  const cc = process.env.CC ?? 'gcc';
  if (!which(cc)) return { ok: false, reason: `${cc} not found` };
  const flags = ['-O2', '-Wall'];
  const libs = ['-lssl', '-lcrypto'];
  const newest = Math.max(statSync(LOADGEN_SRC).mtimeMs, statSync(LOADGEN_COMMON).mtimeMs);
  if (!existsSync(LOADGEN_BIN) || statSync(LOADGEN_BIN).mtimeMs < newest) {
    mkdirSync(dirname(LOADGEN_BIN), { recursive: true });
    const compile = () =>
      spawnSync(cc, [...flags, '-o', LOADGEN_BIN, LOADGEN_SRC, ...libs], {
        encoding: 'utf8',
        timeout: 60_000,
      });
    let r = compile();
    const noHeaders = () => r.status !== 0 && /openssl\/\w+\.h/.test(r.stderr ?? '');
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    if (noHeaders() && isRoot && !ctx.quick && which('apt-get')) {
      ctx.log('installing libssl-dev (apt-get) for the DTLS load generator...');
      const apt = (args) => spawnSync('apt-get', args, { stdio: 'ignore', timeout: 180_000 });
      if (apt(['install', '-y', 'libssl-dev']).status !== 0) {
        apt(['update']);
        apt(['install', '-y', 'libssl-dev']);
      }
      r = compile();
    }
    if (r.status !== 0) {
      const why = noHeaders()
        ? 'OpenSSL headers missing (apt-get install libssl-dev)'
        : (r.stderr ?? '').trim();
      return { ok: false, reason: `dtls-loadgen not built: ${why.slice(0, 300) || `${cc} failed`}` };
    }
  }
  const compiler = spawnSync(cc, ['--version'], { encoding: 'utf8' }).stdout?.split('\n')[0] ?? cc;
  return {
    ok: true,
    binary: relative(ctx.root, LOADGEN_BIN),
    compiler,
    flags: [...flags, ...libs].join(' '),
  };
}

/**
 * @param {{ root: string, quick: boolean, pinCpu: string | null, duration: number, log: (s: string) => void }} ctx
 */
/**
 * What node:crypto alone costs per coaps request on the server: one AES-128-CCM_8 record opened
 * (the request) and one sealed (the response), each needing a fresh cipher object because the
 * nonce changes per record and Node has no one-shot AEAD call. Measured here, in this process:
 * createCipheriv/createDecipheriv + setAAD + update + final + tag for a 30-byte CoAP message,
 * median of 5 batches. This is a floor no DTLS implementation on node:crypto can go under.
 * @param {boolean} quick
 */
export function cipherCost(quick) {
  const key = randomBytes(16);
  const nonce = randomBytes(12);
  const aad = randomBytes(13);
  const pt = randomBytes(30);
  const seal = () => {
    const c = createCipheriv('aes-128-ccm', key, nonce, { authTagLength: 8 });
    c.setAAD(aad, { plaintextLength: pt.length });
    const ct = c.update(pt);
    c.final();
    return { ct, tag: c.getAuthTag() };
  };
  const { ct, tag } = seal();
  const open = () => {
    const d = createDecipheriv('aes-128-ccm', key, nonce, { authTagLength: 8 });
    d.setAuthTag(tag);
    d.setAAD(aad, { plaintextLength: ct.length });
    const out = d.update(ct);
    d.final();
    return out;
  };
  if (!open().equals(pt)) throw new Error('cipherCost: CCM_8 round trip failed');
  const n = quick ? 2000 : 20000;
  const time = (fn) => {
    const runs = [];
    for (let b = 0; b < 5; b++) {
      const t = process.hrtime.bigint();
      for (let i = 0; i < n; i++) fn();
      runs.push(Number(process.hrtime.bigint() - t) / n / 1000);
    }
    return runs.sort((a, b) => a - b)[2];
  };
  time(seal);
  time(open);
  return { seal_us: time(seal), open_us: time(open) };
}

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
  const pinned = (cmd, args) => (ctx.pinCpu !== null ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]);
  const clientCmd = (args) => pinned(process.execPath, [CLIENT, ...args]);
  const lastJson = (s) => JSON.parse(s.trim().split('\n').pop() ?? '{}');
  const result = { status: 'ok', clients: 64 };

  // The driver: the C generator unless it cannot be built or BENCH_DTLS_DRIVER=node.
  const forced = process.env.BENCH_DTLS_DRIVER;
  const built = forced === 'node' ? { ok: false, reason: 'BENCH_DTLS_DRIVER=node' } : buildDtlsLoadgen(ctx);
  if (!built.ok && forced === 'c') throw new Error(built.reason);
  if (!built.ok) ctx.log(`dtls: ${built.reason}; the Node client drives the load instead`);
  result.driver = built.ok ? 'dtls-loadgen' : 'node';
  result.driver_label = built.ok ? 'C dtls-loadgen' : 'Node dtls-client';
  result.loadgen = built.ok ? built : { compiled: false, reason: built.reason };
  const secs = ctx.quick ? 0.5 : ctx.duration;
  const warmup = ctx.quick ? 0.2 : 0.5;
  // The C driver naps `idleUs` when nothing is ready instead of blocking in epoll_wait, exactly
  // like bench/loadgen.c for plain coap (the same --idle-us for both, so that coaps/plain compares
  // like with like): the server then does not pay for waking the generator up after every
  // response, a loopback artefact. See bench/README.md. 0 makes both block.
  const idleUs = Number(ctx.idleUs ?? process.env.BENCH_IDLE_US ?? 200);
  if (built.ok) result.loadgen.idle_us = idleUs;
  const loadgen = (args) =>
    pinned(LOADGEN_BIN, [
      '--host',
      '127.0.0.1',
      '--psk-identity',
      BENCH_IDENTITY,
      '--psk-key',
      Buffer.from(BENCH_KEY, 'utf8').toString('hex'),
      '--cipher',
      CIPHER,
      ...(idleUs > 0 ? ['--idle-us', String(idleUs)] : []),
      ...args,
    ]);
  /** Both drivers' JSON, with the driver's own CPU % as client_cpu_pct. */
  const norm = (r) => ({ ...r, driver: result.driver, client_cpu_pct: r.client_cpu_pct ?? r.cpu_pct });

  // 1. Full handshakes per second.
  let h = await startPeer(def, popts);
  try {
    ctx.log(`dtls: full PSK handshakes, ${secs} s (${result.driver_label})`);
    const cpu0 = cpuSeconds(h.pid);
    const t0 = Date.now();
    const [cmd, args] = built.ok
      ? loadgen([
          '--mode',
          'handshakes',
          '--port',
          String(h.port),
          '--clients',
          '32',
          '--duration',
          String(secs),
        ])
      : clientCmd(['handshakes', String(h.port), String(secs), '32']);
    const r = norm(lastJson((await run(cmd, args, { timeoutMs: (secs + 30) * 1000 })).stdout));
    const mem = await h.memory(false);
    result.handshakes = r;
    result.handshakes_per_s = r.per_s;
    result.handshake_server_cpu_pct =
      Math.round((1000 * (cpuSeconds(h.pid) - cpu0)) / ((Date.now() - t0) / 1000)) / 10;
    result.hello_verify_sent = mem?.extra?.helloVerifySent ?? null;
  } finally {
    await h.stop();
  }

  // 2. Established coaps throughput: 64 sessions, handshaken first (not timed), then a closed loop
  // of CON GET /hello, one outstanding per session. Server CPU is measured over the whole run
  // (C driver: including the untimed setup and warm-up, so slightly under its busy share).
  h = await startPeer(def, popts);
  try {
    ctx.log(`dtls: coaps requests, ${result.clients} sessions, ${secs} s (${result.driver_label})`);
    const cpu0 = cpuSeconds(h.pid);
    const t0 = Date.now();
    const [cmd, args] = built.ok
      ? loadgen([
          '--mode',
          'requests',
          '--port',
          String(h.port),
          '--path',
          def.path,
          '--clients',
          String(result.clients),
          '--window',
          '1',
          '--duration',
          String(secs),
          '--warmup',
          String(warmup),
          '--progress',
        ])
      : clientCmd(['requests', String(h.port), String(secs), String(result.clients)]);
    // The C generator says when it starts counting (after the handshakes and the warm-up): the
    // server's CPU from then to the end, over the requests counted, is its CPU per request.
    let cpuMeasuring = null;
    const onStderr = (text) => {
      if (cpuMeasuring === null && text.includes('"measuring":true')) cpuMeasuring = cpuSeconds(h.pid);
    };
    const r = norm(lastJson((await run(cmd, args, { timeoutMs: (secs + 40) * 1000, onStderr })).stdout));
    const cpuEnd = cpuSeconds(h.pid);
    result.requests = r;
    result.requests_per_s = r.rps;
    result.requests_server_cpu_pct = Math.round((1000 * (cpuEnd - cpu0)) / ((Date.now() - t0) / 1000)) / 10;
    if (cpuMeasuring !== null && r.completed > 0)
      result.requests_server_cpu_us_per_req = (1e6 * (cpuEnd - cpuMeasuring)) / r.completed;
  } finally {
    await h.stop();
  }

  result.cipher = cipherCost(ctx.quick);

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
