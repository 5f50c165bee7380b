#!/usr/bin/env node
// PUT throughput of `coapkit serve` with each store (issue 14): memory, SQLite
// (--data, WAL, synchronous=FULL, group commit) and PostgreSQL (--store, a
// throwaway PostgreSQL 15 cluster when installed). Every PUT is answered only after
// its change is committed (except with the memory store).
//
//   npm run build && node bench/store.mjs [--duration S] [--window N] [--pg URL]
//
// Prints one row per store: PUT req/s, server CPU per request (the coapkit process,
// its SQLite worker thread included; PostgreSQL's own processes not counted), and
// the ratio to memory. The client keeps N requests in flight over 500 paths (2.04).
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startPostgres } from './lib/postgres.mjs';
import { cpuSeconds, installCleanup, sleep, stop, track } from './lib/proc.mjs';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const MAIN = join(ROOT, 'dist/cli/main.js');
const USAGE =
  'usage: node bench/store.mjs [--duration S] [--window N] [--pg URL] [--only memory,sqlite,postgres]';
let flags;
try {
  ({ values: flags } = parseArgs({
    options: {
      duration: { type: 'string', default: '5' },
      window: { type: 'string', default: '64' },
      pg: { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  console.error(`bench/store.mjs: ${err.message}\n${USAGE}`);
  process.exit(64);
}
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
const DURATION = Number(flags.duration) * 1000;
const WINDOW = Number(flags.window);
if (!(DURATION > 0) || !Number.isInteger(WINDOW) || WINDOW < 1) {
  console.error(
    `bench/store.mjs: --duration must be a positive number of seconds and --window a positive integer\n${USAGE}`,
  );
  process.exit(64);
}

function startServe(args) {
  return new Promise((res, rej) => {
    const child = track(process.execPath, [MAIN, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (c) => {
      err += c;
    });
    child.stdout.on('data', (c) => {
      out += c;
      const m = /coap:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m && /Stop with Ctrl-C/.test(out)) res({ child, port: Number(m[1]) });
    });
    child.on('exit', (code) => rej(new Error(`serve exited ${code}: ${err}`)));
  });
}

/** One PUT datagram: CON, token 4 bytes, Uri-Path "b", "pN", Content-Format 0, payload. */
function putDatagram(mid, token, n, payload) {
  const seg = Buffer.from(`p${n}`);
  const head = Buffer.from([0x44, 0x03, mid >> 8, mid & 0xff]);
  const opts = Buffer.concat([
    Buffer.from([0xb1]), // Uri-Path (11), length 1
    Buffer.from('b'),
    Buffer.from([seg.length]), // delta 0, Uri-Path again
    seg,
    Buffer.from([0x10]), // Content-Format (12), length 0 (= 0)
  ]);
  return Buffer.concat([head, token, opts, Buffer.from([0xff]), payload]);
}

async function measure(port, pid) {
  const sock = dgram.createSocket('udp4');
  await new Promise((r) => sock.bind(0, '127.0.0.1', r));
  let mid = 1;
  let done = 0;
  let errors = 0;
  let counting = false;
  const payload = randomBytes(32);
  const inflight = new Map();
  const fire = () => {
    mid = (mid + 1) & 0xffff;
    const token = randomBytes(4);
    inflight.set(token.toString('hex'), Date.now());
    sock.send(putDatagram(mid, token, mid % 500, payload), port, '127.0.0.1');
  };
  sock.on('message', (d) => {
    const tkl = d[0] & 0x0f;
    const key = d.subarray(4, 4 + tkl).toString('hex');
    if (!inflight.delete(key)) return;
    if (counting) {
      if (d[1] === 0x41 || d[1] === 0x44) done++;
      else errors++;
    }
    fire();
  });
  // Lost datagrams: refill the window.
  const refill = setInterval(() => {
    const now = Date.now();
    for (const [k, t] of inflight) if (now - t > 2000) inflight.delete(k);
    while (inflight.size < WINDOW) fire();
  }, 200);
  for (let i = 0; i < WINDOW; i++) fire();
  await sleep(1000); // warm-up (and the first 500 creations)
  counting = true;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(DURATION);
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  counting = false;
  clearInterval(refill);
  sock.close();
  return { rps: done / secs, cpuUsPerReq: (cpu * 1e6) / Math.max(1, done), errors };
}

if (!existsSync(MAIN)) {
  console.error('dist/ is not built: npm run build');
  process.exit(1);
}
// A Ctrl-C or a crash stops the servers (and the PostgreSQL cluster, on exit).
installCleanup();
const only = flags.only?.split(',');
const rows = [];
const dataDir = mkdtempSync(join(os.tmpdir(), 'coapkit-bench-data-'));
let pg;
try {
  const stores = [
    ['memory', []],
    ['sqlite', ['--data', dataDir]],
  ];
  if (!only || only.includes('postgres')) {
    const started = flags.pg === undefined ? await startPostgres() : undefined;
    if (typeof started === 'string') rows.push({ store: 'postgres', note: started });
    else {
      pg = started;
      stores.push(['postgres', ['--store', flags.pg ?? pg.url]]);
    }
  }
  for (const [name, args] of stores) {
    if (only && !only.includes(name)) continue;
    const s = await startServe(['--max-resources', '10000', ...args]);
    try {
      rows.push({ store: name, ...(await measure(s.port, s.child.pid)) });
    } finally {
      await stop(s.child);
    }
  }
} finally {
  await pg?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
const mem = rows.find((r) => r.store === 'memory')?.rps;
console.log(
  `PUT, ${WINDOW} in flight, ${DURATION / 1000} s, Node ${process.version}, ${os.cpus().length} CPUs`,
);
console.log('| store    | PUT req/s | server CPU µs/req | vs memory |');
console.log('| -------- | --------- | ----------------- | --------- |');
for (const r of rows) {
  if (r.note) {
    console.log(`| ${r.store.padEnd(8)} | ${r.note} | | |`);
    continue;
  }
  const ratio = mem ? `${((100 * r.rps) / mem).toFixed(0)}%` : '';
  console.log(
    `| ${r.store.padEnd(8)} | ${r.rps.toFixed(0).padStart(9)} | ${r.cpuUsPerReq.toFixed(1).padStart(17)} | ${ratio.padStart(9)} |${r.errors ? ` ${r.errors} non-2.xx` : ''}`,
  );
}
