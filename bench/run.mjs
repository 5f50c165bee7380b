#!/usr/bin/env node
// `npm run bench`: measures coapkit against its peers in one run and prints one table.
// See bench/README.md for what each figure means and how it is measured.
//
//   node bench/run.mjs [--quick] [--duration S] [--sustain S] [--only PEER[,PEER]] [--out DIR]
//                      [--rounds N] [--phases throughput,sustained,paced] [--pin] [--no-publish]
//                      [--skip-codec] [--skip-dtls] [--idle-us U]
//   node bench/run.mjs --render results.json [--out DIR] [--republish]
//       (table and chart again from saved figures; --republish also rewrites bench/results and README)
//
// Env equivalents: BENCH_QUICK=1, BENCH_DURATION, BENCH_SUSTAIN, BENCH_ROUNDS, BENCH_ONLY, BENCH_OUT,
// BENCH_PIN=1, BENCH_IDLE_US.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { codecBench } from './lib/codec.mjs';
import { dtlsBench } from './lib/dtls.mjs';
import { peerDefs, startPeer, unavailable } from './lib/peers.mjs';
import {
  cpuSeconds,
  installCleanup,
  killAll,
  rssBytes,
  run,
  sleep,
  treeCpuSeconds,
  which,
} from './lib/proc.mjs';
import { fmtBytes, fmtNum, fmtUs, renderSvg, renderTable } from './lib/report.mjs';

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH, '..');
/** RFC 7252 §4.8.2 with default parameters. */
const EXCHANGE_LIFETIME_S = 247;
const TARGETS = {
  vsBare: 0.85,
  vsNodeCoap: 3.5,
  vsLibcoap: 0.75,
  rssMb: 150,
  retainedBytes: 120,
  codecSpeedup: 3,
  dtlsHandshakes: 2000,
  dtlsVsPlain: 0.6,
  idleSessionBytes: 2048,
  // Server CPU per request, bare responder's over the peer's (64 endpoints, CON; higher is better).
  // The seed's POST /logs target is on a handler answering 2.04 (the library peer); serve's store
  // answers it 2.01 and keeps every line (a resource per request): shown, without a target.
  cpuVsBare: { coapkit: 0.9, serve: 0.8, 'handler-post': 0.75 },
  // coaps CPU per request over the node:crypto ceiling (plain + one seal + one open).
  coapsVsCeiling: 1.25,
  // serve --workers 2 over --workers 1, CPU per request (it must not grow with workers).
  workersCpu: 1.15,
};

const { values: argv } = parseArgs({
  options: {
    quick: { type: 'boolean', default: process.env.BENCH_QUICK === '1' },
    duration: { type: 'string', default: process.env.BENCH_DURATION },
    sustain: { type: 'string', default: process.env.BENCH_SUSTAIN },
    only: { type: 'string', default: process.env.BENCH_ONLY },
    out: { type: 'string', default: process.env.BENCH_OUT },
    pin: { type: 'boolean', default: process.env.BENCH_PIN === '1' },
    'no-publish': { type: 'boolean', default: false },
    'skip-codec': { type: 'boolean', default: false },
    'skip-dtls': { type: 'boolean', default: false },
    rounds: { type: 'string', default: process.env.BENCH_ROUNDS },
    'idle-us': { type: 'string', default: process.env.BENCH_IDLE_US },
    phases: { type: 'string', default: process.env.BENCH_PHASES },
    render: { type: 'string' },
    republish: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (argv.help) {
  const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8')
    .split('\n')
    .slice(1);
  process.stdout.write(
    `${lines
      .slice(
        0,
        lines.findIndex((l) => !l.startsWith('//')),
      )
      .join('\n')}\n`,
  );
  process.exit(0);
}

const quick = argv.quick;
const cfg = {
  quick,
  warmup: quick ? 0.2 : 0.5,
  duration: Number(argv.duration ?? (quick ? 0.6 : 6)),
  rounds: Math.max(1, Number(argv.rounds ?? (quick ? 1 : 3))),
  sustain: Number(argv.sustain ?? (quick ? 1 : 60)),
  // Closed-loop generators (coap and coaps alike) nap this long when nothing is ready instead of
  // blocking, so the server is not charged a wake-up of the generator for every response (see
  // bench/README.md, "The load generator"); 0 makes them block.
  idleUs: Math.max(0, Number(argv['idle-us'] ?? 200)),
  pacedClients: 10_000,
  pacedRate: 1,
  maxOldSpaceMb: 8192,
};
const phases = new Set((argv.phases ?? 'throughput,sustained,paced').split(',').map((s) => s.trim()));
const onlyIds = argv.only ? argv.only.split(',').map((s) => s.trim()) : null;
const outDir = resolve(argv.out ?? join(BENCH, 'out'));
const log = (s) => process.stderr.write(`[bench] ${s}\n`);
const started = Date.now();

installCleanup();

// ---------------------------------------------------------------------------------------------
// Load generator

const loadgenBin = join(BENCH, '.build/loadgen');
function buildLoadgen() {
  const src = join(BENCH, 'loadgen.c');
  mkdirSync(dirname(loadgenBin), { recursive: true });
  const cc = process.env.CC ?? 'gcc';
  if (!which(cc))
    throw new Error(`${cc} not found: the load generator is compiled at bench time (apt-get install gcc)`);
  const newest = Math.max(statSync(src).mtimeMs, statSync(join(BENCH, 'loadgen-common.h')).mtimeMs);
  if (!existsSync(loadgenBin) || statSync(loadgenBin).mtimeMs < newest) {
    execFileSync(cc, ['-O2', '-Wall', '-o', loadgenBin, src], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const version = execFileSync(cc, ['--version'], { encoding: 'utf8' }).split('\n')[0];
  return { compiled: true, binary: relative(ROOT, loadgenBin), compiler: version, flags: '-O2' };
}

// Pinning (--pin): server on CPU 1, load generator on CPU 0. Off by default: on the 2-CPU box it
// gained nothing when idle and halved throughput whenever anything else ran (see bench/README.md).
const pinning = argv.pin && os.availableParallelism() >= 2 && which('taskset') !== null;
const serverCpu = pinning ? '1' : null;

/**
 * Runs the load generator against a started peer; returns its JSON result plus server CPU use.
 * @param {{ pid: number, port: number }} h
 * @param {{ path: string }} def
 * @param {{ mode?: string, clients: number, window?: number, type?: string, duration: number, warmup?: number, rate?: number }} sc
 * @param {(t: number) => void} [onSecond]
 */
async function runLoad(h, def, sc, onSecond) {
  const args = [
    '--port',
    String(h.port),
    '--path',
    def.path,
    '--mode',
    sc.mode ?? 'closed',
    '--clients',
    String(sc.clients),
    '--window',
    String(sc.window ?? 1),
    '--type',
    sc.type ?? 'con',
    '--duration',
    String(sc.duration),
    '--warmup',
    String(sc.warmup ?? 0),
    '--rate',
    String(sc.rate ?? 1),
    '--idle-us',
    String(cfg.idleUs),
    '--progress',
  ];
  const rq = def.request;
  if (rq) {
    args.push('--method', rq.method);
    if (rq.payload !== undefined) args.push('--payload', rq.payload);
    if (rq.contentFormat !== undefined) args.push('--content-format', String(rq.contentFormat));
  }
  const cmd = pinning ? 'taskset' : loadgenBin;
  const fullArgs = pinning ? ['-c', '0', loadgenBin, ...args] : args;
  const cpu0 = treeCpuSeconds(h.pid);
  const t0 = Date.now();
  let timer = null;
  if (onSecond) timer = setInterval(() => onSecond((Date.now() - t0) / 1000), 1000);
  // Server CPU from the end of the generator's warm-up (when it starts counting) to its exit,
  // over the requests it counted: the server's CPU time per request.
  let cpuWarm = cpu0;
  const warmTimer =
    (sc.warmup ?? 0) > 0 ? setTimeout(() => (cpuWarm = treeCpuSeconds(h.pid)), sc.warmup * 1000) : null;
  try {
    const { stdout, stderr } = await run(cmd, fullArgs, {
      timeoutMs: ((sc.warmup ?? 0) + sc.duration + 30) * 1000,
    });
    const wall = (Date.now() - t0) / 1000;
    const cpuEnd = treeCpuSeconds(h.pid);
    const cpu = cpuEnd - cpu0;
    const lines = stdout.trim().split('\n');
    const result = JSON.parse(lines[lines.length - 1] ?? '{}');
    const progress = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    const measuredCpu = cpuEnd - cpuWarm;
    return {
      ...result,
      server_cpu_pct: Math.round((1000 * cpu) / wall) / 10,
      server_cpu_s: measuredCpu,
      server_cpu_us_per_req: result.completed > 0 ? (1e6 * measuredCpu) / result.completed : null,
      progress,
    };
  } finally {
    if (timer) clearInterval(timer);
    if (warmTimer) clearTimeout(warmTimer);
  }
}

const throughputScenarios = [
  { key: 'c64_con', clients: 64, type: 'con', label: '64 endpoints, CON' },
  { key: 'c1000_con', clients: 1000, type: 'con', label: '1,000 endpoints, CON' },
  { key: 'c64_non', clients: 64, type: 'non', label: '64 endpoints, NON' },
];

/**
 * Fresh server, baseline memory after GC, load, memory after GC.
 * @param {any} def @param {any} sc
 */
async function memoryPhase(def, sc) {
  const h = await startPeer(def, { pinCpu: serverCpu, maxOldSpaceMb: cfg.maxOldSpaceMb, root: ROOT });
  try {
    await sleep(200);
    const before = await h.memory(true);
    const rssBefore = rssBytes(h.pid);
    const series = [];
    const load = await runLoad(h, def, sc, (t) => series.push({ t: Math.round(t), rss: rssBytes(h.pid) }));
    const rssEnd = rssBytes(h.pid);
    const after = await h.memory(true);
    const rssAfterGc = rssBytes(h.pid);
    // Exchanges still inside the deduplication window (all of them unless the run outlasts it).
    let exchanges;
    if (before && after) exchanges = after.requests - before.requests;
    else exchanges = load.completed + load.timeouts;
    if (sc.duration > EXCHANGE_LIFETIME_S) {
      const recent = load.progress.filter((p) => p.t > sc.duration - EXCHANGE_LIFETIME_S);
      exchanges = recent.reduce((s, p) => s + p.interval_completed, 0);
    }
    // A peer that reports its deduplication store (coapkit) is counted exactly: that store may
    // hold fewer exchanges than were answered (MID reuse by an endpoint, or its size bounds).
    const dedupBefore = before?.extra?.dedupEntries;
    const dedupAfter = after?.extra?.dedupEntries;
    if (typeof dedupBefore === 'number' && typeof dedupAfter === 'number')
      exchanges = dedupAfter - dedupBefore;
    const heapDelta = before && after ? after.mem.heapUsed - before.mem.heapUsed : null;
    const extDelta = before && after ? after.mem.external - before.mem.external : null;
    const third = series.filter((p) => p.t >= (sc.duration * 2) / 3);
    const growth =
      third.length >= 2
        ? (third[third.length - 1].rss - third[0].rss) / (third[third.length - 1].t - third[0].t)
        : null;
    let flat = null;
    let rssPeakBefore = null;
    let rssPeakAfter = null;
    if (sc.duration >= EXCHANGE_LIFETIME_S + 40) {
      // Flat: once the first EXCHANGE_LIFETIME is full, RSS never rises more than 10% above the
      // highest it reached before (peaks, not single samples: RSS saw-tooths with GC).
      const split = EXCHANGE_LIFETIME_S + 10;
      rssPeakBefore = Math.max(...series.filter((p) => p.t < split).map((p) => p.rss));
      rssPeakAfter = Math.max(rssEnd, ...series.filter((p) => p.t >= split).map((p) => p.rss));
      flat = rssPeakAfter <= rssPeakBefore * 1.1;
    }
    return {
      load: { ...load, progress: undefined },
      alive: h.alive(),
      rss_before: rssBefore,
      rss_end: rssEnd,
      rss_after_gc: rssAfterGc,
      heap_before: before?.mem.heapUsed ?? null,
      heap_after: after?.mem.heapUsed ?? null,
      external_after: after?.mem.external ?? null,
      exchanges,
      requests_answered: before && after ? after.requests - before.requests : null,
      peer_counters: after?.extra ?? null,
      retained_heap_per_exchange: heapDelta !== null && exchanges > 0 ? heapDelta / exchanges : null,
      retained_per_exchange:
        heapDelta !== null && extDelta !== null && exchanges > 0 ? (heapDelta + extDelta) / exchanges : null,
      rss_per_exchange: exchanges > 0 ? (rssEnd - rssBefore) / exchanges : null,
      rss_growth_last_third_bytes_per_s: growth,
      flat_after_exchange_lifetime: flat,
      rss_peak_before_lifetime: rssPeakBefore,
      rss_peak_after_lifetime: rssPeakAfter,
      rss_series: series,
    };
  } finally {
    await h.stop();
  }
}

/** Median of numbers (NaN-free input). */
const median = (xs) => {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
};

/**
 * Combines the rounds of one scenario on one peer: req/s, p50, p99 and CPU figures are the
 * medians over rounds; counters are summed.
 */
function combineRounds(rounds) {
  const first = rounds[0];
  const sum = (k) => rounds.reduce((s, r) => s + (r[k] ?? 0), 0);
  return {
    ...first,
    progress: undefined,
    rounds: rounds.length,
    rounds_rps: rounds.map((r) => Math.round(r.rps)),
    seconds: sum('seconds'),
    sent: sum('sent'),
    completed: sum('completed'),
    timeouts: sum('timeouts'),
    stale: sum('stale'),
    bad: sum('bad'),
    non2xx: sum('non2xx'),
    rps: median(rounds.map((r) => r.rps)),
    p50_us: median(rounds.map((r) => r.p50_us)),
    p90_us: median(rounds.map((r) => r.p90_us)),
    p99_us: median(rounds.map((r) => r.p99_us)),
    max_us: Math.max(...rounds.map((r) => r.max_us)),
    cpu_pct: median(rounds.map((r) => r.cpu_pct)),
    server_cpu_pct: median(rounds.map((r) => r.server_cpu_pct)),
    server_cpu_s: sum('server_cpu_s'),
    // All rounds' server CPU over all their requests (not a median of ratios).
    server_cpu_us_per_req: sum('completed') > 0 ? (1e6 * sum('server_cpu_s')) / sum('completed') : null,
  };
}

/**
 * Throughput: one server process per peer, all started up front; every scenario runs in
 * `cfg.rounds` rounds that visit the peers in turn, so that anything else slowing the machine
 * down during the run hits every peer alike and the ratios stay fair.
 * @param {any[]} defs @param {Record<string, any>} res
 */
/**
 * Waits (at most 10 s) until every other peer process is idle (< 5% of a CPU over 200 ms), so
 * that work a peer does after its own round (node-coap's collector sweeping a heap of several
 * GB, for instance) does not land in the next peer's round.
 * @param {Map<string, any>} handles @param {string} except
 */
async function quiesce(handles, except) {
  const others = [...handles].filter(([id, h]) => id !== except && h.alive()).map(([, h]) => h.pid);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const before = others.map((pid) => cpuSeconds(pid));
    await sleep(200);
    // At most one 10 ms tick in 200 ms; an unreadable /proc entry counts as idle.
    if (others.every((pid, i) => !(cpuSeconds(pid) - before[i] >= 0.015))) return;
  }
}

async function measureThroughput(defs, res) {
  const popts = { pinCpu: serverCpu, maxOldSpaceMb: cfg.maxOldSpaceMb, root: ROOT };
  /** @type {Map<string, any>} */
  const handles = new Map();
  try {
    for (const def of defs) {
      try {
        handles.set(def.id, await startPeer(def, popts));
      } catch (e) {
        res[def.id].errors.push(`throughput: ${e instanceof Error ? e.message : e}`);
      }
    }
    const scenarios = [...throughputScenarios];
    if (handles.has('bare')) {
      // Headroom check: 4x the offered load. If the generator were the limit, this would scale.
      scenarios.push({
        key: 'c64_con_w4',
        clients: 64,
        window: 4,
        type: 'con',
        label: '64 endpoints, window 4',
        only: 'bare',
      });
    }
    const perRound = cfg.duration / cfg.rounds;
    for (const sc of scenarios) {
      const rounds = new Map();
      for (let round = 0; round < cfg.rounds; round++) {
        for (const def of defs) {
          const h = handles.get(def.id);
          if (!h || (sc.only && sc.only !== def.id)) continue;
          if (def.scenarios && !def.scenarios.includes(sc.key)) continue;
          if (!h.alive()) {
            if (!res[def.id].errors.some((e) => e.startsWith('throughput'))) {
              res[def.id].errors.push(`throughput: server died: ${h.stderr().slice(-300)}`);
            }
            continue;
          }
          log(`${def.id}: ${sc.label}, round ${round + 1}/${cfg.rounds}, ${perRound} s`);
          await quiesce(handles, def.id);
          try {
            const r = await runLoad(h, def, { ...sc, duration: perRound, warmup: cfg.warmup });
            if (!rounds.has(def.id)) rounds.set(def.id, []);
            rounds.get(def.id).push(r);
          } catch (e) {
            res[def.id].errors.push(`throughput ${sc.key}: ${e instanceof Error ? e.message : e}`);
          }
        }
      }
      for (const [id, rs] of rounds) res[id].runs[sc.key] = combineRounds(rs);
    }
  } finally {
    await Promise.all([...handles.values()].map((h) => h.stop()));
  }
}

/** Memory phases: a fresh server process for each. @param {any} def @param {any} res */
async function measureMemory(def, res) {
  if (def.memory === false) return;
  if (phases.has('sustained'))
    try {
      log(`${def.id}: sustained maximum load, 64 endpoints CON, ${cfg.sustain} s (fresh process)`);
      res.sustained = await memoryPhase(def, { clients: 64, type: 'con', duration: cfg.sustain });
    } catch (e) {
      res.errors.push(`sustained: ${e instanceof Error ? e.message : e}`);
    }
  if (phases.has('paced'))
    try {
      log(
        `${def.id}: paced, ${cfg.pacedClients} endpoints x ${cfg.pacedRate} req/s, ${cfg.sustain} s (fresh process)`,
      );
      res.paced = await memoryPhase(def, {
        mode: 'paced',
        clients: cfg.pacedClients,
        rate: cfg.pacedRate,
        type: 'con',
        duration: cfg.sustain,
      });
    } catch (e) {
      res.errors.push(`paced: ${e instanceof Error ? e.message : e}`);
    }
}

// ---------------------------------------------------------------------------------------------
// Table

/** Ratios are cut (not rounded) to 2 decimals, so that a shown 0.85x never hides a miss. */
const fmtRatio = (q) => (Math.floor(q * 100) / 100).toFixed(2);

/** @param {any} results */
function buildRows(results) {
  const rows = [];
  const P = results.peers;
  const ck = P.coapkit?.status === 'ok' ? P.coapkit : null;
  const checks = [];
  const add = (peer, metric, value, ratio = '', target = '', pass = null) => {
    rows.push([peer, metric, value, ratio, target, pass === null ? '' : pass ? 'PASS' : 'FAIL']);
    if (pass !== null) checks.push({ peer, metric, value, ratio, target, pass });
  };
  const order = [
    'coapkit',
    'handler',
    'handler-post',
    'serve',
    'serve-put',
    'serve-post',
    'serve-w1',
    'serve-w2',
    'bare',
    'libcoap',
    'node-coap',
  ];
  /** coapkit's own configurations: no req/s ratio against the minimal coapkit peer. */
  const ownConfigs = new Set([
    'handler',
    'handler-post',
    'serve',
    'serve-put',
    'serve-post',
    'serve-w1',
    'serve-w2',
  ]);
  const rpsTarget = { bare: TARGETS.vsBare, 'node-coap': TARGETS.vsNodeCoap, libcoap: TARGETS.vsLibcoap };

  rows.push([
    'loadgen',
    'compiled',
    results.meta.loadgen.compiled ? results.meta.loadgen.compiler : 'no',
    '',
    '',
    '',
  ]);
  const bare = P.bare?.status === 'ok' ? P.bare.runs : null;
  if (bare?.c64_con) {
    const w1 = bare.c64_con;
    const w4 = bare.c64_con_w4;
    const scale = w4 ? w4.rps / w1.rps : null;
    const notBottleneck = w1.cpu_pct < 95 && (w1.server_cpu_pct >= 90 || (scale !== null && scale < 1.15));
    add(
      'loadgen',
      'drives bare responder to its limit',
      `server CPU ${fmtNum(w1.server_cpu_pct)}%, loadgen CPU ${fmtNum(w1.cpu_pct)}%` +
        (scale !== null ? `, window 4 gives ${fmtNum(scale)}x req/s` : ''),
      '',
      'loadgen < 95% CPU',
      notBottleneck,
    );
  }

  // --workers 2 against --workers 1 (same Node, same request): CPU per request must not grow.
  const w1 = P['serve-w1']?.runs?.c64_con;
  const w2 = P['serve-w2']?.runs?.c64_con;
  const workersRow = () => {
    if (!w1?.server_cpu_us_per_req || !w2?.server_cpu_us_per_req) return;
    const q = w2.server_cpu_us_per_req / w1.server_cpu_us_per_req;
    add(
      'coapkit serve --workers 2',
      'CPU per request and total req/s against --workers 1, 64 endpoints, CON',
      `${fmtNum(w2.server_cpu_us_per_req)} us vs ${fmtNum(w1.server_cpu_us_per_req)} us; ${fmtNum(w2.rps)} vs ${fmtNum(w1.rps)} req/s`,
      `${(Math.ceil(q * 100) / 100).toFixed(2)}x CPU`,
      `<= ${TARGETS.workersCpu}x CPU`,
      q <= TARGETS.workersCpu,
    );
  };
  for (const sc of throughputScenarios) {
    if (sc === throughputScenarios[1]) workersRow();
    for (const id of order) {
      const p = P[id];
      if (!p) continue;
      if (p.status !== 'ok') {
        if (sc === throughputScenarios[0])
          rows.push([p.label, 'all figures', `skipped: ${p.note}`, '', '', '']);
        continue;
      }
      const r = p.runs[sc.key];
      if (!r && p.scenarios && !p.scenarios.includes(sc.key)) continue; // not run on this peer
      if (!r) {
        if (Object.keys(p.runs).length === 0 && !p.errors.length) continue; // phase not run
        add(p.label, `req/s, ${sc.label}`, 'failed');
        continue;
      }
      const ckr = ck?.runs[sc.key];
      const loss = r.timeouts > 0 ? ` (${r.timeouts} timeouts)` : '';
      let ratio = '';
      let target = '';
      let pass = null;
      if (id !== 'coapkit' && !ownConfigs.has(id) && ckr) {
        const q = ckr.rps / r.rps;
        ratio = `${fmtRatio(q)}x`;
        if (sc.type === 'con' && rpsTarget[id]) {
          target = `coapkit >= ${rpsTarget[id]}x`;
          pass = q >= rpsTarget[id];
        }
      }
      const non2xx = r.non2xx > 0 ? ` (${fmtNum(r.non2xx)} not 2.xx)` : '';
      add(p.label, `req/s, ${sc.label}`, `${fmtNum(r.rps)}${loss}${non2xx}`, ratio, target, pass);
      rows.push([p.label, `p50 / p99, ${sc.label}`, `${fmtUs(r.p50_us)} / ${fmtUs(r.p99_us)}`, '', '', '']);
      // Server CPU time per request (/proc/PID/stat utime + stime over the counted requests):
      // the bare responder's over this peer's, i.e. how close to the ceiling (higher is better).
      const bareUs = bare?.[sc.key]?.server_cpu_us_per_req;
      const us = r.server_cpu_us_per_req;
      if (typeof us === 'number') {
        const q = id !== 'bare' && typeof bareUs === 'number' ? bareUs / us : null;
        const t = sc.key === 'c64_con' ? TARGETS.cpuVsBare[id] : undefined;
        add(
          p.label,
          `server CPU per request, ${sc.label}`,
          `${fmtNum(us)} us`,
          q === null ? '' : `${fmtRatio(q)}x bare`,
          t !== undefined ? `>= ${t}x bare` : '',
          t !== undefined && q !== null ? q >= t : null,
        );
      }
    }
  }

  const memRows = (key, what) => {
    for (const id of order) {
      const p = P[id];
      if (p?.status !== 'ok') continue;
      const m = p[key];
      if (!m) {
        if (!(p.errors ?? []).length) continue; // phase not run
        rows.push([p.label, `${what}`, `failed: ${(p.errors ?? []).join('; ')}`.slice(0, 120), '', '', '']);
        continue;
      }
      const cm = ck?.[key];
      const isCk = id === 'coapkit';
      const ratio = (a, b) => (!isCk && a !== null && b !== null && b !== 0 ? `${(a / b).toFixed(2)}x` : '');
      const died = m.alive ? '' : ' (server died)';
      add(
        p.label,
        `${what}: req/s`,
        `${fmtNum(m.load.rps)}${m.load.timeouts ? ` (${m.load.timeouts} timeouts)` : ''}${died}`,
        ratio(cm?.load.rps ?? null, m.load.rps),
      );
      rows.push([
        p.label,
        `${what}: p50 / p99`,
        `${fmtUs(m.load.p50_us)} / ${fmtUs(m.load.p99_us)}`,
        '',
        '',
        '',
      ]);
      add(
        p.label,
        `${what}: RSS at end`,
        fmtBytes(m.rss_end),
        ratio(cm?.rss_end ?? null, m.rss_end),
        isCk && key === 'sustained' ? `<= ${TARGETS.rssMb} MB` : '',
        isCk && key === 'sustained' ? m.rss_end <= TARGETS.rssMb * 1024 * 1024 : null,
      );
      if (m.heap_after !== null) {
        rows.push([
          p.label,
          `${what}: heapUsed after GC`,
          fmtBytes(m.heap_after),
          ratio(cm?.heap_after ?? null, m.heap_after),
          '',
          '',
        ]);
        add(
          p.label,
          `${what}: retained B / exchange`,
          `${fmtNum(m.retained_per_exchange)} (${fmtNum(m.exchanges)} exch.)`,
          ratio(cm?.retained_per_exchange ?? null, m.retained_per_exchange),
          isCk ? `<= ${TARGETS.retainedBytes} B` : '',
          isCk ? m.retained_per_exchange <= TARGETS.retainedBytes : null,
        );
      } else {
        rows.push([
          p.label,
          `${what}: RSS growth B / exchange`,
          `${fmtNum(m.rss_per_exchange)} (${fmtNum(m.exchanges)} exch.)`,
          '',
          '',
          '',
        ]);
      }
      if (isCk && key === 'sustained') {
        add(
          p.label,
          `${what}: RSS flat after EXCHANGE_LIFETIME`,
          m.flat_after_exchange_lifetime === null
            ? `n/a (needs --sustain >= ${EXCHANGE_LIFETIME_S + 40}); growth in last third ${fmtBytes(m.rss_growth_last_third_bytes_per_s)}/s`
            : `${m.flat_after_exchange_lifetime ? 'flat' : 'not flat'}: peak ${fmtBytes(m.rss_peak_before_lifetime)} before ${EXCHANGE_LIFETIME_S + 10} s, ${fmtBytes(m.rss_peak_after_lifetime)} after`,
          '',
          m.flat_after_exchange_lifetime === null ? '' : 'peak after <= 1.1x peak before',
          m.flat_after_exchange_lifetime,
        );
      }
    }
  };
  memRows('sustained', `${cfg.sustain} s max load, 64 CON`);
  memRows('paced', `${cfg.sustain} s, ${cfg.pacedClients / 1000}k endpoints x 1/s`);

  const codec = results.codec;
  if (codec?.cases) {
    for (const c of codec.cases) {
      for (const [op, mine, theirs] of [
        ['encode', 'coapkit encodeMessage', 'coap-packet generate'],
        ['decode', 'coapkit decodeMessage', 'coap-packet parse'],
      ]) {
        const a = c.ops[mine];
        const b = c.ops[theirs];
        if (b)
          rows.push([
            'coap-packet',
            `codec ${op} ${c.message} (${c.bytes} B)`,
            `${fmtNum(b.nsPerOp)} ns`,
            '',
            '',
            '',
          ]);
        if (a && b) {
          const speedup = b.nsPerOp / a.nsPerOp;
          add(
            'coapkit',
            `codec ${op} ${c.message} (${c.bytes} B)`,
            `${fmtNum(a.nsPerOp)} ns`,
            `${fmtRatio(speedup)}x faster`,
            `>= ${TARGETS.codecSpeedup}x faster`,
            speedup >= TARGETS.codecSpeedup,
          );
        }
      }
    }
    if (codec.note) rows.push(['coapkit', 'codec', codec.note, '', '', '']);
  } else if (codec) {
    rows.push(['coapkit', 'codec', codec.note ?? codec.status, '', '', '']);
  }

  const dtls = results.dtls;
  if (dtls?.status === 'ok') {
    add(
      'coapkit',
      'DTLS full PSK handshakes/s (with HelloVerifyRequest)',
      `${fmtNum(dtls.handshakes_per_s)} (${fmtNum(dtls.hello_verify_sent)} HelloVerifyRequests for ${fmtNum(dtls.handshakes?.handshakes)}; server CPU ${fmtNum(dtls.handshake_server_cpu_pct)}%, ${dtls.driver_label ?? 'client'} CPU ${fmtNum(dtls.handshakes?.client_cpu_pct)}%)`,
      '',
      `>= ${TARGETS.dtlsHandshakes}`,
      dtls.handshakes_per_s >= TARGETS.dtlsHandshakes,
    );
    const plain = ck?.runs.c64_con?.rps;
    add(
      'coapkit',
      `coaps req/s, ${dtls.clients} sessions`,
      `${fmtNum(dtls.requests_per_s)} (p50 ${fmtUs(dtls.requests?.p50_us)}, p99 ${fmtUs(dtls.requests?.p99_us)}; server CPU ${fmtNum(dtls.requests_server_cpu_pct)}%, ${dtls.driver_label ?? 'client'} CPU ${fmtNum(dtls.requests?.client_cpu_pct)}%)`,
      plain ? `${fmtRatio(dtls.requests_per_s / plain)}x plain` : '',
      `>= ${TARGETS.dtlsVsPlain}x plain coap`,
      plain ? dtls.requests_per_s / plain >= TARGETS.dtlsVsPlain : null,
    );
    // The ceiling node:crypto sets: if DTLS cost nothing but its two cipher objects per request,
    // coaps would still be plain's server CPU per request plus seal + open.
    const plainRun = ck?.runs.c64_con;
    const plainUs =
      plainRun?.server_cpu_us_per_req ??
      (plainRun?.rps ? (10_000 * plainRun.server_cpu_pct) / plainRun.rps : null);
    const coapsUs =
      dtls.requests_server_cpu_us_per_req ??
      (dtls.requests_per_s ? (10_000 * dtls.requests_server_cpu_pct) / dtls.requests_per_s : null);
    if (dtls.cipher && plainUs) {
      const crypto = dtls.cipher.seal_us + dtls.cipher.open_us;
      const ceiling = plainUs + crypto;
      add(
        'coapkit',
        'coaps ceiling with node:crypto (server CPU per request)',
        `plain ${fmtNum(plainUs)} us + CCM_8 seal ${fmtNum(dtls.cipher.seal_us)} us + open ${fmtNum(dtls.cipher.open_us)} us = ${fmtNum(ceiling)} us`,
        `<= ${fmtRatio(plainUs / ceiling)}x plain`,
        '',
        null,
      );
      const q = coapsUs ? coapsUs / ceiling : null;
      add(
        'coapkit',
        `coaps server CPU per request, ${dtls.clients} sessions`,
        coapsUs ? `${fmtNum(coapsUs)} us` : 'n/a',
        q === null ? '' : `${(Math.ceil(q * 100) / 100).toFixed(2)}x ceiling`,
        `<= ${TARGETS.coapsVsCeiling}x ceiling`,
        q === null ? null : q <= TARGETS.coapsVsCeiling,
      );
    }
    add(
      'coapkit',
      `heap per idle DTLS session (${dtls.idle_sessions} sessions)`,
      fmtBytes(dtls.heap_per_idle_session),
      '',
      `<= ${fmtBytes(TARGETS.idleSessionBytes)}`,
      dtls.heap_per_idle_session <= TARGETS.idleSessionBytes,
    );
  } else {
    rows.push([
      'coapkit',
      'DTLS (handshakes/s, coaps req/s, heap/idle session)',
      dtls?.note ?? 'n/a',
      '',
      '',
      '',
    ]);
  }
  return { rows, checks };
}

// ---------------------------------------------------------------------------------------------
// Chart

/** @param {any} results */
function buildChart(results) {
  const order = ['coapkit', 'bare', 'libcoap', 'node-coap'];
  const P = results.peers;
  const ok = order.filter((id) => P[id]?.status === 'ok');
  const label = (id) => P[id].label;
  const panels = [
    {
      title: 'Requests per second (one request outstanding per endpoint)',
      unit: (v) => `${fmtNum(v)}/s`,
      groups: throughputScenarios.map((sc) => ({
        label: sc.label,
        bars: ok.map((id) => ({ key: id, label: label(id), value: P[id].runs[sc.key]?.rps ?? null })),
      })),
    },
    {
      title: `Server memory (RSS) after ${cfg.sustain} s`,
      unit: (v) => fmtBytes(v),
      groups: [
        {
          label: 'maximum load, 64 endpoints',
          bars: ok.map((id) => ({ key: id, label: label(id), value: P[id].sustained?.rss_end ?? null })),
        },
        {
          label: `${cfg.pacedClients.toLocaleString('en-US')} endpoints x 1 req/s`,
          bars: ok.map((id) => ({ key: id, label: label(id), value: P[id].paced?.rss_end ?? null })),
        },
      ],
    },
  ];
  const codec = results.codec;
  if (codec?.cases?.some((c) => c.ops['coapkit encodeMessage'])) {
    panels.push({
      title: 'Codec: messages per second (higher is better)',
      unit: (v) => `${fmtNum(v)}/s`,
      groups: codec.cases.flatMap((c) =>
        [
          ['encode', 'coapkit encodeMessage', 'coap-packet generate'],
          ['decode', 'coapkit decodeMessage', 'coap-packet parse'],
        ].map(([op, mine, theirs]) => ({
          label: `${op} ${c.message} (${c.bytes} B)`,
          bars: [
            { key: 'coapkit', label: 'coapkit', value: 1e9 / c.ops[mine].nsPerOp },
            { key: 'coap-packet', label: 'coap-packet', value: 1e9 / c.ops[theirs].nsPerOp },
          ],
        })),
      ),
    });
  }
  const dtls = results.dtls;
  if (dtls?.status === 'ok') {
    panels.push({
      title: `coapkit over DTLS 1.2 PSK (${fmtNum(dtls.handshakes_per_s)} full handshakes/s, ${fmtBytes(dtls.heap_per_idle_session)} per idle session)`,
      unit: (v) => `${fmtNum(v)}/s`,
      groups: [
        {
          label: `requests per second, ${dtls.clients} endpoints / sessions`,
          bars: [
            { key: 'coapkit', label: 'coap (UDP)', value: P.coapkit?.runs?.c64_con?.rps ?? null },
            { key: 'coaps', label: 'coaps (DTLS)', value: dtls.requests_per_s },
          ],
        },
      ],
    });
  }
  const m = results.meta;
  return renderSvg({
    title: 'coapkit benchmark (npm run bench)',
    subtitle: `${m.date} | ${m.cpu} x${m.cpus} | Node ${m.node} | ${m.command}`,
    panels,
  });
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const cpus = os.cpus();
  const meta = {
    date: new Date().toISOString(),
    command: `node bench/run.mjs${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
    node: process.versions.node,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    kernel: os.release(),
    loadavg_start: os.loadavg()[0],
    quick,
    warmup_s: cfg.warmup,
    duration_s: cfg.duration,
    rounds: cfg.rounds,
    sustain_s: cfg.sustain,
    loadgen_idle_us: cfg.idleUs,
    pinning: pinning ? { server_cpu: 1, loadgen_cpu: 0 } : null,
    node_peer_flags: ['--expose-gc', `--max-old-space-size=${cfg.maxOldSpaceMb}`],
    loadgen: { compiled: false },
  };
  log(`building load generator (${relative(ROOT, loadgenBin)})`);
  meta.loadgen = buildLoadgen();
  const results = { meta, peers: {}, codec: null, dtls: null, checks: [], table: [] };

  const defs = [];
  for (const def of peerDefs(BENCH)) {
    if (onlyIds && !onlyIds.includes(def.id)) continue;
    // --quick (the CI smoke) keeps to one serve and one handler peer unless others are named.
    if (quick && def.quick === false && !onlyIds) continue;
    const why = await unavailable(def, { root: ROOT, full: !quick, log });
    if (why) {
      log(`${def.id}: skipped: ${why}`);
      results.peers[def.id] = { id: def.id, label: def.label, status: 'skipped', note: why };
      continue;
    }
    results.peers[def.id] = {
      status: 'ok',
      id: def.id,
      label: def.label,
      path: def.path,
      ...(def.request ? { request: def.request } : {}),
      ...(def.scenarios ? { scenarios: def.scenarios } : {}),
      runs: {},
      errors: [],
    };
    defs.push(def);
  }
  if (phases.has('throughput')) await measureThroughput(defs, results.peers);
  for (const def of defs) await measureMemory(def, results.peers[def.id]);
  for (const def of defs) for (const err of results.peers[def.id].errors) log(`${def.id}: ERROR ${err}`);

  if (!argv['skip-codec'] && (!onlyIds || onlyIds.includes('codec') || onlyIds.includes('coapkit'))) {
    log('codec micro-benchmark (tinybench)');
    try {
      results.codec = await codecBench({ root: ROOT, quick });
    } catch (e) {
      results.codec = { status: 'error', note: `codec bench failed: ${e instanceof Error ? e.message : e}` };
    }
  }
  if (!argv['skip-dtls'] && (!onlyIds || onlyIds.includes('dtls') || onlyIds.includes('coapkit'))) {
    log('DTLS benchmark');
    try {
      results.dtls = await dtlsBench({
        root: ROOT,
        quick,
        pinCpu: serverCpu,
        duration: cfg.duration,
        idleUs: cfg.idleUs,
        log,
      });
    } catch (e) {
      results.dtls = { status: 'error', note: `DTLS bench failed: ${e instanceof Error ? e.message : e}` };
    }
  }

  const { rows, checks } = buildRows(results);
  results.checks = checks;
  const header = ['peer', 'metric', 'value', 'coapkit/peer', 'target', 'result'];
  results.table = { header, rows };
  meta.elapsed_s = Math.round((Date.now() - started) / 1000);
  meta.loadavg_end = os.loadavg()[0];

  mkdirSync(outDir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  const svg = buildChart(results);
  writeFileSync(join(outDir, 'results.json'), json);
  writeFileSync(join(outDir, 'chart.svg'), svg);
  const table = renderTable(header, rows);
  process.stdout.write(`\n${table}\n\n`);
  const passed = checks.filter((c) => c.pass).length;
  process.stdout.write(
    `${passed}/${checks.length} targets met. ${meta.elapsed_s} s, load average ${fmtNum(meta.loadavg_start)} -> ${fmtNum(meta.loadavg_end)}. Wrote ${relative(process.cwd(), join(outDir, 'results.json'))} and chart.svg\n`,
  );

  const publish =
    !quick &&
    !onlyIds &&
    !argv['no-publish'] &&
    !argv.out &&
    !argv.duration &&
    !argv.sustain &&
    !argv.rounds &&
    !argv.phases;
  if (publish) publishResults(table, meta, json, svg);
}

/** Copies the figures into bench/results/ and the table into bench/README.md (between markers). */
function publishResults(table, meta, json, svg) {
  const dir = join(BENCH, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'results.json'), json);
  writeFileSync(join(dir, 'chart.svg'), svg);
  const readme = join(BENCH, 'README.md');
  if (!existsSync(readme)) return;
  const text = readFileSync(readme, 'utf8');
  const start = '<!-- bench:results:start -->';
  const end = '<!-- bench:results:end -->';
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) return;
  const block = [
    start,
    `Measured ${meta.date.slice(0, 16).replace('T', ' ')} UTC by \`npm run bench\` (\`${meta.command}\`, ${meta.elapsed_s} s) on ${meta.cpu} (${meta.cpus} CPUs), Linux ${meta.kernel}, Node ${meta.node}; CPU pinning: ${meta.pinning ? 'server CPU 1, loadgen CPU 0' : 'off'}; load average ${fmtNum(meta.loadavg_start)} at start, ${fmtNum(meta.loadavg_end)} at end. Raw figures: [results/results.json](results/results.json).`,
    '',
    '![benchmark chart](results/chart.svg)',
    '',
    table,
    end,
  ].join('\n');
  writeFileSync(readme, text.slice(0, i) + block + text.slice(j + end.length));
  log(`published to ${relative(ROOT, dir)}/ and bench/README.md`);
}

/** Re-renders the table and the chart of a saved results.json (no measurement). */
function render(file) {
  const results = JSON.parse(readFileSync(file, 'utf8'));
  cfg.sustain = results.meta.sustain_s;
  const { rows, checks } = buildRows(results);
  results.checks = checks;
  results.table = { header: results.table.header, rows };
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'chart.svg'), buildChart(results));
  writeFileSync(join(outDir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const table = renderTable(results.table.header, rows);
  process.stdout.write(`${table}\n`);
  if (argv.republish) {
    publishResults(table, results.meta, `${JSON.stringify(results, null, 2)}\n`, buildChart(results));
  }
}

(argv.render ? Promise.resolve().then(() => render(resolve(argv.render))) : main())
  .then(() => {
    killAll();
    process.exit(0);
  })
  .catch((e) => {
    killAll();
    process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : e}\n`);
    process.exit(1);
  });
