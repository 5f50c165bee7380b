/**
 * `coapkit serve --oscore FILE` and `coapkit get --oscore FILE`, and the
 * restart story of RFC 8613 §7.5 / Appendix B.1.2: the server is killed with
 * SIGKILL and started again from the same context files; no sequence number
 * of either side is used twice, a request captured before the kill and sent
 * again is not performed (it gets a protected 4.01 + Echo), and the client
 * comes back through the Echo round.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadOscoreContext } from '../../src/cli/oscore.js';
import { type CoapMessage, decodeMessage, encodeMessage } from '../../src/codec/message.js';
import type { OscoreContext } from '../../src/oscore/context.js';
import { decodeOscoreOption, sequenceOf } from '../../src/oscore/option.js';
import { type PlainMessage, protectRequest, unprotectResponse } from '../../src/oscore/protect.js';
import { OSCORE_CLIENT, OSCORE_SERVER, oscoreContextDir } from '../helpers/oscore-files.js';
import { pathOptions } from '../helpers/raw-coap.js';
import { withTimeout } from '../helpers/timing.js';
import { LOOPBACK_PORTS, runInProcess, startServe } from './cli-helpers.js';

/** One raw exchange: the datagram out, the first datagram back. */
async function exchange(port: number, datagram: Buffer): Promise<CoapMessage> {
  const sock = dgram.createSocket('udp4');
  try {
    const got = new Promise<Buffer>((resolve) => sock.once('message', (m) => resolve(m)));
    sock.send(datagram, port, '127.0.0.1');
    return decodeMessage(await withTimeout(got, 5000, 'an answer'));
  } finally {
    sock.close();
  }
}

let mid = 1;
/** A protected request by hand, recording the Partial IVs both sides used; answers Echo once. */
async function oscoreRequest(
  port: number,
  ctx: OscoreContext,
  plain: PlainMessage,
  seen: { client: number[]; server: number[] },
  captured?: Buffer[],
): Promise<CoapMessage> {
  let req = plain;
  for (let attempt = 0; attempt < 2; attempt++) {
    const { message, binding } = protectRequest(ctx, req);
    seen.client.push(binding.sequenceNumber);
    const datagram = encodeMessage({
      type: 0,
      messageId: mid++,
      token: Buffer.from([mid & 0xff]),
      ...message,
    });
    captured?.push(datagram);
    const outer = await exchange(port, datagram);
    const opt = outer.options.find((o) => o.number === 9);
    assert.ok(opt, `protected answer expected, got ${outer.code.toString(16)} ${outer.payload.toString()}`);
    const piv = decodeOscoreOption(opt.value).partialIv;
    if (piv !== undefined) seen.server.push(sequenceOf(piv));
    const inner = unprotectResponse(binding, outer);
    const echo = inner.options.find((o) => o.number === 252);
    if (inner.code !== 0x81 || echo === undefined) return inner;
    req = { ...plain, options: [...plain.options, { number: 252, value: Buffer.from(echo.value) }] };
  }
  throw new Error('Echo not accepted');
}

/** `coapkit serve --oscore SFILE --oscore-required REQUIRED` on loopback. */
const serveOscore = (sfile: string, required = '/**') =>
  startServe([...LOOPBACK_PORTS, '--oscore', sfile, '--oscore-required', required]);

describe('coapkit serve --oscore: kill -9 and restart', () => {
  let dir: string;
  let sfile: string;
  let cfile: string;
  before(() => {
    ({ dir, sfile, cfile } = oscoreContextDir('coapkit-oscore-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('coapkit get --oscore talks to coapkit serve --oscore; unprotected requests get 4.02', async () => {
    const serve = await serveOscore(sfile);
    try {
      assert.match(serve.banner, /OSCORE: 1 context \(client kid 6331\); required on \/\*\*/);
      const url = `coap://127.0.0.1:${serve.port}/notes`;
      const put = await runInProcess(['put', url, '-p', 'hello', '--oscore', cfile]);
      assert.equal(put.code, 0, put.stderr);
      const get = await runInProcess(['get', url, '--oscore', cfile]);
      assert.equal(get.out, 'hello');
      const plain = await runInProcess(['get', url]);
      assert.equal(plain.code, 1);
      assert.match(plain.stderr, /4\.02 Bad Option: OSCORE required/);
      const bad = await runInProcess(['get', url, '--oscore', join(dir, 'missing.json')]);
      assert.equal(bad.code, 64);
      // Observe over OSCORE: /time notifies every second (its Max-Age is 1 s).
      const time = `coap://127.0.0.1:${serve.port}/time`;
      const obs = await runInProcess(['get', time, '--observe', '-n', '2', '--oscore', cfile], {
        timeoutMs: 20_000,
      });
      assert.equal(obs.code, 0, obs.stderr);
      assert.equal(obs.out.trim().split('\n').length, 2, obs.out);
      const group = await runInProcess(['get', 'coap://224.0.1.187/time', '--oscore', cfile]);
      assert.equal(group.code, 64, 'no silent fallback to an unprotected group request');
      const disc = await runInProcess(['discover', `coap://127.0.0.1:${serve.port}`, '--oscore', cfile]);
      assert.equal(disc.code, 0, disc.stderr);
      assert.match(disc.out, /^<\/notes>/m);
    } finally {
      await serve.stop();
    }
  });

  it('after SIGKILL: no Partial IV reused, a captured request is not performed, Echo brings the client back', async () => {
    const seen = { client: [] as number[], server: [] as number[] };
    const captured: Buffer[] = [];
    let ctx = loadOscoreContext(cfile);
    const s1 = await serveOscore(sfile);
    try {
      const r = await oscoreRequest(
        s1.port,
        ctx,
        { code: 3, options: pathOptions('/kept'), payload: Buffer.from('one') },
        seen,
      );
      assert.equal(r.code, 0x41, '2.01 Created');
      for (let i = 0; i < 5; i++)
        await oscoreRequest(s1.port, ctx, { code: 1, options: pathOptions('/kept') }, seen);
      const put = await oscoreRequest(
        s1.port,
        ctx,
        { code: 3, options: pathOptions('/replayed'), payload: Buffer.from('two') },
        seen,
        captured,
      );
      assert.equal(put.code, 0x41);
    } finally {
      s1.child.kill('SIGKILL');
      await s1.stop();
    }
    const serverBound = Number(readFileSync(`${sfile}.seq`, 'utf8'));
    assert.ok(
      seen.server.every((n) => n < serverBound),
      'every server Partial IV is below its stored bound',
    );
    const s2 = await serveOscore(sfile);
    try {
      // The captured PUT, sent again to the restarted server: verified, but its freshness is
      // unknown, so it is not performed: a protected 4.01 + Echo (own Partial IV) comes back.
      const again = await exchange(s2.port, captured[captured.length - 1]!);
      const opt = again.options.find((o) => o.number === 9);
      assert.ok(opt, 'the challenge is protected');
      const piv = decodeOscoreOption(opt.value).partialIv!;
      seen.server.push(sequenceOf(piv));
      assert.ok(sequenceOf(piv) >= serverBound, 'the restarted server continues above its stored bound');
      // The client restarts too: its context comes back from the file.
      const used = Math.max(...seen.client);
      ctx = loadOscoreContext(cfile);
      assert.ok(ctx.senderSequenceNumber > used, 'the client continues above every number it used');
      const gone = await oscoreRequest(s2.port, ctx, { code: 1, options: pathOptions('/replayed') }, seen);
      assert.equal(gone.code, 0x84, 'the replayed PUT was not performed (4.04)');
      const back = await oscoreRequest(
        s2.port,
        ctx,
        { code: 3, options: pathOptions('/x'), payload: Buffer.from('3') },
        seen,
      );
      assert.equal(back.code, 0x41);
    } finally {
      await s2.stop();
    }
    assert.equal(new Set(seen.client).size, seen.client.length, 'no client Partial IV used twice');
    assert.equal(new Set(seen.server).size, seen.server.length, 'no server Partial IV used twice');
  });
});

describe('coapkit serve --oscore with access rules: the client is oscore:KID', () => {
  let dir: string;
  let sfile: string;
  let cfile: string;
  before(() => {
    ({ dir, sfile, cfile } = oscoreContextDir('coapkit-oscore-acl-'));
    // Another client the server knows (kid "c2"), allowed less.
    writeFileSync(
      join(dir, 'server2.json'),
      JSON.stringify({ ...OSCORE_SERVER, 'recipient-id_ascii': 'c2' }),
    );
    writeFileSync(join(dir, 'client2.json'), JSON.stringify({ ...OSCORE_CLIENT, 'sender-id_ascii': 'c2' }));
    writeFileSync(
      join(dir, 'acl.txt'),
      'oscore:6331 GET,PUT /notes/**\n* GET /devices/{identity}/**\noscore:6332 GET /notes/**\nanonymous GET /**\n',
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--acl: rules name the OSCORE client; coap:// without OSCORE is anonymous', async () => {
    const serve = await startServe([
      ...LOOPBACK_PORTS,
      '--oscore',
      sfile,
      '--oscore',
      join(dir, 'server2.json'),
      '--acl',
      join(dir, 'acl.txt'),
    ]);
    try {
      const U = `coap://127.0.0.1:${serve.port}`;
      const put = await runInProcess(['put', `${U}/notes/a`, '-p', 'hello', '--oscore', cfile]);
      assert.equal(put.code, 0, put.stderr);
      assert.equal(
        (await runInProcess(['get', `${U}/notes/a`, '--oscore', join(dir, 'client2.json')])).out,
        'hello',
      );
      const other = await runInProcess([
        'put',
        `${U}/notes/b`,
        '-p',
        'x',
        '--oscore',
        join(dir, 'client2.json'),
      ]);
      assert.equal(other.code, 1);
      assert.match(other.stderr, /4\.03 Forbidden: not allowed by the access rules/);
      const plain = await runInProcess(['put', `${U}/notes/c`, '-p', 'x']);
      assert.equal(plain.code, 1);
      assert.match(
        plain.stderr,
        /4\.01 Unauthorized: authenticate \(coaps:\/\/ or OSCORE\) for this request/,
      );
      assert.equal((await runInProcess(['get', `${U}/notes/a`])).out, 'hello', 'anonymous peers read');
      // {identity} is oscore:KID for an OSCORE client.
      const mine = await runInProcess(['get', `${U}/devices/oscore:6331/x`, '--oscore', cfile]);
      assert.match(mine.stderr, /4\.04 Not Found/, 'allowed (no such resource), not refused');
      const theirs = await runInProcess(['get', `${U}/devices/oscore:6332/x`, '--oscore', cfile]);
      assert.match(theirs.stderr, /4\.03 Forbidden/);
    } finally {
      await serve.stop();
    }
  });

  it('with keys and no --acl, an OSCORE client is authenticated: it reads and writes', async () => {
    const serve = await startServe([
      ...LOOPBACK_PORTS,
      '--psk',
      'secret',
      '--identity',
      'dev',
      '--oscore',
      sfile,
    ]);
    try {
      assert.match(serve.banner, /^Access: authenticated \(coaps:\/\/ or OSCORE\) peers read and write/m);
      const U = `coap://127.0.0.1:${serve.port}`;
      const put = await runInProcess(['put', `${U}/notes/a`, '-p', 'hello', '--oscore', cfile]);
      assert.equal(put.code, 0, put.stderr);
      const plain = await runInProcess(['put', `${U}/notes/a`, '-p', 'x']);
      assert.match(plain.stderr, /4\.01 Unauthorized/);
      assert.equal((await runInProcess(['get', `${U}/notes/a`])).out, 'hello');
    } finally {
      await serve.stop();
    }
  });
});

describe("coapkit serve --oscore: the banner's Try line works", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-oscore-try-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** The banner's first `Try: ... get URI ARGS` command, run as printed. */
  async function runTry(banner: string) {
    const line = /^Try: .*? (get \S+.*)$/m.exec(banner);
    assert.ok(line, banner);
    return { command: line[1]!, result: await runInProcess(line[1]!.split(' ')) };
  }

  it("names the client's context file when one lies beside the server's", async () => {
    const d = join(dir, 'pair');
    mkdirSync(d);
    writeFileSync(join(d, 'server.json'), JSON.stringify(OSCORE_SERVER));
    writeFileSync(join(d, 'other.json'), JSON.stringify({ ...OSCORE_CLIENT, 'sender-id_ascii': 'c2' }));
    writeFileSync(join(d, 'client.json'), JSON.stringify(OSCORE_CLIENT));
    writeFileSync(join(d, 'not-a-context.json'), '[1, 2');
    const serve = await serveOscore(join(d, 'server.json'));
    try {
      const { command, result } = await runTry(serve.banner);
      assert.equal(command, `get coap://127.0.0.1:${serve.port}/ --oscore ${join(d, 'client.json')}`);
      assert.equal(result.code, 0, result.stderr);
    } finally {
      await serve.stop();
    }
  });

  it("without one: a placeholder and what the client's own file holds, which works once written", async () => {
    const d = join(dir, 'alone');
    mkdirSync(d);
    writeFileSync(
      join(d, 'server.json'),
      JSON.stringify({ ...OSCORE_SERVER, 'id-context_hex': '37cbf3210017a2d3' }),
    );
    const serve = await serveOscore(join(d, 'server.json'));
    try {
      assert.match(serve.banner, / --oscore CLIENT\.json$/m);
      const note =
        /CLIENT\.json is the client's own context file, server\.json from the other side: the same secret and salt and id-context_hex (\w+), sender-id_hex (\w+), recipient-id_hex (\w+)\)$/m.exec(
          serve.banner,
        );
      assert.ok(note, serve.banner);
      const client = join(d, 'mine.json');
      writeFileSync(
        client,
        JSON.stringify({
          secret_hex: OSCORE_SERVER.secret_hex,
          salt_hex: OSCORE_SERVER.salt_hex,
          'id-context_hex': note[1],
          'sender-id_hex': note[2],
          'recipient-id_hex': note[3],
        }),
      );
      const line = /^Try: .*? (get \S+) --oscore CLIENT\.json$/m.exec(serve.banner);
      assert.ok(line, serve.banner);
      const r = await runInProcess([...line[1]!.split(' '), '--oscore', client]);
      assert.equal(r.code, 0, r.stderr);
      const plain = await runInProcess(line[1]!.split(' '));
      assert.match(plain.stderr, /4\.02 Bad Option: OSCORE required/);
    } finally {
      await serve.stop();
    }
  });

  it('"/" not required: the plain command, which works', async () => {
    const d = join(dir, 'partial');
    mkdirSync(d);
    writeFileSync(join(d, 'server.json'), JSON.stringify(OSCORE_SERVER));
    const serve = await serveOscore(join(d, 'server.json'), '/secure/**');
    try {
      const { command, result } = await runTry(serve.banner);
      assert.equal(command, `get coap://127.0.0.1:${serve.port}/`);
      assert.equal(result.code, 0, result.stderr);
    } finally {
      await serve.stop();
    }
  });
});
