#!/usr/bin/env node
/**
 * npm run cluster-demo (root): two `coapkit serve` nodes behind nginx's UDP
 * load balancer in network namespaces made here, a device behind a NAT that
 * rebinds, and what happens, printed as it happens (docs/cluster.md):
 *
 *   1. the device (DTLS Connection ID on) sends 12 requests; its NAT rebinds
 *      twice and nginx hashes each new address to the other node: the node
 *      that made the session keeps answering (forwarded), one handshake;
 *   2. the same without a Connection ID: the request after the rebinding gets
 *      no answer, the next one handshakes again;
 *   3. kill -9 of the node holding a device's session: it handshakes again
 *      with the other node.
 * Everything (namespaces, nginx, nodes) is removed at the end, also on Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTopology, type Topology } from '../test/helpers/netns.js';
import { lbClusterSkipReason, nginxConf } from '../test/helpers/netns-cluster.js';

const KEY = ['--identity', 'dev', '--psk', 'devkey'];
const say = (s: string) => process.stdout.write(`${s}\n`);

const why = lbClusterSkipReason();
if (why !== undefined) {
  say(`cluster-demo: ${why}`);
  process.exit(2);
}

const procs: ChildProcess[] = [];
let t: Topology | undefined;
let dir: string | undefined;
let nginx: ChildProcess | undefined;

async function cleanup(): Promise<void> {
  if (nginx !== undefined && nginx.exitCode === null) {
    const gone = new Promise((r) => nginx?.once('exit', r));
    nginx.kill('SIGTERM');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
  }
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  t?.destroy();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  void cleanup().then(() => process.exit(130));
});

function start(ns: string, cmd: string, args: string[], label: string, show: RegExp | null): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, COAPKIT_PSK: '', COAPKIT_PSK_IDENTITY: '' },
  });
  procs.push(child);
  const onData = (c: Buffer) => {
    for (const line of c.toString().split('\n'))
      if (line && (show === null || show.test(line))) say(label === '' ? line : `[${label}] ${line}`);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  return child;
}

function waitFor(child: ChildProcess, re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no ${re} within 30 s`)), 30_000);
    child.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      if (re.test(buf)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

async function device(
  topo: Topology,
  rebindAt: number[],
  cli: string[],
  firstNode?: number,
  onStart?: (child: ChildProcess) => void,
) {
  const child = start(
    topo.ns.dev,
    process.execPath,
    [
      '--import',
      'tsx',
      'test/helpers/cluster-device.ts',
      JSON.stringify({
        lb: { address: topo.addr.lbDev, port: 5684 },
        addresses: [topo.addr.dev, topo.addr.dev2],
        rebindAt,
        upstreams: [`${topo.addr.node1}:5684`, `${topo.addr.node2}:5684`],
        moveNodes: rebindAt.length > 0,
        firstNode,
        cli,
        live: true,
      }),
    ],
    '',
    /^\[device\]/,
  );
  onStart?.(child);
  let json = '';
  child.stdout?.on('data', (c: Buffer) => {
    json += c.toString();
  });
  await new Promise((r) => child.on('exit', r));
  const r = JSON.parse(json.trim().split('\n').at(-1) ?? '{}') as { clientHellos: number; code: number };
  say(
    `  -> exit ${r.code}; the device sent ${r.clientHellos} ClientHello(s) (a handshake sends 2: without and with the cookie)`,
  );
}

try {
  say('1. network namespaces: dev -- lb (nginx) -- node1, node2');
  t = createTopology();
  const topo = t;
  dir = mkdtempSync(join(tmpdir(), 'coapkit-demo-'));
  const conf = nginxConf(dir, topo);
  writeFileSync(join(dir, 'nginx.conf'), conf);
  say(`   nginx.conf:\n${conf.replace(/^/gm, '     ')}`);
  nginx = start(
    topo.ns.lb,
    'nginx',
    ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
    'nginx',
    null,
  );
  const node = (n: 1 | 2) => {
    const me = n === 1 ? topo.addr.node1 : topo.addr.node2;
    const other = n === 1 ? topo.addr.node2 : topo.addr.node1;
    const args = [
      'serve',
      '--host',
      me,
      '-v',
      ...KEY,
      // The demo's setup PUTs over plain coap:// (with keys, anonymous peers only read).
      '--anonymous-writes',
      '--node-id',
      String(n),
      '--cluster-listen',
      `${me}:7000`,
      '--peer',
      `${3 - n}=${other}:7000`,
      // Behind nginx every device has nginx's address: only the global handshake bounds.
      '--handshake-rate',
      'off',
    ];
    say(`2. node${n}: coapkit ${args.join(' ')}`);
    return start(
      n === 1 ? topo.ns.node1 : topo.ns.node2,
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      `node${n}`,
      /GET|PUT|Cluster/,
    );
  };
  const n1 = node(1);
  const n2 = node(2);
  await Promise.all([waitFor(n1, /Stop with Ctrl-C/), waitFor(n2, /Stop with Ctrl-C/)]);
  for (const n of [1, 2] as const) {
    topo.exec(topo.ns.lb, process.execPath, [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'put',
      `coap://${n === 1 ? topo.addr.node1 : topo.addr.node2}/state`,
      '-p',
      `node${n};`,
    ]);
  }
  say('\n3. a device with a DTLS Connection ID: 12 requests, its NAT rebinds before the 5th and the 9th');
  await device(
    topo,
    [5, 9],
    [
      'get',
      'coaps://127.0.0.1:RELAY/state',
      '--cid',
      '--repeat',
      '12',
      '--interval',
      '200',
      ...KEY,
      '-B',
      '20',
    ],
  );
  say('\n4. the same device without a Connection ID: rebinding before the 3rd of 5 requests');
  await device(
    topo,
    [3],
    ['get', 'coaps://127.0.0.1:RELAY/state', '--repeat', '5', '--interval', '200', ...KEY, '-B', '3'],
  );
  say('\n5. a device on node2; node2 is killed (kill -9) after its third answer');
  await device(
    topo,
    [],
    [
      'get',
      'coaps://127.0.0.1:RELAY/state',
      '--cid',
      '--repeat',
      '12',
      '--interval',
      '300',
      ...KEY,
      '-B',
      '3',
    ],
    2,
    (child) => {
      let answers = 0;
      child.stderr?.on('data', (c: Buffer) => {
        answers += (c.toString().match(/answer: node2/g) ?? []).length;
        if (answers >= 3 && n2.exitCode === null && n2.signalCode === null) {
          say('[demo] kill -9 node2');
          n2.kill('SIGKILL');
        }
      });
    },
  );
  say('\ndone: removing namespaces, nginx and nodes');
} catch (e) {
  say(`cluster-demo failed: ${(e as Error).message}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
