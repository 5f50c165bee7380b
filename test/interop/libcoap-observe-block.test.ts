/**
 * Observe (RFC 7641) and block-wise transfer (RFC 7959) against libcoap 4.3
 * (Debian libcoap3-bin): coap-client-notls / coap-server-notls on loopback,
 * and coap-client-openssl over DTLS-PSK against coapkit's DTLS server.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { CoapClient } from '../../src/client/client.js';
import { ResponseCode } from '../../src/constants/codes.js';
import { enableObserve } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import { haveLibcoap, startServer } from '../helpers/libcoap.js';
import { findProgram, type ProcessRun, runProcess } from '../helpers/proc.js';

const HAVE_NOTLS = haveLibcoap();
const HAVE_OPENSSL = findProgram('coap-client-openssl') !== undefined;

function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<ProcessRun> {
  return runProcess(cmd, args, { timeoutMs });
}

describe('libcoap interop: observe and block-wise', {
  skip: !HAVE_NOTLS && 'libcoap3-bin is not installed',
  timeout: 55_000,
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-interop-'));
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups) await c();
    rmSync(dir, { recursive: true, force: true });
  });

  async function coapkitServer(setup: (s: CoapServer, notify: (p: string) => void) => void) {
    const server = new CoapServer({ maxPayloadSize: 1 << 20 });
    const bw = enableBlockwise(server, { maxBodySize: 1 << 20 });
    const obs = enableObserve(server, { blockwise: bw });
    setup(server, (p) => obs.notify(p));
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => server.close());
    return { server, obs, port: ep.transport.localAddress().port };
  }

  it('coap-client-notls -s 3 observes a coapkit resource while it changes', async () => {
    let n = 0;
    const { port, obs } = await coapkitServer((s) => s.get('/obs', () => `n=${n}`, { obs: true }));
    const ticker = setInterval(() => {
      n++;
      obs.notify('/obs');
    }, 250);
    try {
      const r = await run('coap-client-notls', ['-s', '3', '-w', '-B', '5', `coap://127.0.0.1:${port}/obs`]);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('n='));
      assert.ok(lines.length >= 6, `expected >= 6 notifications, got ${lines.length}: ${r.stdout}`);
      const values = lines.map((l) => Number(l.slice(2)));
      for (let i = 1; i < values.length; i++) assert.ok(values[i]! > values[i - 1]!, `in order: ${values}`);
    } finally {
      clearInterval(ticker);
    }
  });

  it('coap-client-notls -s observes a coapkit resource larger than one block (Block2 notifications)', async () => {
    let n = 0;
    const { port, obs } = await coapkitServer((s) =>
      s.get('/big', () => `${String(n % 10).repeat(1500)}|`, { obs: true }),
    );
    const ticker = setInterval(() => {
      n++;
      obs.notify('/big');
    }, 400);
    try {
      const r = await run('coap-client-notls', ['-s', '2', '-w', '-B', '4', `coap://127.0.0.1:${port}/big`]);
      const bodies = r.stdout.split('\n').filter((l) => l.endsWith('|'));
      assert.ok(
        bodies.length >= 2,
        `got ${bodies.length} full notifications: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 500)}`,
      );
      for (const b of bodies) {
        assert.equal(b.length, 1501);
        assert.equal(new Set(b.slice(0, -1)).size, 1, 'one representation per notification');
      }
    } finally {
      clearInterval(ticker);
    }
  });

  it('coap-client-notls -b 64 PUTs and GETs a 100 KB file byte-identically against coapkit', async () => {
    const files = new Map<string, Buffer>();
    const { port } = await coapkitServer((s) => {
      s.put('/file', (req) => {
        files.set('f', Buffer.from(req.payload));
        return { code: ResponseCode.Changed };
      });
      s.get('/file', () => ({ payload: files.get('f') ?? Buffer.alloc(0) }));
    });
    const body = randomBytes(100 * 1024);
    const inFile = join(dir, 'in.bin');
    const outFile = join(dir, 'out.bin');
    writeFileSync(inFile, body);
    const put = await run(
      'coap-client-notls',
      ['-b', '64', '-m', 'put', '-f', inFile, `coap://127.0.0.1:${port}/file`],
      30_000,
    );
    assert.equal(put.code, 0, put.stderr);
    assert.ok(files.get('f')?.equals(body), 'coapkit reassembled the Block1 upload');
    const get = await run(
      'coap-client-notls',
      ['-b', '64', '-m', 'get', '-o', outFile, `coap://127.0.0.1:${port}/file`],
      30_000,
    );
    assert.equal(get.code, 0, get.stderr);
    assert.ok(readFileSync(outFile).equals(body), 'libcoap reassembled the Block2 download');
  });

  it('coapkit observes /time on coap-server-notls', async () => {
    const srv = await startServer([]);
    cleanups.push(srv.stop);
    const client = new CoapClient();
    cleanups.push(() => client.close());
    const seqs: number[] = [];
    for await (const n of client.observe(`coap://127.0.0.1:${srv.port}/time`)) {
      assert.equal(n.code, ResponseCode.Content);
      assert.match(n.text(), /\d\d:\d\d:\d\d/);
      seqs.push(n.observe!);
      if (seqs.length === 3) break;
    }
    assert.ok(seqs[1]! > seqs[0]! && seqs[2]! > seqs[1]!, `sequence ${seqs}`);
  });

  it('coapkit PUTs a 100 KB resource to coap-server-notls -d (Block1) and GETs it back (Block2)', async () => {
    const srv = await startServer(['-d', '10']);
    cleanups.push(srv.stop);
    const client = new CoapClient();
    cleanups.push(() => client.close());
    const body = randomBytes(100 * 1024);
    const put = await client.put(`coap://127.0.0.1:${srv.port}/big`, { payload: body });
    assert.ok(put.ok, put.codeText);
    const get = await client.get(`coap://127.0.0.1:${srv.port}/big`);
    assert.equal(get.code, ResponseCode.Content);
    assert.ok(get.payload.equals(body));
    const small = await client.get(`coap://127.0.0.1:${srv.port}/big`, { blockSize: 64 });
    assert.ok(small.payload.equals(body), 'early-negotiated 64-byte blocks');
  });
});

describe('libcoap interop over DTLS-PSK', {
  skip: !HAVE_OPENSSL && 'coap-client-openssl is not installed',
  timeout: 40_000,
}, () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  async function secureServer(setup: (s: CoapServer) => void) {
    let mod: typeof import('../../src/transport/dtls.js');
    try {
      mod = await import('../../src/transport/dtls.js');
    } catch (err) {
      return { skip: `src/transport/dtls.ts is not usable: ${(err as Error).message}` } as const;
    }
    const server = new CoapServer({ maxPayloadSize: 1 << 20 });
    const bw = enableBlockwise(server);
    const obs = enableObserve(server, { blockwise: bw });
    setup(server);
    const transport = await mod.DtlsServerTransport.create({
      host: '127.0.0.1',
      port: 0,
      psk: { identity: 'interop', key: 'secretPSK' },
    });
    await server.listen(transport);
    cleanups.push(() => server.close());
    return { server, obs, port: transport.localAddress().port } as const;
  }

  it('coap-client-openssl observes a coapkit resource over coaps://', async (t) => {
    let n = 0;
    const s = await secureServer((srv) => srv.get('/obs', () => `n=${n}`, { obs: true }));
    if ('skip' in s) return t.skip(s.skip);
    const ticker = setInterval(() => {
      n++;
      s.obs.notify('/obs');
    }, 300);
    try {
      const r = await run('coap-client-openssl', [
        '-k',
        'secretPSK',
        '-u',
        'interop',
        '-s',
        '2',
        '-w',
        '-B',
        '5',
        `coaps://127.0.0.1:${s.port}/obs`,
      ]);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('n='));
      assert.ok(
        lines.length >= 4,
        `expected >= 4 notifications, got ${lines.length}: ${r.stdout} ${r.stderr.slice(0, 400)}`,
      );
    } finally {
      clearInterval(ticker);
    }
  });

  it('coap-client-openssl PUTs and GETs 20 KB block-wise over coaps://', async (t) => {
    let stored = Buffer.alloc(0);
    const s = await secureServer((srv) => {
      srv.put('/file', (req) => {
        stored = Buffer.from(req.payload);
        return { code: ResponseCode.Changed };
      });
      srv.get('/file', () => ({ payload: stored }));
    });
    if ('skip' in s) return t.skip(s.skip);
    const dir = mkdtempSync(join(tmpdir(), 'coapkit-dtls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const body = randomBytes(20 * 1024);
    writeFileSync(join(dir, 'in'), body);
    const psk = ['-k', 'secretPSK', '-u', 'interop'];
    const put = await run(
      'coap-client-openssl',
      [...psk, '-b', '256', '-m', 'put', '-f', join(dir, 'in'), `coaps://127.0.0.1:${s.port}/file`],
      20_000,
    );
    assert.equal(put.code, 0, put.stderr);
    assert.ok(stored.equals(body));
    const get = await run(
      'coap-client-openssl',
      [...psk, '-b', '256', '-o', join(dir, 'out'), `coaps://127.0.0.1:${s.port}/file`],
      20_000,
    );
    assert.equal(get.code, 0, get.stderr);
    assert.ok(readFileSync(join(dir, 'out')).equals(body));
  });
});
