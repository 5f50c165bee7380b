/**
 * The shared-state scenarios of the cluster through the load balancer, in
 * network namespaces (root; skipped with the reason otherwise): the topology
 * of cluster-netns.test.ts plus a `pg` namespace behind lb running a
 * throwaway PostgreSQL, and both nodes with `--store postgres://10.15.4.2/…`:
 *
 *   dev (devices) ── lb (nginx) ── node1, node2 (coaps, cluster, --store)
 *                                └─ pg (PostgreSQL 15, 10.15.4.2:5432)
 *
 * Each device request leaves from a source port that nginx's consistent hash
 * sends to the node the test names (the ring is computed, not guessed):
 * - a PUT through the load balancer lands on node 1; a GET from another
 *   device port, hashed to node 2, returns it;
 * - an observer registered (through the load balancer) on node 1 is notified
 *   of a PUT made through node 2;
 * - kill -9 of node 2 during a PUT loop through the load balancer: every PUT
 *   the device got 2.01/2.04 for is read back through node 1.
 */
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Topology, vethPair } from '../helpers/netns.js';
import { LbCluster, lbClusterSkipReason, type NsProc as Proc } from '../helpers/netns-cluster.js';
import { PG_BIN, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { until } from '../helpers/timing.js';

const skip =
  lbClusterSkipReason() ??
  (!existsSync(join(PG_BIN, 'postgres'))
    ? `PostgreSQL 15 not installed (${PG_BIN} missing; Debian package postgresql-15)`
    : spawnSync('id', ['-u', 'postgres']).status !== 0
      ? 'no postgres system user to run PostgreSQL as (we are root; initdb refuses root)'
      : undefined);

const PSK = { identity: 'dev', key: 'devkey' };
const PG_ADDR = { lb: '10.15.4.1', pg: '10.15.4.2' };

interface Result {
  i?: number;
  n?: number;
  node?: number;
  path?: string;
  code?: string;
  text?: string;
  error?: string;
}

describe('a cluster sharing PostgreSQL behind nginx in network namespaces', { skip }, () => {
  let cluster: LbCluster;
  let t: Topology;
  let pgNs: string;
  let pg: TestPostgres | undefined;
  let nodes: Proc[];

  /** Starts the device script in dev; its results are parsed as they arrive. */
  const device = (o: Record<string, unknown>) => {
    const p = cluster.spawn(t.ns.dev, process.execPath, [
      '--import',
      'tsx',
      'test/helpers/cluster-store-device.ts',
      JSON.stringify({
        lb: t.addr.lbDev,
        address: t.addr.dev,
        upstreams: [`${t.addr.node1}:5684`, `${t.addr.node2}:5684`],
        psk: PSK,
        timeoutMs: 10_000,
        ...o,
      }),
    ]);
    const results = (): Result[] =>
      p
        .out()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Result);
    const done = new Promise<number | null>((r) => p.child.on('exit', (c) => r(c)));
    return { p, results, done };
  };

  /** One PUT from the device through the load balancer to `node`: answered 2.01/2.04. */
  const put = async (path: string, payload: string, node: 1 | 2) => {
    const w = device({ mode: 'req', ops: [{ method: 'PUT', path, payload, node }] });
    assert.equal(await w.done, 0, w.p.out());
    assert.match(w.results()[0]?.code ?? '', /^2\.0[14]/, w.p.out());
  };

  const count = (p: Proc, re: RegExp) => (p.out().match(re) ?? []).length;

  before(async () => {
    cluster = new LbCluster();
    t = cluster.t;
    nodes = cluster.nodes;
    // A pg namespace behind lb; lb routes between it and the nodes.
    pgNs = `${t.ns.lb.slice(0, -2)}pg`;
    const v = `${pgNs.slice(0, -2)}4`;
    const ip = (args: string[]) => execFileSync('ip', args, { timeout: 10_000 });
    spawnSync('ip', ['netns', 'del', pgNs]);
    ip(['netns', 'add', pgNs]);
    ip(['-n', pgNs, 'link', 'set', 'lo', 'up']);
    vethPair(v, pgNs, PG_ADDR.pg, t.ns.lb, PG_ADDR.lb);
    ip(['-n', pgNs, 'route', 'add', 'default', 'via', PG_ADDR.lb]);
    ip(['-n', t.ns.node1, 'route', 'add', '10.15.4.0/24', 'via', t.addr.lbNode1]);
    ip(['-n', t.ns.node2, 'route', 'add', '10.15.4.0/24', 'via', t.addr.lbNode2]);
    const started = await startPostgres({
      netns: pgNs,
      host: PG_ADDR.pg,
      port: 5432, // a fixed port, but in a namespace of our own
      trustNetwork: '10.15.0.0/16',
    });
    if (typeof started === 'string') throw new Error(started);
    pg = started;

    await cluster.start({
      tmpPrefix: 'coapkit-lbpg-',
      nodeArgs: ['--identity', PSK.identity, '--psk', PSK.key, '--store', pg.url],
      startTimeoutMs: 60_000,
    });
  });

  after(() =>
    cluster?.stop(async () => {
      // PostgreSQL before its namespace: a server left in a deleted namespace would run on.
      await pg?.stop();
      if (pgNs !== undefined) spawnSync('ip', ['netns', 'del', pgNs], { timeout: 10_000 });
    }),
  );

  it('a PUT through the load balancer lands on node 1; another device port, hashed to node 2, reads it', async () => {
    const [n1, n2] = nodes as [Proc, Proc];
    const puts = count(n1, /PUT \/shared\/a/g);
    await put('/shared/a', 'written via node 1', 1);
    assert.equal(count(n1, /PUT \/shared\/a/g), puts + 1, 'node 1 handled the PUT');
    assert.equal(count(n2, /PUT \/shared\/a/g), 0, 'node 2 did not');
    // Node 2 learns of it through the store (LISTEN/NOTIFY): read until it does, bounded.
    const gets = count(n2, /GET \/shared\/a/g);
    const r = device({
      mode: 'req',
      fresh: false,
      ops: Array.from({ length: 20 }, () => ({ method: 'GET', path: '/shared/a', node: 2 })),
    });
    await until(
      () => r.results().some((x) => x.text === 'written via node 1') || r.p.child.exitCode !== null,
      'a GET through node 2 returns the value',
      60_000,
    );
    r.p.child.kill('SIGKILL');
    await r.done;
    assert.ok(
      r.results().some((x) => x.text === 'written via node 1'),
      `node 2 serves what node 1 stored: ${r.p.out()}`,
    );
    assert.ok(count(n2, /GET \/shared\/a/g) > gets, 'the GETs went to node 2');
    assert.equal(count(n1, /GET \/shared\/a/g), 0, 'and not to node 1');
  });

  it('an observer on node 1 is notified of a PUT made through node 2', async () => {
    const [n1, n2] = nodes as [Proc, Proc];
    await put('/shared/obs', 'v1', 1);
    const obs = device({ mode: 'observe', path: '/shared/obs', node: 1, count: 2 });
    await until(
      () => obs.results().some((x) => x.text === 'v1') || obs.p.child.exitCode !== null,
      'the observer on node 1 got the current value',
      30_000,
    );
    assert.ok(count(n1, /GET \/shared\/obs/g) >= 1, `registered on node 1: ${obs.p.out()}`);
    const putsOn2 = count(n2, /PUT \/shared\/obs/g);
    await put('/shared/obs', 'v2 via node 2', 2);
    assert.equal(count(n2, /PUT \/shared\/obs/g), putsOn2 + 1, 'the PUT went to node 2');
    await until(() => obs.p.child.exitCode !== null, 'the observer got its second notification', 30_000);
    assert.equal(obs.p.child.exitCode, 0, obs.p.out());
    assert.deepEqual(
      obs.results().map((x) => x.text),
      ['v1', 'v2 via node 2'],
    );
  });

  it('kill -9 of node 2 during a PUT loop through the load balancer: every acknowledged PUT is read back through node 1', async () => {
    const [n1, n2] = nodes as [Proc, Proc];
    const N = 30;
    const loop = device({
      mode: 'req',
      fresh: true, // a new source port per PUT, alternately hashed to node 1 and node 2
      timeoutMs: 8000,
      intervalMs: 200,
      ops: Array.from({ length: N }, (_, k) => ({
        method: 'PUT',
        path: `/loop/${k}`,
        payload: `write ${k}`,
        node: (k % 2) + 1,
      })),
    });
    const ackedOn2 = () =>
      loop.results().filter((x) => x.node === 2 && /^2\.0[14]/.test(x.code ?? '')).length;
    await until(
      () => ackedOn2() >= 3 || loop.p.child.exitCode !== null,
      'node 2 acknowledged three PUTs',
      60_000,
    );
    n2.child.kill('SIGKILL');
    await until(() => n2.child.exitCode !== null || n2.child.signalCode !== null, 'node 2 is gone', 10_000);
    const atKill = loop.results().length;
    const on2AtKill = count(n2, /PUT \/loop\//g);
    assert.ok(atKill < N - 4, `the kill came during the loop (after ${atKill} of ${N} PUTs)`);
    assert.equal(await loop.done, 0, loop.p.out());
    const results = loop.results();
    assert.equal(results.length, N, loop.p.out());
    const acked = results.filter((x) => /^2\.0[14]/.test(x.code ?? ''));
    const failed = results.filter((x) => x.error !== undefined);
    assert.ok(on2AtKill >= 3, 'node 2 handled PUTs before the kill');
    // The loop went on after the kill: later PUTs were acknowledged (by node 1, the survivor;
    // nginx moves a port hashed to the dead node on once it has failed there).
    const ackedAfter = acked.filter((x) => (x.i ?? 0) >= atKill).length;
    assert.ok(ackedAfter >= 1, `PUTs after the kill were acknowledged: ${loop.p.out()}`);
    const n1Puts = count(n1, /PUT \/loop\//g);
    const n1Ops = results.filter((x) => x.node === 1).length;
    // Every PUT aimed at node 1 reached it; those hashed to node 2 after the kill did too, or failed.
    assert.ok(n1Puts >= n1Ops, `node 1 handled ${n1Puts} PUTs, ${n1Ops} aimed at it`);
    console.log(
      `# kill -9 after ${atKill} of ${N} PUTs: ${acked.length} acknowledged (${ackedAfter} after the kill), ${failed.length} failed; node 1 handled ${n1Puts - n1Ops} PUTs hashed to node 2`,
    );
    // Every acknowledged write is there, read through the survivor.
    const gets = count(n1, /GET \/loop\//g);
    const read = device({
      mode: 'req',
      fresh: false,
      ops: acked.map((x) => ({ method: 'GET', path: x.path, node: 1 })),
    });
    assert.equal(await read.done, 0, read.p.out());
    const got = read.results();
    assert.deepEqual(
      got.map((x) => [x.path, x.text]),
      acked.map((x) => [x.path, `write ${x.path?.slice('/loop/'.length)}`]),
      `every acknowledged PUT is readable (${acked.length} acknowledged, ${failed.length} failed)`,
    );
    assert.equal(count(n1, /GET \/loop\//g), gets + acked.length, 'read through node 1');
  });
});
