// Child-process plumbing for the bench: every child is tracked and killed on exit, error or signal.
import { execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readdirSync, readFileSync } from 'node:fs';

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();

export function killAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}

let installed = false;
export function installCleanup() {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      killAll();
      process.stderr.write(`\nbench: ${sig}, children killed\n`);
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    killAll();
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    killAll();
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : err}\n`);
    process.exit(1);
  });
}

/**
 * Spawns a tracked child.
 * @param {string} cmd @param {string[]} args @param {import('node:child_process').SpawnOptions} [opts]
 */
export function track(cmd, args, opts = {}) {
  const child = spawn(cmd, args, opts);
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Kills a tracked child and waits for it to be gone (SIGTERM, then SIGKILL after 2 s). */
export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 2000);
  await gone;
  clearTimeout(t);
}

/** Runs a command to completion; resolves stdout. Rejects on non-zero exit or after timeoutMs. */
export function run(cmd, args, { timeoutMs = 60_000, onStderr, ...opts } = {}) {
  return new Promise((resolve, reject) => {
    const child = track(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
      onStderr?.(String(d));
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout: out, stderr: err });
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}: ${err.trim()}`));
    });
  });
}

/** An ephemeral UDP port that was free a moment ago on 127.0.0.1. */
export function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.on('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Total CPU seconds (user + system, all threads) of a process, from /proc/PID/stat. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime is field 14, stime field 15
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU seconds of a process and all its descendants alive now (`coapkit serve --workers N`: the
 * supervisor and its workers), from /proc/PID/task/TID/children. A worker that died during the
 * measurement takes its CPU time with it (the supervisor replaces it).
 */
export function treeCpuSeconds(pid) {
  let total = cpuSeconds(pid);
  for (const child of childPids(pid)) total += treeCpuSeconds(child);
  return total;
}

/** Pids of the children of a process. @param {number} pid @returns {number[]} */
export function childPids(pid) {
  try {
    const out = [];
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) out.push(...text.split(' ').map(Number));
    }
    return out;
  } catch {
    return [];
  }
}

/** Resident set size of a process in bytes, from /proc/PID/status (VmRSS). */
export function rssBytes(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

export function which(cmd) {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
