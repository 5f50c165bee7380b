/**
 * Two cluster nodes sharing one PostgreSQL store (--store, a throwaway
 * cluster; skipped with the reason when PostgreSQL 15 is missing), on
 * loopback: a PUT through node 1 is read through node 2, and an observer on
 * node 1 is notified of a PUT through node 2 (LISTEN/NOTIFY), over coaps://
 * with the device's session on one node.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { until } from '../helpers/timing.js';
import { cliEnv, ROOT, runCli, type ServeProcess, startServeCluster } from './cli-helpers.js';

const KEY = ['--identity', 'dev', '--psk', 'devkey'];

describe('cluster nodes sharing a PostgreSQL store', () => {
  let pg: TestPostgres | string;
  const nodes: ServeProcess[] = [];
  before(async () => {
    pg = await startPostgres();
    if (typeof pg === 'string') return;
    const url = pg.createDatabase('cluster');
    nodes.push(
      ...(await startServeCluster(
        [
          ...KEY,
          '--anonymous-writes', // the observer test writes over plain coap://
          '--store',
          url,
        ],
        { oneByOne: true },
      )),
    );
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    if (typeof pg !== 'string') await pg.stop();
  });

  test('a PUT through node 1 is read through node 2 (coaps://)', async (t) => {
    if (typeof pg === 'string') return t.skip(pg);
    const [n1, n2] = nodes as [ServeProcess, ServeProcess];
    const put = await runCli([
      'put',
      `coaps://127.0.0.1:${n1.securePort}/shared/a`,
      '-p',
      'from node 1',
      ...KEY,
    ]);
    assert.equal(put.code, 0, put.stderr);
    // Node 2 learns of it through LISTEN/NOTIFY: wait for it, bounded.
    let got = '';
    const deadline = performance.now() + 20_000;
    while (got !== 'from node 1' && performance.now() < deadline) {
      const r = await runCli(['get', `coaps://127.0.0.1:${n2.securePort}/shared/a`, '--cid', ...KEY]);
      got = r.out;
    }
    assert.equal(got, 'from node 1', 'node 2 serves what node 1 stored');
  });

  test('an observer on node 1 is notified of a PUT through node 2', async (t) => {
    if (typeof pg === 'string') return t.skip(pg);
    const [n1, n2] = nodes as [ServeProcess, ServeProcess];
    const first = await runCli(['put', `coap://127.0.0.1:${n1.port}/shared/obs`, '-p', 'v1']);
    assert.equal(first.code, 0, first.stderr);
    const obs = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'observe',
        `coap://127.0.0.1:${n1.port}/shared/obs`,
        '--count',
        '2',
      ],
      { cwd: ROOT, env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    obs.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<number | null>((r) => obs.on('exit', (c) => r(c)));
    try {
      await until(() => out.includes('v1'), 'the observer got the current value', 20_000);
      const put = await runCli(['put', `coap://127.0.0.1:${n2.port}/shared/obs`, '-p', 'v2 via node 2']);
      assert.equal(put.code, 0, put.stderr);
      assert.equal(await exited, 0, out);
      assert.match(out, /v2 via node 2/);
    } finally {
      if (obs.exitCode === null) obs.kill('SIGKILL');
    }
  });
});
