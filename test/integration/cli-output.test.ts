/**
 * Issue 10, items 12-15: the CLI's output reaches a pipe whole, output errors
 * exit 74 with one line (EPIPE quietly), network text is escaped in logs, and
 * serve -v logs failed DTLS handshakes. Spawns the real executable (through tsx).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import { encodeMessage } from '../../src/codec/message.js';
import { CoapServer } from '../../src/server/server.js';
import { pcap, udpFrame } from '../vectors/captures/build.js';
import { SCENARIO } from '../vectors/captures/scenario.js';
import { LOOPBACK_PORTS, ROOT, startServe } from './cli-helpers.js';

const MAIN = 'src/cli/main.ts';
// What must never reach a log line raw (newline aside, which ends lines).
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;
const NASTY_SEGMENT =
  'crit\n2026-01-01T00:00:00.000Z DELETE /critical from 10.0.0.99:5683 (alice) -> 2.02\x1b[2J\u202e';

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Spawns coapkit. stdout: 'pipe' (read whole), a file descriptor, or
 * 'close-early' (the reader goes away after the first chunk: EPIPE).
 */
function coapkit(args: string[], stdout: 'pipe' | 'close-early' | number, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, COAPKIT_PSK: '', COAPKIT_PSK_IDENTITY: '', NO_COLOR: '1' },
      stdio: ['ignore', typeof stdout === 'number' ? stdout : 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout?.on('data', (c: Buffer) => {
      out.push(c);
      if (stdout === 'close-early') child.stdout?.destroy();
    });
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`coapkit ${args.join(' ')} did not finish within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** The scenario capture repeated `times` (fresh MIDs/tokens), plus a request whose path holds controls. */
function bigCapture(times: number): Buffer {
  const frames: { data: Buffer; sec: number; frac: number }[] = [];
  let n = 0;
  for (let r = 0; r < times; r++) {
    for (const s of SCENARIO) {
      const msg = {
        ...s.msg,
        messageId: (s.msg.messageId! + r * 64) & 0xffff,
        ...(s.msg.code === 0
          ? {}
          : { token: Buffer.concat([Buffer.from(s.msg.token ?? []), Buffer.from([r & 0xff, r >> 8])]) }),
      };
      const client = 40000 + (r % 1000);
      const data =
        s.from === 'c'
          ? udpFrame('10.0.0.1', client, '10.0.0.2', 5683, encodeMessage(msg))
          : udpFrame('10.0.0.2', 5683, '10.0.0.1', client, encodeMessage(msg));
      frames.push({ data, sec: 1_700_000_000 + Math.floor(n / 1000), frac: (n % 1000) * 1000 });
      n++;
    }
  }
  const nasty = {
    type: 0 as const,
    code: 3,
    messageId: 9,
    token: Buffer.from('ee'),
    options: [{ number: 11, value: Buffer.from(NASTY_SEGMENT) }],
    payload: Buffer.from('x\n\x1b[31mred\u2028'),
  };
  frames.push({
    data: udpFrame('10.0.0.3', 40001, '10.0.0.2', 5683, encodeMessage(nasty)),
    sec: 1_700_000_100,
    frac: 0,
  });
  return pcap(frames, { linkType: 1 });
}

const dir = mkdtempSync(join(tmpdir(), 'coapkit-output-'));
const CAPTURE = join(dir, 'big.pcap');
after(() => rmSync(dir, { recursive: true, force: true }));

describe('coapkit output reaches the consumer whole (item 12)', () => {
  before(() => writeFileSync(CAPTURE, bigCapture(150)));

  for (const json of [false, true]) {
    it(`dissect${json ? ' --json' : ''} through a pipe equals the file output byte for byte`, async () => {
      const args = ['dissect', CAPTURE, ...(json ? ['--json'] : [])];
      const file = join(dir, `out${json ? '.json' : '.txt'}`);
      const fd = openSync(file, 'w');
      const toFile = await coapkit(args, fd).finally(() => closeSync(fd));
      assert.equal(toFile.code, 0, toFile.stderr);
      const fileBytes = readFileSync(file);
      // Far more than a pipe buffer (64 KiB): the old code stopped at 65,536 bytes.
      assert.ok(fileBytes.length > 300_000, `only ${fileBytes.length} bytes`);
      const piped = await coapkit(args, 'pipe');
      assert.equal(piped.code, 0, piped.stderr);
      assert.equal(piped.stdout.length, fileBytes.length);
      assert.ok(piped.stdout.equals(fileBytes), 'pipe and file outputs differ');
      const text = piped.stdout.toString('utf8');
      if (json) {
        const doc = JSON.parse(text) as { coap: { messages: unknown[] } };
        assert.ok(doc.coap.messages.length > 150 * SCENARIO.length - 1);
        assert.ok(text.includes('\\u202e'), 'bidi control escaped in JSON');
      } else {
        // The crafted path is shown escaped, on one line (item 13).
        assert.ok(text.includes('crit\\n2026-01-01T00:00:00.000Z DELETE /critical'), 'path escaped');
      }
      assert.ok(!CONTROL.test(text), 'no raw control character in the output');
    });
  }
});

describe('output errors exit 74 (item 14)', () => {
  let server: CoapServer;
  let U = '';
  before(async () => {
    server = new CoapServer();
    server.get('/big', () => ({ payload: Buffer.alloc(900, 0x61), contentFormat: 0 }));
    await server.listen({ host: '127.0.0.1', port: 0 });
    U = `coap://127.0.0.1:${server.addresses()[0]!.port}`;
  });
  after(() => server.close());

  const full = existsSync('/dev/full');
  it('get > /dev/full: one line on stderr, no stack, exit 74', {
    skip: !full && 'no /dev/full',
  }, async () => {
    const fd = openSync('/dev/full', 'w');
    const r = await coapkit(['get', `${U}/big`], fd).finally(() => closeSync(fd));
    assert.equal(r.code, 74, r.stderr);
    assert.match(r.stderr, /^coapkit: cannot write to stdout: no space left on device \(ENOSPC\)\n$/);
  });

  it('get -o /dev/full: one line, exit 74', { skip: !full && 'no /dev/full' }, async () => {
    const r = await coapkit(['get', `${U}/big`, '-o', '/dev/full'], 'pipe');
    assert.equal(r.code, 74, r.stderr);
    assert.match(r.stderr, /^coapkit: cannot write to output file "\/dev\/full": .*ENOSPC.*\n$/);
  });

  it('a closed pipe (dissect | head): exit 74 quietly, no stack', async () => {
    if (!existsSync(CAPTURE)) writeFileSync(CAPTURE, bigCapture(150));
    for (const json of [false, true]) {
      const r = await coapkit(['dissect', CAPTURE, ...(json ? ['--json'] : [])], 'close-early');
      assert.equal(r.code, 74, r.stderr);
      assert.equal(r.stderr, '');
    }
  });

  it('--help lists exit status 74', async () => {
    const r = await coapkit(['--help'], 'pipe');
    assert.equal(r.code, 0);
    assert.match(r.stdout.toString(), /\n {3}74 {2}output error/);
  });
});

describe('serve -v logs (items 13, 15)', () => {
  it('a path with a newline, ESC and a bidi override is logged escaped on one line', async () => {
    const srv = await startServe(['--host', '127.0.0.1', '--port', '0', '-v']);
    const client = new CoapClient();
    try {
      const res = await client.request(`coap://127.0.0.1:${srv.port}/`, {
        method: 'PUT',
        payload: 'x',
        options: [{ number: 11, value: Buffer.from(NASTY_SEGMENT) }],
      });
      assert.equal(res.code, 65); // 2.01
      const deadline = Date.now() + 15_000;
      while (!/PUT .* -> 2\.01/.test(srv.output()) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const lines = srv
        .output()
        .split('\n')
        .filter((l) => / PUT /.test(l));
      assert.equal(lines.length, 1, srv.output());
      const line = lines[0]!;
      assert.match(
        line,
        /PUT \/crit\\n2026-01-01T00:00:00\.000Z DELETE \/critical from 10\.0\.0\.99:5683 \(alice\) -> 2\.02\\x1b\[2J\\u202e from 127\.0\.0\.1:\d+ -> 2\.01 Created/,
      );
      assert.ok(!CONTROL.test(line));
      assert.ok(
        !srv
          .output()
          .split('\n')
          .some((l) => l.startsWith('2026-01-01')),
        'no forged line',
      );
    } finally {
      await client.close();
      await srv.stop();
    }
  });

  it('a failed DTLS handshake (wrong PSK) is logged on one line with peer and identity', async () => {
    const srv = await startServe([...LOOPBACK_PORTS, '-v', '--identity', 'alice', '--psk', 'secret']);
    const client = new CoapClient({ psk: { identity: 'alice', key: 'not the secret' } });
    try {
      await assert.rejects(client.request(`coaps://127.0.0.1:${srv.securePort}/time`, { timeout: 10_000 }));
      const deadline = Date.now() + 15_000;
      while (!/DTLS handshake failed/.test(srv.output()) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const lines = srv
        .output()
        .split('\n')
        .filter((l) => /DTLS handshake failed/.test(l));
      assert.equal(lines.length, 1, srv.output());
      assert.match(lines[0]!, /DTLS handshake failed from 127\.0\.0\.1:\d+ \(alice\): alert \w+ \(\d+\)/);
    } finally {
      await client.close();
      await srv.stop();
    }
  });
});
