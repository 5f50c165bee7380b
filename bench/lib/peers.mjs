// The servers under test. Each is started as a fresh child process for each measurement phase.
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { childPids, freeUdpPort, sleep, stop, track, which } from './proc.mjs';

/**
 * @typedef {object} PeerDef
 * @property {string} id
 * @property {string} label
 * @property {'node' | 'libcoap' | 'cli'} kind  a Node script, libcoap's server, or `coapkit serve`
 * @property {string} path  CoAP resource the load generator requests
 * @property {{ method: 'get' | 'post' | 'put', payload?: string, contentFormat?: number }} [request]
 *   the request the load generator sends (default: GET)
 * @property {string[]} [args]  extra arguments (`coapkit serve` flags)
 * @property {{ method: 'put', path: string, payload: string }} [setup]  one request sent before the load
 * @property {string[]} [scenarios]  throughput scenarios run on this peer (default: all)
 * @property {boolean} [memory]  false: no sustained/paced memory runs
 * @property {boolean} [quick]  false: left out of --quick runs unless named with --only
 * @property {boolean} [reusePort]  needs a Node with dgram reusePort (22.12+): this one, else
 *   COAPKIT_NODE24
 * @property {string} [script]
 * @property {boolean} [noProbe]  not plain CoAP (DTLS): readiness comes from the IPC message only
 */

/** A Node binary whose dgram sockets take reusePort: this one (22.12+, 23.1+), else COAPKIT_NODE24. */
export function reusePortNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12)) return process.execPath;
  const n24 = process.env.COAPKIT_NODE24;
  return n24 && existsSync(n24) ? n24 : undefined;
}

/** The seed's request body: a ~60-byte JSON log line (Content-Format 50, application/json). */
export const LOG_LINE = '{"ts":1733500000,"level":"info","dev":"sensor-17","t":21.5}';

/** @param {string} benchDir */
export function peerDefs(benchDir) {
  return [
    {
      id: 'bare',
      label: 'bare Node UDP',
      kind: 'node',
      path: '/hello',
      script: join(benchDir, 'peers/bare-udp.mjs'),
    },
    {
      id: 'coapkit',
      label: 'coapkit',
      kind: 'node',
      path: '/hello',
      script: join(benchDir, 'peers/coapkit.mjs'),
    },
    {
      id: 'handler',
      quick: false,
      label: 'coapkit library, observe + block-wise: GET /hello',
      kind: 'node',
      path: '/hello',
      script: join(benchDir, 'peers/coapkit-handlers.mjs'),
      scenarios: ['c64_con'],
      memory: false,
    },
    {
      id: 'handler-post',
      label: 'coapkit library handler: POST /logs',
      kind: 'node',
      path: '/logs',
      request: { method: 'post', payload: LOG_LINE, contentFormat: 50 },
      script: join(benchDir, 'peers/coapkit-handlers.mjs'),
      scenarios: ['c64_con'],
      memory: false,
    },
    {
      id: 'serve',
      label: 'coapkit serve: GET /hello (stored)',
      kind: 'cli',
      path: '/hello',
      setup: { method: 'put', path: '/hello', payload: 'world' },
      scenarios: ['c64_con'],
      memory: false,
    },
    {
      id: 'serve-put',
      quick: false,
      label: 'coapkit serve: PUT /hello',
      kind: 'cli',
      path: '/hello',
      request: { method: 'put', payload: 'world' },
      scenarios: ['c64_con'],
      memory: false,
    },
    {
      // The store's answer to POST /logs: 2.01 Created, a new resource /logs/N per request (what
      // `coapkit serve` does with a log line). Its limits are raised so that no request of the run
      // meets the 5.03 "limit reached" (the non-2.xx count in the JSON shows it).
      id: 'serve-post',
      quick: false,
      label: 'coapkit serve: POST /logs (store, 2.01)',
      kind: 'cli',
      path: '/logs',
      request: { method: 'post', payload: LOG_LINE, contentFormat: 50 },
      args: ['--max-resources', '100000000', '--max-store-bytes', String(64 * 1024 * 1024 * 1024)],
      scenarios: ['c64_con'],
      memory: false,
    },
    // --workers 1 and 2 on the same Node (one with reusePort), GET /time (built in: every worker
    // has it, the stored resources are per worker; its answer stays within the amplification
    // limit, which would challenge a larger one with 4.01 Echo). CPU: supervisor plus workers.
    {
      id: 'serve-w1',
      quick: false,
      label: 'coapkit serve --workers 1: GET /time',
      kind: 'cli',
      path: '/time',
      args: ['--workers', '1'],
      reusePort: true,
      scenarios: ['c64_con'],
      memory: false,
    },
    {
      id: 'serve-w2',
      quick: false,
      label: 'coapkit serve --workers 2: GET /time',
      kind: 'cli',
      path: '/time',
      args: ['--workers', '2'],
      reusePort: true,
      scenarios: ['c64_con'],
      memory: false,
    },
    { id: 'libcoap', label: 'libcoap coap-server-notls', kind: 'libcoap', path: '/time' },
    {
      id: 'node-coap',
      label: 'node-coap',
      kind: 'node',
      path: '/hello',
      script: join(benchDir, 'peers/node-coap.mjs'),
    },
  ];
}

/**
 * Whether a peer can run here; returns null when available, else the reason it is skipped.
 * @param {PeerDef} peer @param {{ root: string, full: boolean, log: (s: string) => void }} ctx
 */
export async function unavailable(peer, ctx) {
  if (peer.reusePort && reusePortNode() === undefined) {
    return `needs Node 22.12+ (dgram reusePort): this is Node ${process.versions.node}; set COAPKIT_NODE24 to a Node 24 binary`;
  }
  if (peer.id === 'coapkit' || peer.id.startsWith('handler') || peer.kind === 'cli') {
    const dist = join(ctx.root, 'dist/index.js');
    if (!existsSync(dist)) return 'not built yet (no dist/index.js: run npm run build)';
    try {
      const mod = await import(dist);
      if (typeof mod.CoapServer !== 'function') return 'not built yet (dist/index.js has no CoapServer)';
    } catch (e) {
      return `not built yet (dist/index.js failed to load: ${e instanceof Error ? e.message : e})`;
    }
    return null;
  }
  if (peer.id === 'node-coap') {
    try {
      createRequire(join(ctx.root, 'package.json')).resolve('coap');
      return null;
    } catch {
      return 'npm package coap not installed (npm install)';
    }
  }
  if (peer.id === 'libcoap') {
    if (which('coap-server-notls')) return null;
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    if (!isRoot || !ctx.full || !which('apt-get')) {
      return 'coap-server-notls not installed (apt-get install libcoap3-bin)';
    }
    ctx.log('installing libcoap3-bin (apt-get)...');
    const { spawnSync } = await import('node:child_process');
    let r = spawnSync('apt-get', ['install', '-y', 'libcoap3-bin'], { stdio: 'ignore', timeout: 180_000 });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'ignore', timeout: 180_000 });
      r = spawnSync('apt-get', ['install', '-y', 'libcoap3-bin'], { stdio: 'ignore', timeout: 180_000 });
    }
    return which('coap-server-notls') ? null : 'coap-server-notls not installed and apt-get install failed';
  }
  return null;
}

/**
 * Sends a CON request (GET unless said otherwise) until one is answered; rejects after timeoutMs.
 * Paths of segments shorter than 13 bytes only.
 */
export function probe(port, path, timeoutMs = 8000, method = 1, payload = '') {
  const segs = path.split('/').filter(Boolean);
  const parts = [Buffer.from([0x41, method, 0x12, 0x34, 0x77])];
  let last = 0;
  for (const s of segs) {
    const v = Buffer.from(s);
    parts.push(Buffer.from([((11 - last) << 4) | v.length]), v);
    last = 11;
  }
  if (payload !== '') parts.push(Buffer.from([0xff]), Buffer.from(payload));
  const req = Buffer.concat(parts);
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const done = (err) => {
      clearInterval(iv);
      clearTimeout(to);
      sock.close();
      if (err) reject(err);
      else resolve();
    };
    sock.on('message', () => done());
    sock.on('error', () => {});
    const iv = setInterval(() => sock.send(req, port, '127.0.0.1'), 100);
    const to = setTimeout(
      () => done(new Error(`no answer on port ${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.send(req, port, '127.0.0.1');
  });
}

/**
 * Starts a peer as a child process and waits until it answers.
 * @param {PeerDef} peer @param {{ pinCpu: string | null, maxOldSpaceMb: number, root: string }} opts
 */
export async function startPeer(peer, opts) {
  const port = await freeUdpPort();
  let cmd;
  let args;
  if (peer.kind === 'cli') {
    // What `npm start` runs, minus the PSK: `coapkit serve`, quiet, on loopback.
    cmd = peer.reusePort ? (reusePortNode() ?? process.execPath) : process.execPath;
    args = [
      `--max-old-space-size=${opts.maxOldSpaceMb}`,
      join(opts.root, 'dist/cli/main.js'),
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--quiet',
      ...(peer.args ?? []),
    ];
  } else if (peer.kind === 'node') {
    cmd = process.execPath;
    args = [
      '--expose-gc',
      `--max-old-space-size=${opts.maxOldSpaceMb}`,
      peer.script ?? '',
      '--port',
      String(port),
    ];
  } else {
    cmd = 'coap-server-notls';
    args = ['-A', '127.0.0.1', '-p', String(port), '-v', '0'];
  }
  if (opts.pinCpu !== null) {
    args = ['-c', opts.pinCpu, cmd, ...args];
    cmd = 'taskset';
  }
  const child = track(cmd, args, {
    stdio: peer.kind === 'node' ? ['ignore', 'ignore', 'pipe', 'ipc'] : ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise((_, reject) =>
    child.once('exit', (code, sig) =>
      reject(new Error(`${peer.id} exited early (${code ?? sig}): ${stderr.trim().slice(-1500)}`)),
    ),
  );
  exited.catch(() => {});
  if (peer.kind === 'node') {
    const ready = new Promise((resolve) => {
      child.on('message', (m) => {
        if (m && typeof m === 'object' && m.ready) resolve(m);
      });
    });
    await Promise.race([
      ready,
      exited,
      sleep(20_000).then(() => Promise.reject(new Error(`${peer.id}: not ready`))),
    ]);
  }
  if (!peer.noProbe) await Promise.race([probe(port, peer.path), exited]);
  const wi = (peer.args ?? []).indexOf('--workers');
  const workers = wi >= 0 ? Number(peer.args?.[wi + 1]) : 1;
  if (workers > 1) {
    // Every worker listens before the load starts (the kernel spreads peers over the sockets
    // bound at the time). A worker announces itself once it listens: wait for N children.
    const deadline = Date.now() + 20_000;
    while (childPids(child.pid ?? 0).length < workers && Date.now() < deadline) await sleep(100);
    await sleep(1000);
  }
  if (peer.setup) await Promise.race([probe(port, peer.setup.path, 8000, 3, peer.setup.payload), exited]);

  /** Memory as the process sees it (Node peers, after forced GC) or RSS only (libcoap). */
  const memory = async (gc = true) => {
    if (peer.kind !== 'node' || !child.connected) return null;
    const reply = new Promise((resolve) => {
      const on = (m) => {
        if (m && typeof m === 'object' && m.mem) {
          child.off('message', on);
          resolve(m);
        }
      };
      child.on('message', on);
    });
    child.send({ cmd: 'mem', gc });
    return Promise.race([reply, sleep(60_000).then(() => null), exited.catch(() => null)]);
  };
  return {
    pid: /** @type {number} */ (child.pid),
    port,
    child,
    memory,
    alive: () => child.exitCode === null && child.signalCode === null,
    stderr: () => stderr,
    stop: () => stop(child),
  };
}
