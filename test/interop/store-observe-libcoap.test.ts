/**
 * Observers survive a restart of `coapkit serve --data DIR` (issue 14, RFC 7641):
 * a libcoap `coap-client-notls -s` observer keeps receiving notifications after the
 * server is killed (-9) and started again on the same port and data, with the same
 * token; an observer whose peer answers the first notification after the restart with
 * RST is dropped, in memory and in the store (§4.5).
 */

import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type CoapMessage, type CoapOption, decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { getOption, getUintOption } from '../../src/codec/options.js';
import { MessageType } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { CLIENT } from '../helpers/libcoap.js';
import { freePort } from '../helpers/net.js';
import { findProgram } from '../helpers/proc.js';
import { until } from '../helpers/timing.js';
import { runCli, type ServeProcess, startServe } from '../integration/cli-helpers.js';

const GET = 1;
const CONTENT = 69;
const UNAUTHORIZED = 129;

/** A bare observer on its own socket: registers, records notifications, can answer RST. */
class RawObserver {
  readonly socket = dgram.createSocket('udp4');
  readonly got: CoapMessage[] = [];
  constructor(readonly token: Buffer) {
    this.socket.on('message', (d) => {
      try {
        this.got.push(decodeMessage(d));
      } catch {}
    });
  }
  async bind(): Promise<void> {
    await new Promise<void>((r) => this.socket.bind(0, '127.0.0.1', () => r()));
  }
  send(port: number, m: CoapMessage): void {
    this.socket.send(encodeMessage(m), port, '127.0.0.1');
  }
  async register(port: number, path: string): Promise<void> {
    const options: CoapOption[] = [
      { number: OptionNumber.Observe, value: Buffer.alloc(0) },
      ...path
        .split('/')
        .filter(Boolean)
        .map((s) => ({ number: OptionNumber.UriPath, value: Buffer.from(s) })),
    ];
    let mid = 0x1000;
    for (let attempt = 0; attempt < 3; attempt++) {
      const from = this.got.length;
      this.send(port, {
        type: MessageType.CON,
        code: GET,
        messageId: mid++,
        token: this.token,
        options,
        payload: Buffer.alloc(0),
      });
      await until(() => this.got.length > from, 'an answer to the registration');
      const res = this.got[this.got.length - 1]!;
      if (res.code === CONTENT) return;
      // Plain UDP: the address is proven with Echo first (RFC 9175).
      const echo = getOption(res.options, OptionNumber.Echo);
      assert.equal(res.code, UNAUTHORIZED, 'challenged with 4.01 + Echo');
      assert.ok(echo);
      options.push({ number: OptionNumber.Echo, value: echo });
      options.sort((a, b) => a.number - b.number);
    }
    assert.fail('not registered');
  }
  close(): void {
    this.socket.close();
  }
}

test('a libcoap observer keeps being notified across kill -9 and restart; an observer answering RST is dropped', async (t) => {
  if (findProgram(CLIENT) === undefined) return t.skip(`${CLIENT} not installed (Debian libcoap3-bin)`);
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-obs-'));
  const data = ['--data', dir];
  let serve: ServeProcess | undefined;
  const libcoap = { out: '', proc: undefined as ReturnType<typeof spawn> | undefined };
  const raw = new RawObserver(Buffer.from('c0ffee01', 'hex'));
  try {
    // The server comes back on this port after kill -9 and SIGTERM: one outside the ephemeral
    // range, so no socket another test binds to port 0 takes it in between.
    const port = await freePort();
    serve = await startServe(['--host', '127.0.0.1', '--port', String(port), '--secure-port', '0', ...data]);
    const url = `coap://127.0.0.1:${port}`;
    assert.equal((await runCli(['put', `${url}/obs/x`, '-p', 'v1'])).code, 0);
    assert.equal((await runCli(['put', `${url}/obs/y`, '-p', 'y1'])).code, 0);
    const proc = spawn(CLIENT, ['-s', '90', `${url}/obs/x`], { stdio: ['ignore', 'pipe', 'pipe'] });
    libcoap.proc = proc;
    proc.stdout.on('data', (c: Buffer) => {
      libcoap.out += c.toString('latin1');
    });
    await until(() => libcoap.out.includes('v1'), 'libcoap got the first state', 15_000);
    await raw.bind();
    await raw.register(port, '/obs/y');
    assert.equal((await runCli(['put', `${url}/obs/x`, '-p', 'v2'])).code, 0);
    await until(() => libcoap.out.includes('v2'), 'libcoap notified of v2', 15_000);

    // Crash, then start again on the same port and data.
    serve.child.kill('SIGKILL');
    await new Promise((r) => serve!.child.once('exit', r));
    serve = await startServe(['--host', '127.0.0.1', '--port', String(port), '--secure-port', '0', ...data]);
    assert.match(serve.banner, /2 observers loaded/);

    assert.equal((await runCli(['put', `${url}/obs/x`, '-p', 'v3'])).code, 0);
    await until(() => libcoap.out.includes('v3'), 'libcoap notified of v3 after the restart', 30_000);
    assert.equal((await runCli(['put', `${url}/obs/x`, '-p', 'v4'])).code, 0);
    await until(() => libcoap.out.includes('v4'), 'libcoap notified of v4 after the restart', 30_000);
    assert.equal(proc.exitCode, null, 'the libcoap observer is still running');

    // The raw observer answers the first notification after the restart with RST.
    const from = raw.got.length;
    assert.equal((await runCli(['put', `${url}/obs/y`, '-p', 'y2'])).code, 0);
    await until(
      () => raw.got.slice(from).some((m) => m.token.equals(raw.token)),
      'raw observer notified',
      30_000,
    );
    const n = raw.got.slice(from).find((m) => m.token.equals(raw.token))!;
    assert.equal(n.payload.toString(), 'y2');
    const seqAfter = getUintOption(n.options, OptionNumber.Observe);
    const registration = raw.got.find((m) => m.token.equals(raw.token) && m.code === CONTENT)!;
    const seqBefore = getUintOption(registration.options, OptionNumber.Observe);
    assert.ok(seqAfter !== undefined && seqBefore !== undefined, 'both carry Observe');
    // §3.4: newer within 2^23; the restart continues above every number sent before it.
    const delta = (seqAfter - seqBefore + 0x1000000) % 0x1000000;
    assert.ok(
      delta > 0 && delta < 0x800000,
      `sequence ${seqAfter} after the restart is fresher than ${seqBefore}`,
    );
    assert.equal(
      n.type,
      MessageType.CON,
      'the first notification after a restart is confirmable (a liveness check)',
    );
    raw.send(port, {
      type: MessageType.RST,
      code: 0,
      messageId: n.messageId,
      token: Buffer.alloc(0),
      options: [],
      payload: Buffer.alloc(0),
    });
    // A later change no longer reaches it.
    await new Promise((r) => setTimeout(r, 300));
    const after = raw.got.length;
    assert.equal((await runCli(['put', `${url}/obs/y`, '-p', 'y3'])).code, 0);
    assert.equal((await runCli(['put', `${url}/obs/x`, '-p', 'v5'])).code, 0);
    await until(() => libcoap.out.includes('v5'), 'libcoap notified of v5', 30_000);
    assert.equal(
      raw.got.slice(after).filter((m) => m.token.equals(raw.token)).length,
      0,
      'no notification after RST',
    );

    // And it is gone from the store: a graceful restart loads only the libcoap observer.
    assert.equal(await serve.stop(), 0);
    serve = await startServe(['--host', '127.0.0.1', '--port', String(port), '--secure-port', '0', ...data]);
    assert.match(serve.banner, /1 observer loaded/);
    // After the graceful restart too, the libcoap observer keeps being notified.
    assert.equal((await runCli(['put', `${url}/obs/x`, '-p', 'v6'])).code, 0);
    await until(() => libcoap.out.includes('v6'), 'libcoap notified of v6 after a SIGTERM restart', 30_000);
  } finally {
    raw.close();
    libcoap.proc?.kill('SIGKILL');
    await serve?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
