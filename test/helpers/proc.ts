/**
 * Process and concurrency helpers: running a program with a hard timeout, memory of a
 * child, bounded pools.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { sleep } from './timing.js';

/**
 * Resident set size (VmRSS in /proc/PID/status, Linux) of a process, in kB. For 'self'
 * without /proc, process.memoryUsage().rss.
 */
export function rssKb(pid: number | 'self'): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (e) {
    if (pid === 'self') return process.memoryUsage().rss / 1024;
    throw e;
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Resident set size of a process, in MiB. */
export function rssMiB(pid: number | 'self'): number {
  return rssKb(pid) / 1024;
}

/**
 * Waits until the RSS of `pid` is at most `limitMiB` or `ms` have passed (memory the
 * allocator gives back takes a moment); returns the last reading in MiB.
 */
export async function settleRss(pid: number, limitMiB: number, ms = 10_000): Promise<number> {
  let rss = rssMiB(pid);
  const end = performance.now() + ms;
  while (rss > limitMiB && performance.now() < end) {
    await sleep(250);
    rss = rssMiB(pid);
  }
  return rss;
}

/** Runs `job(0)`..`job(count - 1)` with at most `width` in flight. */
export async function pool(count: number, width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) await job(next++);
    }),
  );
}

/** global.gc, also when node runs without --expose-gc. */
export function gcFunction(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

export interface ProcessRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout decoded with `encoding`. */
  stdout: string;
  /** stdout as bytes. */
  bytes: Buffer;
  stderr: string;
  /** Wall time from spawn to exit. */
  ms: number;
}

export interface RunProcessOptions {
  cwd?: string;
  /** The child's whole environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, then closed (default: stdin ignored). */
  input?: string | Buffer;
  /** Killed with SIGKILL and rejected after this long (default 20 s): it must exit by itself. */
  timeoutMs?: number;
  /** How stdout and stderr are decoded (default utf8). */
  encoding?: BufferEncoding;
  /** Names the run in the timeout error (default: the command line). */
  name?: string;
}

/**
 * Runs a program to completion with a hard timeout (nothing outlives the test) and
 * collects its output. Every test that spawns coapkit, an example or a peer tool
 * goes through here.
 */
export function runProcess(
  cmd: string,
  args: readonly string[],
  opts: RunProcessOptions = {},
): Promise<ProcessRun> {
  const started = performance.now();
  const name = opts.name ?? [cmd, ...args].join(' ');
  const limit = opts.timeoutMs ?? 20_000;
  const encoding = opts.encoding ?? 'utf8';
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      const stdout = Buffer.concat(out).toString(encoding);
      const stderr = Buffer.concat(err).toString(encoding);
      reject(new Error(`${name} did not finish within ${limit} ms\n${stdout}\n${stderr}`));
    }, limit);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const bytes = Buffer.concat(out);
      resolve({
        code,
        signal,
        stdout: bytes.toString(encoding),
        bytes,
        stderr: Buffer.concat(err).toString(encoding),
        ms: performance.now() - started,
      });
    });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
  });
}

/** The path of an executable `name` on PATH, or undefined (tests skip when a peer tool is missing). */
export function findProgram(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}
