/** Shared helpers for the DTLS interop tests (spawning real peers, always cleaned up). */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { freePort } from '../helpers/net.js';

export interface Proc {
  child: ChildProcessWithoutNullStreams;
  output(): string;
  waitFor(pattern: RegExp | string, ms: number): Promise<void>;
  exited: Promise<number | null>;
  kill(): Promise<void>;
}

export function run(bin: string, args: string[]): Proc {
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString('latin1');
    for (const l of listeners) l();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  child.stdin.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    waitFor(pattern, ms) {
      const test = () => (typeof pattern === 'string' ? out.includes(pattern) : pattern.test(out));
      if (test()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timeout waiting for ${pattern} in output of ${bin}:\n${out.slice(-2000)}`));
        }, ms);
        const check = () => {
          if (test()) {
            clearTimeout(t);
            listeners.delete(check);
            resolve();
          }
        };
        listeners.add(check);
        void exited.then(() => {
          if (!test()) {
            clearTimeout(t);
            listeners.delete(check);
            reject(new Error(`${bin} exited before printing ${pattern}:\n${out.slice(-2000)}`));
          }
        });
      });
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 1000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

export const SUITES: { id: number; openssl: string }[] = [
  { id: 0xc0a8, openssl: 'PSK-AES128-CCM8' },
  { id: 0xc0a4, openssl: 'PSK-AES128-CCM' },
  { id: 0x00a8, openssl: 'PSK-AES128-GCM-SHA256' },
  { id: 0xccac, openssl: 'ECDHE-PSK-CHACHA20-POLY1305' },
  { id: 0xc037, openssl: 'ECDHE-PSK-AES128-CBC-SHA256' },
];

/** CON GET /.well-known/core, MID 0x1234, no token. */
export const WELL_KNOWN_CORE_GET = Buffer.from([
  0x40, 0x01, 0x12, 0x34, 0xbb, 0x2e, 0x77, 0x65, 0x6c, 0x6c, 0x2d, 0x6b, 0x6e, 0x6f, 0x77, 0x6e, 0x04, 0x63,
  0x6f, 0x72, 0x65,
]);

export { withTimeout } from '../helpers/timing.js';

/**
 * Starts a libcoap server (`coap-server-openssl`/`-gnutls`) with `args(port)` on a free port
 * pair (coap:// on port, coaps:// on port + 1) and waits for its DTLS endpoint. The pair is
 * chosen before the server binds it, so another test may take a port meanwhile: libcoap then
 * logs "cannot create DTLS endpoint" and keeps running without it; start again on another pair.
 */
export async function startLibcoapDtls(
  bin: string,
  args: (port: number) => string[],
): Promise<{ srv: Proc; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort({ pair: true });
    const srv = run(bin, args(port));
    try {
      await srv.waitFor(/created DTLS\s+endpoint|cannot create DTLS endpoint/, 10_000);
    } catch (err) {
      await srv.kill();
      throw err;
    }
    if (!/cannot create DTLS endpoint/.test(srv.output())) return { srv, port };
    await srv.kill();
    if (attempt === 5)
      throw new Error(`${bin} found no free port pair in 5 attempts:\n${srv.output().slice(-1000)}`);
  }
}
