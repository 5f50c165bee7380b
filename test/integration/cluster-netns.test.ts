/**
 * Two `coapkit serve` nodes behind nginx's UDP load balancer (stream module,
 * `hash $remote_addr$remote_port consistent`), in network namespaces this
 * test makes (root; skipped with the reason otherwise):
 *
 *   dev (device + NAT relay) ── lb (nginx) ── node1, node2 (coaps, cluster)
 *
 * - With a Connection ID, a device rebinds three times (the last time to a new
 *   address) during 100 requests, each new address hashed to the other node:
 *   every request is answered by the node that made the session, one handshake.
 * - Without one, the request after the rebinding goes unanswered; the next
 *   one handshakes again.
 * - kill -9 of the node that holds a device's session: the device handshakes
 *   again and goes on with the other node.
 * Resources are per node here, so each answer tells which node answered; the
 * shared PostgreSQL store through the same topology is cluster-netns-store.test.ts.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import type { Topology } from '../helpers/netns.js';
import { LbCluster, lbClusterSkipReason } from '../helpers/netns-cluster.js';
import { until } from '../helpers/timing.js';
import { hasTshark, tsharkRows } from '../helpers/tshark.js';
import { ROOT } from './cli-helpers.js';

const skip = lbClusterSkipReason();

const KEY = ['--identity', 'dev', '--psk', 'devkey'];

describe('a cluster behind nginx in network namespaces', { skip }, () => {
  let cluster: LbCluster;
  let t: Topology;
  let dir: string;
  let nodes: LbCluster['nodes'];

  /** Runs the device script in dev; its JSON result. */
  const device = async (o: {
    rebindAt: number[];
    moveNodes: boolean;
    firstNode?: number;
    cli: string[];
    onStart?: () => Promise<void>;
    env?: NodeJS.ProcessEnv;
  }) => {
    const p = cluster.spawn(
      t.ns.dev,
      process.execPath,
      [
        '--import',
        'tsx',
        'test/helpers/cluster-device.ts',
        JSON.stringify({
          lb: { address: t.addr.lbDev, port: 5684 },
          addresses: [t.addr.dev, t.addr.dev2],
          rebindAt: o.rebindAt,
          upstreams: [`${t.addr.node1}:5684`, `${t.addr.node2}:5684`],
          moveNodes: o.moveNodes,
          firstNode: o.firstNode,
          cli: o.cli,
        }),
      ],
      o.env,
    );
    await o.onStart?.();
    const code = await new Promise<number | null>((r) => p.child.on('exit', (c) => r(c)));
    assert.equal(code, 0, p.out());
    const line = p.out().trim().split('\n').at(-1)!;
    return JSON.parse(line) as {
      code: number;
      out: string;
      stderr: string;
      clientHellos: number;
      handshakes: number;
      outside: [string, number][];
      nodes: number[];
    };
  };

  const put = (n: 1 | 2, value: string) =>
    t.exec(t.ns.lb, process.execPath, [
      '--import',
      'tsx',
      join(ROOT, 'src/cli/main.ts'),
      'put',
      `coap://${n === 1 ? t.addr.node1 : t.addr.node2}/state`,
      '-p',
      value,
    ]);

  before(async () => {
    cluster = new LbCluster();
    t = cluster.t;
    nodes = cluster.nodes;
    await cluster.start({
      tmpPrefix: 'coapkit-lb-',
      nodeArgs: [
        ...KEY,
        '--anonymous-writes', // the test's setup PUTs over plain coap://
      ],
      startTimeoutMs: 30_000,
    });
    dir = cluster.dir;
    // No shared store here: each node answers with its own name.
    put(1, 'n1;');
    put(2, 'n2;');
  });

  after(() => cluster?.stop());

  it('with --cid: 100 requests, three rebindings onto the other node, all answered by the session owner, one handshake', async () => {
    // A capture on the load balancer's device side, with the client's key log, for tshark.
    const cap = join(dir, 'dev-side.pcapng');
    const keys = join(dir, 'keys.log');
    const shark = hasTshark
      ? cluster.spawn(t.ns.lb, 'tshark', ['-i', `${t.ifDevLb}`, '-w', cap, '-f', 'udp port 5684'])
      : undefined;
    if (shark !== undefined) {
      await until(() => /Capturing on/.test(shark.out()), 'tshark is capturing', 20_000);
    }
    const r = await device({
      env: { SSLKEYLOGFILE: keys },
      rebindAt: [25, 50, 75],
      moveNodes: true,
      cli: ['get', 'coaps://127.0.0.1:RELAY/state', '--cid', '--repeat', '100', ...KEY, '-B', '20'],
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.handshakes, 1, 'one handshake');
    // The device's four addresses were hashed to alternating nodes.
    assert.equal(r.nodes.length, 4);
    assert.deepEqual(
      r.nodes.slice(1),
      r.nodes.slice(1).map((_, i) => (i % 2 === 0 ? 3 - r.nodes[0]! : r.nodes[0]!)),
    );
    assert.equal(r.outside.at(-1)?.[0], t.addr.dev2, 'the last rebinding also changed the address');
    const owner = r.nodes[0]!;
    assert.equal(r.out, `n${owner};`.repeat(100), 'every request answered by the node holding the session');
    // The owner saw the device through both sides of the load balancer (directly and forwarded).
    const log = nodes[owner - 1]!.out();
    assert.match(log, /10\.15\.2\.1/);
    assert.match(log, /10\.15\.3\.1/);
    if (shark !== undefined) {
      // dumpcap writes in batches: wait (bounded) until the 100 responses are in the file.
      const written = () =>
        spawnSync('tshark', ['-r', cap, '-Y', 'udp.srcport == 5684 && dtls.record.epoch == 1'], {
          timeout: 30_000,
        })
          .stdout?.toString()
          .split('\n')
          .filter((l) => l.trim() !== '').length ?? 0;
      const deadline = performance.now() + 20_000;
      while (written() < 100 && performance.now() < deadline)
        await new Promise((res) => setTimeout(res, 200));
      const gone = new Promise((res) => shark.child.once('exit', res));
      shark.child.kill('SIGINT');
      await gone;
      const rows = await tsharkRows(
        cap,
        ['dtls.handshake.type', 'dtls.record.connection_id', 'coap.code', '_ws.malformed'],
        { keylog: keys, dtlsPort: 5684 },
      );
      const hellos = rows.filter((x) => (x[0] ?? '').split(',').includes('1')).length;
      assert.equal(
        hellos,
        2,
        `the capture shows one handshake (ClientHello without and with cookie); ${rows.length} frames; tshark said: ${shark.out().slice(-600)}`,
      );
      assert.ok(
        rows.every((x) => (x[3] ?? '') === ''),
        'no frame malformed',
      );
      // Every device datagram after the handshake carries the server's CID (tshark shows it).
      const cidFrames = rows.filter((x) => (x[1] ?? '') !== '').length;
      assert.ok(cidFrames >= 100, `frames with a connection ID: ${cidFrames}`);
      // tshark decrypts them with the key log, across the rebindings: every request and response.
      const coap = rows.filter((x) => (x[2] ?? '') !== '').length;
      assert.equal(coap, 200, `CoAP messages tshark decrypted: ${coap}`);
    }
  });

  it('without --cid: the request after a rebinding goes unanswered; the next one handshakes again', async () => {
    const r = await device({
      rebindAt: [3],
      moveNodes: false,
      cli: ['get', 'coaps://127.0.0.1:RELAY/state', '--repeat', '5', ...KEY, '-B', '3'],
    });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /request 3\/5: no response/);
    assert.match(r.stderr, /DTLS session dropped: the next request handshakes again/);
    assert.equal(r.handshakes, 2, 'two handshakes');
    assert.equal(r.out.length, 4 * 3, 'four of five answered');
  });

  it('kill -9 of the node holding the session: the device handshakes again and goes on with the other node', async () => {
    const victim = nodes[1]!;
    const before = (victim.out().match(/GET \/state/g) ?? []).length;
    const r = await device({
      rebindAt: [],
      moveNodes: false,
      firstNode: 2,
      cli: [
        'get',
        'coaps://127.0.0.1:RELAY/state',
        '--cid',
        '--repeat',
        '30',
        '--interval',
        '100',
        ...KEY,
        '-B',
        '3',
      ],
      onStart: async () => {
        await until(
          () => (victim.out().match(/GET \/state/g) ?? []).length >= before + 5,
          'node 2 answered five requests of the device',
          30_000,
        );
        victim.child.kill('SIGKILL');
      },
    });
    assert.equal(r.nodes[0], 2);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /DTLS session dropped: the next request handshakes again/);
    assert.equal(r.handshakes, 2, 'a second handshake');
    assert.ok(r.out.startsWith('n2;'), r.out);
    assert.ok(r.out.endsWith('n1;'), r.out);
  });
});
