/** Shared helpers for the DTLS interop tests (spawning real peers, always cleaned up). */

import * as assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type DtlsClientOptions,
  DtlsClientTransport,
  DtlsServerTransport,
  type DtlsServerTransportOptions,
} from '../../src/transport/dtls.js';
import { makePeer } from '../../src/transport/transport.js';
import { LossyProxy } from '../helpers/lossy-proxy.js';
import { freePort } from '../helpers/net.js';
import { writePcap } from '../helpers/pcap.js';
import { until, withTimeout } from '../helpers/timing.js';

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

/** What an `openssl s_server` / `s_client -dtls1_2` authenticates with, all optional. */
export interface OpensslDtlsOptions {
  /** PSK mode: the key in hex, the identity, and (s_server) the identity hint. */
  psk?: { hex: string; identity: string; hint?: string };
  /** Certificate and private key files (PEM). */
  cert?: string;
  key?: string;
  /**
   * CA file (PEM) the peer's certificate must chain to (`-verify_return_error`);
   * s_server then also requires a client certificate (`-Verify 2`).
   */
  ca?: string;
  /** `-cipher` (OpenSSL's name of the suite). */
  cipher?: string;
}

function opensslDtlsArgs(o: OpensslDtlsOptions, server: boolean): string[] {
  return [
    ...(o.psk ? ['-psk', o.psk.hex, '-psk_identity', o.psk.identity] : []),
    ...(o.psk?.hint !== undefined ? ['-psk_hint', o.psk.hint] : []),
    ...(o.cert !== undefined ? ['-cert', o.cert] : []),
    ...(o.key !== undefined ? ['-key', o.key] : []),
    ...(o.ca !== undefined
      ? ['-CAfile', o.ca, ...(server ? ['-Verify', '2'] : []), '-verify_return_error']
      : []),
    ...(o.cipher !== undefined ? ['-cipher', o.cipher] : []),
  ];
}

/**
 * `openssl s_server -dtls1_2 -listen` on 127.0.0.1:`port` for one connection
 * (`-naccept 1`; `-nocert` without a certificate). Wait for 'ACCEPT' before connecting.
 */
export function opensslDtlsServer(bin: string, port: number, o: OpensslDtlsOptions): Proc {
  return run(bin, [
    's_server',
    '-dtls1_2',
    '-listen',
    ...opensslDtlsArgs(o, true),
    ...(o.cert === undefined ? ['-nocert'] : []),
    '-accept',
    `127.0.0.1:${port}`,
    '-naccept',
    '1',
  ]);
}

/**
 * `openssl s_client -dtls1_2` to 127.0.0.1:`port`; with `ignEof` (the default) it
 * stays connected whatever its standard input does.
 */
export function opensslDtlsClient(
  bin: string,
  port: number,
  o: OpensslDtlsOptions & { ignEof?: boolean },
): Proc {
  return run(bin, [
    's_client',
    '-dtls1_2',
    ...opensslDtlsArgs(o, false),
    '-connect',
    `127.0.0.1:${port}`,
    ...(o.ignEof === false ? [] : ['-ign_eof']),
  ]);
}

/**
 * The coapkit `client` ↔ `openssl s_server` (`srv`, on 127.0.0.1:`port`) exchange:
 * once s_server accepts, the client handshakes with `suite`; s_server must print
 * 'ping from coapkit' and name the cipher (then `afterPing` checks more of its
 * output); the client must receive s_server's 'pong from openssl'.
 */
export async function pingPongSServer(
  client: DtlsClientTransport,
  srv: Proc,
  port: number,
  suite: { id: number; openssl: string },
  afterPing?: () => void,
): Promise<void> {
  await srv.waitFor('ACCEPT', 10_000);
  const peer = makePeer('127.0.0.1', port);
  const got: string[] = [];
  client.attach({ message: (d) => got.push(d.toString()) });
  await withTimeout(client.connect(peer), 10_000, 'handshake');
  assert.equal(client.sessionInfo(peer)?.suiteId, suite.id);
  client.send(Buffer.from('ping from coapkit\n'), peer);
  await srv.waitFor('ping from coapkit', 5000);
  assert.match(srv.output(), new RegExp(`CIPHER is ${suite.openssl}`));
  afterPing?.();
  srv.child.stdin.write('pong from openssl\n');
  await until(() => got.join('').includes('pong from openssl'), 'data from s_server', 5000);
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

export { withTimeout };

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

/**
 * A coapkit DTLS session recorded for tshark, in `dir`: a server (`server`,
 * on 127.0.0.1) answering every request with 2.05 and `body`, a client
 * (`client`) writing its key log, between them a LossyProxy recording every
 * datagram. The client sends GET /.well-known/core: the answer must be 2.05
 * and the key log one CLIENT_RANDOM line. The recording is written as a pcap
 * (client 127.0.0.1:40000, server 127.0.0.1:5684); both ends are closed.
 */
export async function recordDtlsSession(
  dir: string,
  server: Omit<DtlsServerTransportOptions, 'host' | 'port'>,
  client: Omit<DtlsClientOptions, 'keyLogFile'>,
  body: string,
): Promise<{ file: string; keylog: string }> {
  const keylog = join(dir, 'keys.log');
  const srv = await DtlsServerTransport.create({ host: '127.0.0.1', port: 0, ...server });
  srv.attach({
    message: (d, p) => {
      srv.send(
        Buffer.concat([Buffer.from([0x60, 0x45, d[2]!, d[3]!, 0xc1, 0x28, 0xff]), Buffer.from(body)]),
        p,
      );
    },
  });
  const proxy = await LossyProxy.create({ target: srv.localAddress().port });
  const cli = await DtlsClientTransport.create({ ...client, keyLogFile: keylog });
  try {
    const peer = makePeer('127.0.0.1', proxy.port);
    const got = new Promise<Buffer>((resolve) => cli.attach({ message: resolve }));
    cli.send(WELL_KNOWN_CORE_GET, peer);
    const resp = await withTimeout(got, 5000, 'response');
    assert.equal(resp[1], 0x45);
    assert.match(readFileSync(keylog, 'utf8'), /^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}\n$/);
    const file = join(dir, 'session.pcap');
    const from = { address: '127.0.0.1', port: 40000 };
    const to = { address: '127.0.0.1', port: 5684 };
    writePcap(
      file,
      proxy.stats.log.map((d, i) => ({
        src: d.dir === 'up' ? from : to,
        dst: d.dir === 'up' ? to : from,
        data: d.data,
        timeMs: (1_700_000_000 + i) * 1000,
      })),
    );
    return { file, keylog };
  } finally {
    await cli.close();
    await srv.close();
    await proxy.close();
  }
}
