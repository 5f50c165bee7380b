/**
 * `coapkit dissect` on CoAP over TCP (RFC 8323) captured live on loopback
 * (tshark -i lo) between `coapkit serve --tcp-port` and coap+tcp:// clients
 * (coapkit itself, and libcoap's coap-client when installed), compared field
 * by field with tshark's decoding of the same file.
 *
 * tshark 4.0 decodes one CoAP frame per TCP segment and reassembles none: on
 * loopback every frame travels in a segment of its own, so the two must agree
 * on every frame. Split and coalesced frames are covered by the crafted
 * captures of test/unit/dissect-tcp.test.ts (where tshark 4.0 is wrong).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type DissectResult, dissect } from '../../src/dissect/dissect.js';
import { renderText } from '../../src/dissect/render.js';
import { findProgram, runProcess } from '../helpers/proc.js';
import { until } from '../helpers/timing.js';
import { LOOPBACK_PORTS, runCli, type ServeProcess, startServe } from '../integration/cli-helpers.js';
import { arr, hasTshark, type J, tsharkJson, tsharkOptions, unColon } from '../vectors/captures/tshark.js';

const libcoap = findProgram('coap-client-notls');

/** Can this machine capture on loopback (tshark installed, lo listed, privileges)? */
function captureSkip(): string | false {
  if (!hasTshark) return 'tshark is not installed';
  const r = spawnSync('tshark', ['-D'], { timeout: 20_000, encoding: 'utf8' });
  if (!/\blo\b/.test(r.stdout ?? '')) return `tshark cannot capture on lo here: ${r.stderr ?? ''}`.trim();
  return false;
}

describe('dissect: CoAP over TCP captured live, compared with tshark', { skip: captureSkip() }, () => {
  let dir: string;
  let file: string;
  let serve: ServeProcess;
  let port: number;
  let tshark: ChildProcess | undefined;
  let packets: J[] = [];
  let result: DissectResult;
  let connections = 0;
  /** Set when tshark runs but cannot capture here (no privileges): the tests skip with it. */
  let cannotCapture: string | undefined;
  const body = Array.from({ length: 3000 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-dissect-tcp-'));
    file = join(dir, 'tcp.pcapng');
    serve = await startServe([...LOOPBACK_PORTS, '--tcp-port', '0']);
    port = Number(/coap\+tcp:\/\/\S+:(\d+)/.exec(serve.banner)?.[1]);
    assert.ok(port > 0, serve.banner);
    let stderr = '';
    const ts = spawn('tshark', ['-i', 'lo', '-w', file, '-f', `tcp port ${port}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    tshark = ts;
    ts.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    await until(() => /Capturing on/.test(stderr) || ts.exitCode !== null, 'tshark starts capturing', 30_000);
    if (ts.exitCode !== null) {
      cannotCapture = `tshark cannot capture on lo here: ${stderr.trim().split('\n').pop()}`;
      return;
    }
    await until(() => existsSync(file), 'tshark creates the capture file', 30_000);
    const size0 = statSync(file).size;
    const uri = (path: string): string => `coap+tcp://127.0.0.1:${port}${path}`;
    writeFileSync(join(dir, 'body.txt'), body);
    // The capture is live once a probe shows in the file: a SYN to 127.0.0.2 (nobody listens
    // there: refused, no CoAP and no FIN), so that every CoAP connection is captured whole.
    for (let i = 0; i < 40 && statSync(file).size === size0; i++) {
      await new Promise<void>((resolve) => {
        const sock = connect({ host: '127.0.0.2', port });
        sock.on('error', () => resolve());
        sock.on('connect', () => {
          sock.destroy();
          resolve();
        });
      });
      await until(() => statSync(file).size > size0, 'packets reach the capture file', 1000).catch(() => {});
    }
    assert.ok(statSync(file).size > size0, 'the capture is live');
    const runs: string[][] = [
      ['put', uri('/big'), '-f', join(dir, 'body.txt')],
      ['get', uri('/big')],
      ['get', `${uri('/time')}?x=1`],
      ['post', uri('/echo'), '-e', 'hello over tcp'],
      ['delete', uri('/big')],
    ];
    for (const args of runs) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      connections++;
    }
    if (libcoap) {
      const r = await runProcess(libcoap, ['-m', 'put', '-e', 'from libcoap', uri('/lib')], {
        timeoutMs: 15_000,
      });
      assert.equal(r.code, 0, r.stderr);
      const g = await runProcess(libcoap, ['-m', 'get', uri('/lib')], { timeoutMs: 15_000 });
      assert.equal(g.code, 0, g.stderr);
      connections += 2;
    }
    // Wait until every connection's closing FINs are in the file, then stop the capture.
    await until(
      () => {
        const r = spawnCount(file);
        return r >= connections * 2;
      },
      'every connection closed in the capture',
      30_000,
    );
    ts.kill('SIGINT');
    await until(() => ts.exitCode !== null || ts.signalCode !== null, 'tshark exits', 15_000);
    packets = await tsharkJson(file, ['-d', `tcp.port==${port},coap`]);
    assert.ok(packets.length > 0);
    result = dissect(readFileSync(file), { ports: [port] });
  });

  after(async () => {
    if (tshark && tshark.exitCode === null && tshark.signalCode === null) tshark.kill('SIGKILL');
    await serve?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('decodes every frame tshark decodes, with the same code, token, length and options', (t) => {
    if (cannotCapture) return t.skip(cannotCapture);
    const coapFrames = packets.filter((p) => p._source.layers.coap !== undefined);
    assert.ok(coapFrames.length >= 20, `${coapFrames.length} CoAP frames captured`);
    assert.equal(result.error, undefined);
    assert.equal(result.coap.messages.length, coapFrames.length, 'number of CoAP messages');
    let signalingWithOptions = 0;
    for (const p of coapFrames) {
      const l = p._source.layers;
      const n = Number(l.frame['frame.number']);
      const c = l.coap;
      assert.ok(!Array.isArray(c), `frame ${n}: one CoAP frame per segment on loopback`);
      const ours = result.coap.messages.filter((m) => m.frame === n);
      assert.equal(ours.length, 1, `frame ${n}: one message`);
      const m = ours[0]!;
      const where = `frame ${n}`;
      assert.equal(m.transport, 'tcp', where);
      assert.equal(m.code, Number(c['coap.code']), `${where} code`);
      assert.equal(m.token, unColon(c['coap.token']), `${where} token`);
      assert.equal(m.tcp?.frameLength, Number(c['coap.length']), `${where} frame length`);
      assert.deepEqual(
        m.options.map((o) => ({ number: o.number, hex: o.raw })),
        tsharkOptions(c),
        `${where} options`,
      );
      const paths = arr(c['coap.opt.name_tree'])
        .map((o: J) => o['coap.opt.uri_path'])
        .filter((x: J) => x !== undefined);
      assert.equal(m.uriPath, paths.length > 0 ? `/${paths.join('/')}` : '', `${where} Uri-Path`);
      const blockNum = arr(c['coap.opt.name_tree']).find(
        (o: J) => o['coap.opt.block_number'] !== undefined,
      )?.['coap.opt.block_number'];
      if (blockNum !== undefined)
        assert.equal((m.block1 ?? m.block2)?.num, Number(blockNum), `${where} block`);
      if (m.kind === 'signaling' && m.options.length > 0) signalingWithOptions++;
      // The payload: tshark reassembles block-wise bodies, so compare the frame's own bytes.
      const frameBytes = Buffer.from(String(l.tcp['tcp.payload']).replace(/:/g, ''), 'hex');
      assert.equal(
        Buffer.from(frameBytes.subarray(frameBytes.length - m.payload.length)).toString('hex'),
        m.payload.hex,
        `${where} payload`,
      );
    }
    if (libcoap)
      assert.ok(signalingWithOptions >= 2, "libcoap's CSMs carry Max-Message-Size and Block-Wise-Transfer");
  });

  it('names the signaling options and groups requests with their responses', (t) => {
    if (cannotCapture) return t.skip(cannotCapture);
    const csm = result.coap.messages.filter((m) => m.codeName === '7.01 CSM');
    assert.ok(csm.length >= connections * 2, 'a CSM each way on every connection');
    for (const m of csm)
      for (const o of m.options)
        assert.ok(['Max-Message-Size', 'Block-Wise-Transfer'].includes(o.name), o.name);
    const put = result.coap.blockTransfers.find((b) => b.method === 'PUT' && b.uriPath === '/big');
    assert.deepEqual([put?.option, put?.bytes, put?.complete], ['Block1', body.length, true]);
    const get = result.coap.blockTransfers.find((b) => b.method === 'GET' && b.uriPath === '/big');
    assert.deepEqual([get?.option, get?.bytes, get?.complete], ['Block2', body.length, true]);
    for (const ex of result.coap.exchanges.filter(
      (e) => e.transport === 'tcp' && e.method && e.kind === 'request',
    ))
      assert.ok(ex.messages.length >= 2, `exchange ${ex.id} (${ex.method} ${ex.uriPath}) has its response`);
    const echo = result.coap.messages.find((m) => m.uriPath === '/echo');
    const answer = result.coap.messages.find((m) => m.exchange === echo?.exchange && m.kind === 'response');
    assert.equal(answer?.payload.text, 'hello over tcp');
    assert.deepEqual(
      result.tcp?.streams.filter((s) => s.gaps > 0 || s.incompleteFrame),
      [],
    );
    assert.match(
      renderText(result),
      /TCP stream \d+: 127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+, \d+ B in order, [1-9]\d* RFC 8323 frame/,
    );
  });

  it('tshark flags no frame as malformed', (t) => {
    if (cannotCapture) return t.skip(cannotCapture);
    const malformed = packets.filter((p) => p._source.layers._ws?.['_ws.malformed'] !== undefined);
    assert.deepEqual(
      malformed.map((p) => p._source.layers.frame['frame.number']),
      [],
    );
  });
});

/** Frames with FIN in a (possibly still growing) capture file. */
function spawnCount(file: string): number {
  const r = spawnSync(
    'tshark',
    ['-r', file, '-Y', 'tcp.flags.fin==1', '-T', 'fields', '-e', 'frame.number'],
    {
      timeout: 20_000,
      encoding: 'utf8',
    },
  );
  return r.stdout.split('\n').filter((x) => x.trim() !== '').length;
}
