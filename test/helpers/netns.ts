/**
 * Network namespaces made by a test (root only): a load balancer namespace
 * `lb` joined by veth pairs to `dev` (devices), `node1` and `node2`; lb routes
 * between them (node1 and node2 reach each other through it: their private
 * node-to-node network). Names carry the test's pid so parallel runs do not
 * meet; `destroy()` removes everything (deleting a namespace deletes its
 * veths) and is safe to call twice.
 *
 *   dev 10.15.1.2 (+ .3) ── 10.15.1.1  lb  10.15.2.1 ── 10.15.2.2 node1
 *                                          10.15.3.1 ── 10.15.3.2 node2
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { findProgram } from './proc.js';

export interface Topology {
  ns: { lb: string; dev: string; node1: string; node2: string };
  addr: {
    lbDev: string;
    dev: string;
    dev2: string;
    lbNode1: string;
    node1: string;
    lbNode2: string;
    node2: string;
  };
  /** lb's interface towards dev (for captures). */
  ifDevLb: string;
  /** Runs `cmd args` in namespace `ns` (synchronously), returns stdout. */
  exec(ns: string, cmd: string, args: string[]): string;
  destroy(): void;
}

/** Why namespace tests cannot run here, or undefined when they can. */
export function netnsSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns add)';
  if (findProgram('ip') === undefined) return 'needs iproute2 (ip)';
  const r = spawnSync('ip', ['netns', 'list'], { timeout: 10_000 });
  if (r.status !== 0) return `ip netns does not work here: ${r.stderr?.toString().trim()}`;
  return undefined;
}

const ip = (args: string[]) =>
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });

/**
 * A veth pair `${name}a` in namespace `a` (address `aAddr`/24) and `${name}b` in
 * `b` (`bAddr`/24), both up.
 */
export function vethPair(name: string, a: string, aAddr: string, b: string, bAddr: string): void {
  ip(['link', 'add', `${name}a`, 'netns', a, 'type', 'veth', 'peer', 'name', `${name}b`, 'netns', b]);
  ip(['-n', a, 'addr', 'add', `${aAddr}/24`, 'dev', `${name}a`]);
  ip(['-n', b, 'addr', 'add', `${bAddr}/24`, 'dev', `${name}b`]);
  ip(['-n', a, 'link', 'set', `${name}a`, 'up']);
  ip(['-n', b, 'link', 'set', `${name}b`, 'up']);
}

export function createTopology(): Topology {
  const p = `ck${process.pid % 100000}`;
  const ns = { lb: `${p}lb`, dev: `${p}dev`, node1: `${p}n1`, node2: `${p}n2` };
  const addr = {
    lbDev: '10.15.1.1',
    dev: '10.15.1.2',
    dev2: '10.15.1.3',
    lbNode1: '10.15.2.1',
    node1: '10.15.2.2',
    lbNode2: '10.15.3.1',
    node2: '10.15.3.2',
  };
  const destroy = () => {
    for (const n of Object.values(ns)) spawnSync('ip', ['netns', 'del', n], { timeout: 10_000 });
  };
  destroy(); // leftovers of a killed run with the same pid
  try {
    for (const n of Object.values(ns)) {
      ip(['netns', 'add', n]);
      ip(['-n', n, 'link', 'set', 'lo', 'up']);
    }
    vethPair(`${p}d`, ns.dev, addr.dev, ns.lb, addr.lbDev);
    ip(['-n', ns.dev, 'addr', 'add', `${addr.dev2}/24`, 'dev', `${p}da`]);
    vethPair(`${p}1`, ns.node1, addr.node1, ns.lb, addr.lbNode1);
    vethPair(`${p}2`, ns.node2, addr.node2, ns.lb, addr.lbNode2);
    // lb forwards between node1 and node2 (their node-to-node traffic), not for dev.
    execFileSync('ip', ['netns', 'exec', ns.lb, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    ip(['-n', ns.node1, 'route', 'add', '10.15.3.0/24', 'via', addr.lbNode1]);
    ip(['-n', ns.node2, 'route', 'add', '10.15.2.0/24', 'via', addr.lbNode2]);
  } catch (e) {
    destroy();
    throw e;
  }
  return {
    ns,
    addr,
    ifDevLb: `${p}db`,
    exec: (n, cmd, args) =>
      execFileSync('ip', ['netns', 'exec', n, cmd, ...args], { timeout: 30_000 }).toString(),
    destroy,
  };
}
