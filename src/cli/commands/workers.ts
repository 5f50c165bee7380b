/**
 * coapkit serve --workers N: one supervisor process and N worker processes that
 * share the ports with SO_REUSEPORT (dgram `reusePort`, Node 22.12+). The kernel
 * spreads the peers over the workers by source address and port, so one peer's
 * datagrams reach one worker: its deduplication state, DTLS sessions and
 * observers stay in that worker. The supervisor starts the first worker with the
 * ports asked for, the others on the ports the first one bound (0 = any), starts
 * a new worker when one dies, and stops them all on SIGINT/SIGTERM.
 *
 * What each worker holds is its own: the dynamic store, observers and
 * block-wise transfers are per worker (documented limit; a shared store would
 * lift the first two).
 */

import { type ChildProcess, fork } from 'node:child_process';
import os from 'node:os';
import { UsageError } from '../../errors.js';
import { REUSE_PORT_NODE_VERSION, reusePortSupported } from '../../transport/udp.js';
import { ExitCode } from '../exit.js';
import { type Io, writeAll } from '../io.js';

/** Set to "1" in the environment of a worker process. */
export const WORKER_ENV = 'COAPKIT_SERVE_WORKER';
/** The key the supervisor made for --generate-psk (hex), so that every worker uses the same one. */
export const WORKER_KEY_ENV = 'COAPKIT_SERVE_WORKER_KEY';

/** Restarts allowed within RESTART_WINDOW_MS before the supervisor gives up (a crash loop). */
const MAX_RESTARTS = 10;
const RESTART_WINDOW_MS = 10_000;

/** What a worker tells the supervisor once it listens. */
export interface WorkerReady {
  type: 'coapkit-serve-ready';
  pid: number;
  /** The coap:// port bound (the first unicast listener). */
  port: number;
  /** The coaps:// port bound, when coaps:// runs. */
  securePort?: number;
}

/** True in a process started by the supervisor. */
export function isWorker(env: NodeJS.ProcessEnv): boolean {
  return env[WORKER_ENV] === '1';
}

/**
 * `--workers N|auto` as a number of processes (1 = no supervisor). `auto` is the
 * number of CPUs available, or 1 on a Node without `reusePort`; N > 1 there is a
 * UsageError naming the version needed.
 */
export function parseWorkers(
  value: string | undefined,
  nodeVersion: string = process.versions.node,
  cpus: () => number = () => os.availableParallelism(),
): number {
  if (value === undefined) return 1;
  if (value === 'auto') return reusePortSupported(nodeVersion) ? Math.max(1, cpus()) : 1;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 1 || n > 1024) {
    throw new UsageError(`--workers expects a number of processes (1-1024) or "auto", got "${value}"`);
  }
  if (n > 1 && !reusePortSupported(nodeVersion)) {
    throw new UsageError(
      `--workers ${n} needs Node ${REUSE_PORT_NODE_VERSION} or later (dgram reusePort); this is Node ${nodeVersion}`,
      { hint: 'run it with Node 22.12+ or 24, or without --workers (one process)' },
    );
  }
  return n;
}

/** The serve arguments without --workers (both "--workers N" and "--workers=N"). */
export function withoutWorkersFlag(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    if (a === '--workers') {
      i++;
      continue;
    }
    if (a.startsWith('--workers=')) continue;
    out.push(a);
  }
  return out;
}

/** In a worker: tells the supervisor the ports bound, and stops when the supervisor goes away. */
export function announceWorker(ready: Omit<WorkerReady, 'type' | 'pid'>, stop: () => void): void {
  if (typeof process.send !== 'function') return;
  const msg: WorkerReady = { type: 'coapkit-serve-ready', pid: process.pid, ...ready };
  process.send(msg);
  process.once('disconnect', stop);
}

export interface SupervisorOptions {
  /** The serve arguments, --workers removed. */
  args: string[];
  workers: number;
  /** The key --generate-psk made (hex), handed to every worker. */
  generatedKeyHex?: string;
  quiet: boolean;
  /** The script to run (default: this CLI, process.argv[1]). */
  script?: string;
}

/**
 * Runs the workers until SIGINT/SIGTERM; returns the exit status. A worker that
 * dies is replaced (at most MAX_RESTARTS in RESTART_WINDOW_MS); when the first
 * worker cannot start (a port in use...), its own error message has been
 * printed and its exit status is returned.
 */
export async function runSupervisor(opts: SupervisorOptions, io: Io): Promise<number> {
  const script = opts.script ?? process.argv[1];
  if (script === undefined) throw new UsageError('--workers: cannot tell which script to run');
  const env: NodeJS.ProcessEnv = { ...io.env, [WORKER_ENV]: '1' };
  if (opts.generatedKeyHex !== undefined) env[WORKER_KEY_ENV] = opts.generatedKeyHex;
  const workers = new Set<ChildProcess>();
  let stopping = false;
  let ports: { port: number; securePort?: number } | undefined;
  const restarts: number[] = [];
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    finish = resolve;
  });
  const log = (line: string) => writeAll(io.stderr, `coapkit serve: ${line}\n`).catch(() => {});

  const start = (): Promise<WorkerReady> => {
    const extra =
      ports === undefined
        ? []
        : [
            '--port',
            String(ports.port),
            ...(ports.securePort !== undefined ? ['--secure-port', String(ports.securePort)] : []),
            '--quiet',
          ];
    const child = fork(script, ['serve', ...opts.args, ...extra], {
      env,
      execArgv: process.execArgv,
      // Its own process group: a Ctrl-C reaches the supervisor, which stops the workers once.
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    workers.add(child);
    return new Promise<WorkerReady>((resolve, reject) => {
      let ready = false;
      child.on('message', (m: unknown) => {
        const r = m as WorkerReady;
        if (!ready && typeof r === 'object' && r !== null && r.type === 'coapkit-serve-ready') {
          ready = true;
          resolve(r);
        }
      });
      child.once('exit', (code, signal) => {
        workers.delete(child);
        if (!ready) {
          reject(Object.assign(new Error('worker ended before listening'), { exitCode: code ?? 1 }));
          return;
        }
        if (stopping) {
          if (workers.size === 0) finish(ExitCode.OK);
          return;
        }
        replace(child.pid, code, signal);
      });
    });
  };

  const replace = (pid: number | undefined, code: number | null, signal: NodeJS.Signals | null) => {
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && restarts[0]! < now - RESTART_WINDOW_MS) restarts.shift();
    const why = signal !== null ? signal : `exit ${code}`;
    if (restarts.length > MAX_RESTARTS) {
      void log(
        `worker ${pid} ended (${why}); ${MAX_RESTARTS} restarts in ${RESTART_WINDOW_MS / 1000} s, giving up`,
      );
      exitCode = ExitCode.INTERNAL;
      stopping = true;
      stopAll('SIGTERM');
      if (workers.size === 0) finish(exitCode);
      return;
    }
    start().then(
      (r) => log(`worker ${pid} ended (${why}); started worker ${r.pid}`),
      (err: Error) => {
        void log(`worker ${pid} ended (${why}); a new worker failed to start: ${err.message}`);
      },
    );
  };

  let exitCode: number = ExitCode.OK;
  const stopAll = (signal: NodeJS.Signals) => {
    for (const w of workers) {
      try {
        w.kill(signal);
      } catch {
        // already gone
      }
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal: stop now.
      stopAll('SIGKILL');
      finish(130);
      return;
    }
    stopping = true;
    if (!opts.quiet)
      void writeAll(io.stdout, `coapkit serve: ${signal}, stopping ${workers.size} workers\n`).catch(
        () => {},
      );
    stopAll('SIGTERM');
    if (workers.size === 0) finish(ExitCode.OK);
  };
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    let first: WorkerReady;
    try {
      first = await start();
    } catch (err) {
      return (err as { exitCode?: number }).exitCode ?? ExitCode.INTERNAL;
    }
    ports = { port: first.port, ...(first.securePort !== undefined ? { securePort: first.securePort } : {}) };
    const pids = [first.pid];
    for (let i = 1; i < opts.workers && !stopping; i++) {
      try {
        pids.push((await start()).pid);
      } catch (err) {
        stopping = true;
        stopAll('SIGTERM');
        await log(`worker ${i + 1} of ${opts.workers} failed to start: ${(err as Error).message}`);
        return (err as { exitCode?: number }).exitCode ?? ExitCode.INTERNAL;
      }
    }
    if (!opts.quiet && !stopping) {
      await writeAll(
        io.stdout,
        `Workers: ${pids.length} processes (pids ${pids.join(', ')}) share the ports (SO_REUSEPORT); each peer is served by one of them.\n` +
          '  Per worker: the stored resources, observers, block-wise transfers and DTLS sessions.\n',
      );
    }
    const code = await done;
    return exitCode !== ExitCode.OK ? exitCode : code;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    stopAll('SIGKILL');
  }
}
