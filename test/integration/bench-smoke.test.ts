// Smoke version of `npm run bench` (bench/run.mjs --quick): keeps the harness, the C load
// generator and the peers from rotting. Seconds, not minutes; the figures are not judged here.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';

const root = resolve(import.meta.dirname, '../..');
const out = mkdtempSync(join(tmpdir(), 'coapkit-bench-'));
after(() => rmSync(out, { recursive: true, force: true }));

function runBench(
  args: string[],
  limitMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['bench/run.mjs', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      // SIGINT first: the harness kills its own children on it.
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
      reject(new Error(`bench --quick exceeded ${limitMs} ms\n${stderr}`));
    }, limitMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

interface Run {
  rps: number;
  completed: number;
  p50_us: number;
  p99_us: number;
}
interface PeerResult {
  status: string;
  note?: string;
  runs: Record<string, Run | undefined>;
  sustained?: { rss_end: number; exchanges: number };
  paced?: { load: Run };
  errors: string[];
}

// The load generator is C, compiled at bench time; .ci/run installs gcc.
const hasGcc = spawnSync('sh', ['-c', 'command -v gcc'], { encoding: 'utf8' }).stdout.trim() !== '';

test('npm run bench --quick runs end to end and writes results.json and chart.svg', {
  timeout: 60_000,
  skip: hasGcc ? false : 'gcc not installed (apt-get install gcc)',
}, async () => {
  const { code, stdout, stderr } = await runBench(['--quick', '--out', out], 55_000);
  assert.equal(code, 0, `bench exited with ${code}\n${stderr}`);
  const file = join(out, 'results.json');
  assert.ok(existsSync(file), 'results.json written');
  const results = JSON.parse(readFileSync(file, 'utf8')) as {
    meta: { loadgen: { compiled: boolean }; quick: boolean };
    peers: Record<string, PeerResult | undefined>;
    table: { rows: string[][] };
    dtls?: { status: string; note?: string; handshakes_per_s?: number; requests_per_s?: number };
  };
  assert.equal(results.meta.quick, true);
  assert.equal(results.meta.loadgen.compiled, true, 'load generator compiled with gcc');
  assert.ok(existsSync(join(root, 'bench/.build/loadgen')), 'loadgen binary in bench/.build');

  const bare = results.peers.bare;
  assert.equal(bare?.status, 'ok');
  assert.deepEqual(bare?.errors, []);
  for (const key of ['c64_con', 'c1000_con', 'c64_non']) {
    const run = bare?.runs[key];
    assert.ok(run && run.rps > 0 && run.completed > 0, `bare responder answered (${key})`);
    assert.ok(run.p50_us > 0 && run.p99_us >= run.p50_us, `latency percentiles (${key})`);
  }
  assert.ok((bare?.sustained?.exchanges ?? 0) > 0, 'sustained phase counted exchanges');
  assert.ok((bare?.paced?.load.rps ?? 0) > 0, 'paced 10k-endpoint phase answered');

  // Peers that are installed must have produced figures; others are skipped with a note.
  for (const id of ['libcoap', 'node-coap', 'coapkit']) {
    const p = results.peers[id];
    assert.ok(p, `${id} has an entry`);
    if (p.status === 'skipped') {
      assert.ok(p.note && p.note.length > 0, `${id} skipped with a reason`);
      continue;
    }
    assert.equal(p.status, 'ok');
    assert.ok((p.runs.c64_con?.rps ?? 0) > 0, `${id} answered the load generator: ${p.errors.join('; ')}`);
  }

  // The DTLS section runs once coapkit's DTLS transport is built; it must not break silently.
  if (existsSync(join(root, 'dist/transport/dtls.js'))) {
    assert.equal(results.dtls?.status, 'ok', `DTLS bench: ${results.dtls?.note}`);
    assert.ok((results.dtls?.handshakes_per_s ?? 0) > 0, 'DTLS handshakes completed');
    assert.ok((results.dtls?.requests_per_s ?? 0) > 0, 'coaps requests answered');
  }

  const svg = readFileSync(join(out, 'chart.svg'), 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /bare Node UDP/);
  assert.match(stdout, /\| peer +\| metric/);
  assert.match(stdout, /bare Node UDP +\| req\/s, 64 endpoints, CON/);
  assert.ok(results.table.rows.length > 5);
});
