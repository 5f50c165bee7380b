/**
 * Helpers for the CLI integration tests: run `coapkit` (from source through
 * tsx) in this process or as a child process with a hard timeout, and start
 * `coapkit serve`. Other programs: runProcess in test/helpers/proc.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { PassThrough, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/cli.js';
import { freePort } from '../helpers/net.js';
import { runProcess } from '../helpers/proc.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = 'src/cli/main.ts';

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  /** stdout as UTF-8. */
  out: string;
}

/**
 * Runs the CLI in this process (fast; no process startup) with captured
 * streams. Use runCli for what needs a real process (exit status delivery,
 * signals, stdin from a pipe).
 */
export async function runInProcess(
  args: readonly string[],
  opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (into: Buffer[]) =>
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        into.push(Buffer.from(chunk));
        cb();
      },
    });
  const stdin = new PassThrough();
  stdin.end(opts.input ?? '');
  const io = { stdout: sink(out), stderr: sink(err), stdin, env: { ...opts.env } };
  const limit = opts.timeoutMs ?? 20_000;
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    main(args, io),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`coapkit ${args.join(' ')} did not finish within ${limit} ms`)),
        limit,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  const stdout = Buffer.concat(out);
  return {
    code,
    signal: null,
    stdout,
    out: stdout.toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
  };
}

/** The environment coapkit children get: this one, without a PSK from the developer's shell. */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, COAPKIT_PSK: '', COAPKIT_PSK_IDENTITY: '', ...extra };
}

/** Runs `coapkit ...args` from source (through tsx) as a child process. */
export async function runCli(
  args: readonly string[],
  opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<CliResult> {
  const r = await runProcess(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: cliEnv(opts.env),
    input: opts.input ?? '',
    timeoutMs: opts.timeoutMs,
    name: `coapkit ${args.join(' ')}`,
  });
  return { code: r.code, signal: r.signal, stdout: r.bytes, out: r.stdout, stderr: r.stderr };
}

export interface ServeProcess {
  child: ChildProcess;
  /** Port of coap:// (and coaps:// when started). */
  port: number;
  securePort?: number;
  banner: string;
  /** Everything printed on stdout so far. */
  output(): string;
  stderr(): string;
  /** SIGTERM, then SIGKILL after a grace period; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `coapkit serve` flags for loopback on ports the system picks (coap:// and coaps://). */
export const LOOPBACK_PORTS = ['--host', '127.0.0.1', '--port', '0', '--secure-port', '0'] as const;

/**
 * Spawns `coapkit serve ...args` and waits for the banner with the bound ports.
 * `nodeArgs` go to node itself (e.g. heap limits).
 */
export function startServe(
  args: readonly string[],
  opts: { timeoutMs?: number; nodeArgs?: readonly string[] } = {},
): Promise<ServeProcess> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [...(opts.nodeArgs ?? []), '--import', 'tsx', MAIN, 'serve', ...args],
      {
        cwd: ROOT,
        env: cliEnv(),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    let done = false;
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(kill);
      return code;
    };
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      child.kill('SIGKILL');
      reject(new Error(`serve did not start within ${timeoutMs} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, timeoutMs);
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (done || !/Stop with Ctrl-C/.test(stdout)) return;
      done = true;
      clearTimeout(timer);
      const plain = /^\s+coap:\/\/\S+:(\d+)/m.exec(stdout);
      const secure = /^\s+coaps:\/\/\S+:(\d+)/m.exec(stdout);
      const proc: ServeProcess = {
        child,
        port: Number(plain?.[1]),
        banner: stdout,
        output: () => stdout,
        stderr: () => stderr,
        stop,
      };
      if (secure) proc.securePort = Number(secure[1]);
      resolve(proc);
    });
    child.on('exit', (code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before starting; stdout: ${stdout} stderr: ${stderr}`));
    });
  });
}

/**
 * Two `coapkit serve` cluster nodes on loopback (LOOPBACK_PORTS): `args`
 * (credentials, store, …), then `--node-id`, `--cluster-listen` on a free port
 * and `--peer` naming the other node. Started together, or node 1 first with `oneByOne`.
 */
export async function startServeCluster(
  args: readonly string[],
  opts: { oneByOne?: boolean } = {},
): Promise<[ServeProcess, ServeProcess]> {
  const c1 = await freePort();
  const c2 = await freePort();
  const node = (id: number, mine: number, other: number) =>
    startServe([
      ...LOOPBACK_PORTS,
      ...args,
      '--node-id',
      String(id),
      '--cluster-listen',
      `127.0.0.1:${mine}`,
      '--peer',
      `${3 - id}=127.0.0.1:${other}`,
    ]);
  if (opts.oneByOne) return [await node(1, c1, c2), await node(2, c2, c1)];
  return Promise.all([node(1, c1, c2), node(2, c2, c1)]);
}

/** Runs a program (e.g. libcoap's coap-client) with a timeout. */
export async function runProgram(
  cmd: string,
  args: readonly string[],
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await runProcess(cmd, args, { timeoutMs });
  return { code, stdout, stderr };
}
