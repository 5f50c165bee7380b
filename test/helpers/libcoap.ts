/**
 * Running libcoap's command-line tools (Debian libcoap3-bin) as CoAP peers:
 * coap-client-notls output parsing and a coap-server-notls launcher.
 * Every process is killed on timeout; nothing outlives the test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { freePort } from './net.js';
import { findProgram, runProcess } from './proc.js';

export const CLIENT = 'coap-client-notls';
export const SERVER = 'coap-server-notls';

export function haveLibcoap(): boolean {
  return findProgram(CLIENT) !== undefined && findProgram(SERVER) !== undefined;
}

/** One message as libcoap prints it: `v:1 t:CON c:GET i:2560 {01} [ Uri-Path:x ] :: 'payload'`. */
export interface LibcoapMessage {
  type: 'CON' | 'NON' | 'ACK' | 'RST';
  code: string;
  mid: number;
  /** Token hex ('' for the empty token). */
  token: string;
  options: Array<[string, string]>;
  payload: string | undefined;
  line: string;
}

const LINE =
  /^v:1 t:(CON|NON|ACK|RST) c:(\S+) i:([0-9a-f]+) (?:\{([0-9a-f]*)\} )?\[ ?(.*?) ?\](?: :: '(.*)')?$/;

export function parseMessages(text: string): LibcoapMessage[] {
  const out: LibcoapMessage[] = [];
  for (const raw of text.split('\n')) {
    const i = raw.indexOf('v:1 t:');
    if (i === -1) continue;
    const line = raw.slice(i).trimEnd();
    const m = LINE.exec(line);
    if (!m) continue;
    const options: Array<[string, string]> = [];
    if (m[5]) {
      for (const part of m[5].split(/, (?=[A-Za-z0-9-]+:)/)) {
        const c = part.indexOf(':');
        options.push([part.slice(0, c), part.slice(c + 1)]);
      }
    }
    out.push({
      type: m[1] as LibcoapMessage['type'],
      code: m[2]!,
      mid: Number.parseInt(m[3]!, 16),
      token: m[4] ?? '',
      options,
      payload: m[6],
      line,
    });
  }
  return out;
}

export interface ClientRun {
  code: number | null;
  stdout: string;
  stderr: string;
  messages: LibcoapMessage[];
}

/** Runs coap-client-notls with `-v 6` (message dumps) unless another -v is given. */
export async function runClient(args: string[], timeoutMs = 10_000): Promise<ClientRun> {
  const full = args.includes('-v') ? args : ['-v', '6', ...args];
  const r = await runProcess(CLIENT, full, { timeoutMs, encoding: 'latin1' });
  return {
    code: r.code,
    stdout: r.stdout,
    stderr: r.stderr,
    messages: parseMessages(`${r.stdout}\n${r.stderr}`),
  };
}

export interface LibcoapServer {
  port: number;
  proc: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** SIGTERM, then SIGKILL after 1 s; resolves when the process has exited. */
function stopProcess(proc: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const t = setTimeout(() => proc.kill('SIGKILL'), 1000);
    proc.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

/** Starts coap-server-notls on 127.0.0.1 and waits until it answers a CoAP ping. */
export async function startServer(extra: string[] = [], host = '127.0.0.1'): Promise<LibcoapServer> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort({ host });
    // stdbuf: line-buffered logs, so message dumps can be read while the server runs.
    const proc = spawn('stdbuf', ['-oL', '-eL', SERVER, '-A', host, '-p', String(port), ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    proc.stdout?.on('data', (d: Buffer) => {
      log += d.toString('latin1');
    });
    proc.stderr?.on('data', (d: Buffer) => {
      log += d.toString('latin1');
    });
    const stop = () => stopProcess(proc);
    if (await answersPing(host, port, 3000)) return { port, proc, log: () => log, stop };
    await stop();
  }
  throw new Error(`${SERVER} did not start`);
}

/** Sends raw CoAP pings until an RST comes back. */
export async function answersPing(host: string, port: number, ms: number): Promise<boolean> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((r) => s.bind(0, r));
  try {
    return await new Promise<boolean>((resolve) => {
      const deadline = setTimeout(() => {
        clearInterval(iv);
        resolve(false);
      }, ms);
      s.on('message', (m) => {
        if (m.length === 4 && m[0] === 0x70 && m[2] === 0x12 && m[3] === 0x34) {
          clearTimeout(deadline);
          clearInterval(iv);
          resolve(true);
        }
      });
      const ping = () => s.send(Buffer.from([0x40, 0, 0x12, 0x34]), port, host);
      const iv = setInterval(ping, 100);
      ping();
    });
  } finally {
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/** True once a TCP connection to host:port succeeds (retried every 50 ms until `ms` pass). */
async function acceptsTcp(host: string, port: number, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect({ host, port });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * Starts a libcoap server (`program` with `args`) on a free port pair and waits until it
 * serves: a CoAP ping answered on UDP port, a TCP connection accepted on port (RFC 8323) and,
 * for the TLS builds, on port + 1 (coaps+tcp). The ports are chosen before the server binds
 * them, so another test may take one meanwhile: then it starts again on another pair.
 */
export function startLibcoapServer(
  program: string,
  args: string[],
): Promise<{ port: number; stop(): Promise<void> }> {
  return (async () => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort({ host: '127.0.0.1', pair: true });
      const proc: ChildProcess = spawn(program, ['-A', '127.0.0.1', '-p', String(port), ...args], {
        stdio: 'ignore',
      });
      const stop = () => stopProcess(proc);
      // The TLS builds listen for coaps+tcp on port + 1, opened after the UDP endpoint
      // that answered the ping: wait for it to accept too before the test connects.
      const tlsToo = program !== 'coap-server-notls';
      if (
        (await answersPing('127.0.0.1', port, 3000)) &&
        (await acceptsTcp('127.0.0.1', port, 5000)) &&
        (!tlsToo || (await acceptsTcp('127.0.0.1', port + 1, 5000)))
      )
        return { port, stop };
      await stop();
    }
    throw new Error(`${program} did not start`);
  })();
}
