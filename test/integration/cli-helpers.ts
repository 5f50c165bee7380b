/**
 * Helpers for the CLI integration tests: run `coapkit` (from source through
 * tsx) as a child process with a hard timeout.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { PassThrough, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/cli.js';

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

export function runCli(
  args: readonly string[],
  opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, COAPKIT_PSK: '', COAPKIT_PSK_IDENTITY: '', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const limit = opts.timeoutMs ?? 20_000;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`coapkit ${args.join(' ')} did not finish within ${limit} ms`));
    }, limit);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      resolve({
        code,
        signal,
        stdout,
        out: stdout.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
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

/** Spawns `coapkit serve ...args` and waits for the banner with the bound ports. */
export function startServe(args: readonly string[], timeoutMs = 15_000): Promise<ServeProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', ...args], {
      cwd: ROOT,
      env: { ...process.env, COAPKIT_PSK: '', COAPKIT_PSK_IDENTITY: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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

/** Runs a program (e.g. libcoap's coap-client) with a timeout. */
export function runProgram(
  cmd: string,
  args: readonly string[],
  timeoutMs = 10_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
