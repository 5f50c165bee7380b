/** The CLI's observe and block-wise pieces: coapkit observe, get --observe, --block-size. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { ResponseCode } from '../../src/constants/codes.js';
import { enableObserve, type ObserveServer } from '../../src/observe/server.js';
import { CoapServer } from '../../src/server/server.js';
import { runInProcess } from './cli-helpers.js';

describe('coapkit observe and --block-size', { timeout: 30_000 }, () => {
  const server = new CoapServer({ maxPayloadSize: 1 << 20 });
  let observe: ObserveServer;
  let base = '';
  let n = 0;
  let file = Buffer.alloc(0);
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-obs-cli-'));
  let ticker: NodeJS.Timeout;
  before(async () => {
    const bw = enableBlockwise(server, { maxBodySize: 1 << 20 });
    observe = enableObserve(server, { blockwise: bw });
    server.get('/n', () => `n=${n}`, { obs: true });
    server.get('/gone', () => ({ code: '4.04', payload: 'no such thing' }), { obs: true });
    server.put('/file', (req) => {
      file = Buffer.from(req.payload);
      return { code: ResponseCode.Changed };
    });
    server.get('/file', () => file);
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    base = `coap://127.0.0.1:${ep.transport.localAddress().port}`;
    ticker = setInterval(() => {
      n++;
      observe.notify('/n');
    }, 100);
  });
  after(async () => {
    clearInterval(ticker);
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('coapkit observe -n 4 prints four notifications, one per line, and deregisters', async () => {
    const r = await runInProcess(['observe', `${base}/n`, '-n', '4', '-v']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.out.trim().split('\n');
    assert.equal(lines.length, 4);
    const values = lines.map((l) => Number(l.replace('n=', '')));
    for (let i = 1; i < 4; i++) assert.ok(values[i]! > values[i - 1]!);
    assert.equal(r.stderr.match(/Observe: \d+/g)?.length, 4);
    for (let i = 0; i < 50 && observe.observerCount('/n') > 0; i++)
      await new Promise((res) => setTimeout(res, 20));
    assert.equal(observe.observerCount('/n'), 0);
  });

  it('coapkit get --observe --duration stops after the duration', async () => {
    const t0 = Date.now();
    const r = await runInProcess(['get', `${base}/n`, '--observe', '-s', '0.5']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 >= 450);
    assert.ok(r.out.trim().split('\n').length >= 3);
  });

  it('an error response ends the observation with its exit status', async () => {
    const r = await runInProcess(['observe', `${base}/gone`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /4\.04 Not Found: no such thing/);
  });

  it('put/get --block-size 64 round-trips a file', async () => {
    const body = randomBytes(20_000);
    writeFileSync(join(dir, 'in'), body);
    const put = await runInProcess(['put', `${base}/file`, '-f', join(dir, 'in'), '--block-size', '64']);
    assert.equal(put.code, 0, put.stderr);
    assert.ok(file.equals(body));
    const get = await runInProcess(['get', `${base}/file`, '-o', join(dir, 'out'), '--block-size', '128']);
    assert.equal(get.code, 0, get.stderr);
    assert.ok(readFileSync(join(dir, 'out')).equals(body));
    const bad = await runInProcess(['get', `${base}/file`, '--block-size', '100']);
    assert.equal(bad.code, 64);
  });
});
