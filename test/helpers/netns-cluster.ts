/**
 * Two `coapkit serve` nodes (coaps, cluster) behind nginx's UDP load balancer
 * (stream module, `hash $remote_addr$remote_port consistent`), in the network
 * namespaces of netns.ts (root; `lbClusterSkipReason()` says why not):
 *
 *   dev ── lb (nginx, 10.15.1.1:5684) ── node1, node2 (serve on :5684, cluster on :7000)
 *
 * Used by cluster-netns.test.ts and cluster-netns-store.test.ts. Every process
 * started through `spawn` (nginx and the nodes too) is killed by `stop()`, which
 * also removes the namespaces and the temporary folder.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTopology, netnsSkipReason, type Topology } from './netns.js';
import { findProgram } from './proc.js';
import { until } from './timing.js';

/** The checkout's root: the working folder of every process started here. */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

/** Why the load-balanced cluster cannot run here, or undefined when it can. */
export function lbClusterSkipReason(): string | undefined {
  return (
    netnsSkipReason() ??
    (findProgram('nginx') === undefined
      ? 'nginx is not installed'
      : existsSync(STREAM_MODULE)
        ? undefined
        : `nginx stream module missing (${STREAM_MODULE}: libnginx-mod-stream)`)
  );
}

/** A process in a namespace, with its stdout and stderr collected together. */
export interface NsProc {
  child: ChildProcess;
  out: () => string;
}

/** `ip netns exec NS CMD ARGS` from the checkout's root, with no PSK from the environment. */
function spawnIn(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): NsProc {
  const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, COAPKIT_PSK: '', COAPKIT_PSK_IDENTITY: '', ...env },
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  return { child, out: () => out };
}

/** nginx's configuration: lb's device side balanced over both nodes' coaps port. */
export function nginxConf(dir: string, t: Topology): string {
  return `load_module ${STREAM_MODULE};
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 1024; }
stream {
  upstream coaps {
    # One device (address and port) sticks to one node; a NAT rebinding may move it.
    hash $remote_addr$remote_port consistent;
    server ${t.addr.node1}:5684 max_fails=1 fail_timeout=30s;
    server ${t.addr.node2}:5684 max_fails=1 fail_timeout=30s;
  }
  server {
    listen ${t.addr.lbDev}:5684 udp;
    proxy_pass coaps;
    # CoAP over DTLS: a datagram may get no answer (NON, lost), one, or several
    # (an ACK then a separate response, notifications, a handshake flight), so the
    # number of responses is not limited (no proxy_responses); the session (and
    # its upstream socket) lives while the device talks, then expires.
    proxy_timeout 120s;
  }
}
`;
}

/**
 * The namespaces (made by the constructor), then `start()`: nginx and the two
 * nodes. `stop()` is safe whatever `start()` got to.
 */
export class LbCluster {
  readonly t: Topology = createTopology();
  /** Every process started through `spawn`, killed by `stop()`. */
  readonly procs: NsProc[] = [];
  /** node1 and node2, once started. */
  readonly nodes: NsProc[] = [];
  /** The temporary folder (nginx's configuration and logs; captures), once started. */
  dir = '';
  nginx: NsProc | undefined;

  /** `spawnIn`, the process to be killed by `stop()`. */
  spawn(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): NsProc {
    const p = spawnIn(ns, cmd, args, env);
    this.procs.push(p);
    return p;
  }

  /**
   * Starts nginx in lb and `coapkit serve` (from src/, through tsx) in node1 and
   * node2 with `-v`, `nodeArgs` and the cluster flags (`--node-id`,
   * `--cluster-listen`, `--peer`); waits until both nodes print their banner.
   */
  async start(o: { tmpPrefix: string; nodeArgs: string[]; startTimeoutMs: number }): Promise<void> {
    const t = this.t;
    this.dir = mkdtempSync(join(tmpdir(), o.tmpPrefix));
    writeFileSync(join(this.dir, 'nginx.conf'), nginxConf(this.dir, t));
    this.nginx = this.spawn(t.ns.lb, 'nginx', [
      '-p',
      this.dir,
      '-c',
      join(this.dir, 'nginx.conf'),
      '-g',
      'daemon off;',
    ]);
    const node = (n: 1 | 2): NsProc => {
      const me = n === 1 ? t.addr.node1 : t.addr.node2;
      const other = n === 1 ? t.addr.node2 : t.addr.node1;
      return this.spawn(n === 1 ? t.ns.node1 : t.ns.node2, process.execPath, [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'serve',
        '--host',
        me,
        '-v',
        ...o.nodeArgs,
        '--node-id',
        String(n),
        '--cluster-listen',
        `${me}:7000`,
        '--peer',
        `${3 - n}=${other}:7000`,
        // Behind nginx every device has nginx's address: only the global handshake bounds.
        '--handshake-rate',
        'off',
      ]);
    };
    this.nodes.push(node(1), node(2));
    await until(
      () => this.nodes.every((p) => /Stop with Ctrl-C/.test(p.out())),
      'both nodes started',
      o.startTimeoutMs,
    );
  }

  /**
   * Stops nginx (SIGTERM to the master, which stops its worker: SIGKILL would
   * leave the worker behind), kills every other process, runs `beforeTeardown`
   * (what the test put in the namespaces besides), then removes the namespaces
   * and the temporary folder.
   */
  async stop(beforeTeardown?: () => Promise<void>): Promise<void> {
    const nginx = this.nginx;
    if (nginx !== undefined && nginx.child.exitCode === null) {
      const gone = new Promise((r) => nginx.child.once('exit', r));
      nginx.child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    }
    for (const p of this.procs) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      p.child.stdout?.destroy();
      p.child.stderr?.destroy();
    }
    await beforeTeardown?.();
    this.t.destroy();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
