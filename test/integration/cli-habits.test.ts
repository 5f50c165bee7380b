/**
 * Issue 18 items 5 and 7: the habits users bring from libcoap's coap-client and
 * from curl (-m, -e, -b, -B, -k/-u, -N, -T, -s; -d, @file, -X, --fail, -i), the
 * -p clash, payload warnings, unknown-flag suggestions; ping to a closed port
 * fails fast; observe --count -1; Ctrl-C exits 130; -o into a missing folder 73.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { enableBlockwise } from '../../src/blockwise/server.js';
import { CoapClient } from '../../src/client/client.js';
import { formatOptionValue } from '../../src/codec/options.js';
import { optionName } from '../../src/constants/options.js';
import { NetworkError } from '../../src/errors.js';
import { enableObserve, type ObserveServer } from '../../src/observe/server.js';
import { DynamicStore } from '../../src/server/dynamic-store.js';
import { CoapServer, type ServerRequest } from '../../src/server/server.js';
import { freePort } from '../helpers/net.js';
import { LOOPBACK_PORTS, ROOT, runCli, runInProcess, type ServeProcess, startServe } from './cli-helpers.js';

const server = new CoapServer({ maxPayloadSize: 1 << 16 });
let observe: ObserveServer;
let store: DynamicStore;
let U = '';
let dir = '';
let ticker: NodeJS.Timeout;
let n = 0;
/** Requests /inspect has seen. */
let inspected = 0;
/** A UDP socket that swallows everything: requests to it time out. */
const blackhole = createSocket('udp4');
let silentPort = 0;

interface Seen {
  type: string;
  method: string;
  token: string;
  peerPort: number;
  options: string[];
  payload: string;
}

function seen(out: string): Seen {
  return JSON.parse(out) as Seen;
}

before(async () => {
  const bw = enableBlockwise(server, { maxBodySize: 1 << 16 });
  observe = enableObserve(server, { blockwise: bw });
  store = new DynamicStore({ maxResources: 50, maxSize: 1 << 16 });
  store.mount(server);
  // Reports what it received: method, type, token, source port, options, payload.
  const inspect = (req: ServerRequest) => {
    inspected++;
    return {
      payload: JSON.stringify({
        type: req.confirmable ? 'CON' : 'NON',
        method: req.method,
        token: req.token.toString('hex'),
        peerPort: req.peer.port,
        options: req.options.map((o) => `${optionName(o.number)}=${formatOptionValue(o.number, o.value)}`),
        payload: req.text(),
      } satisfies Seen),
      contentFormat: 50,
    };
  };
  for (const m of ['get', 'post', 'put', 'delete', 'fetch'] as const) server[m]('/inspect', inspect);
  server.get('/n', () => `n=${n}`, { obs: true });
  server.get('/big', () => 'b'.repeat(300));
  await server.listen({ host: '127.0.0.1', port: 0 });
  U = `coap://127.0.0.1:${server.addresses()[0]!.port}`;
  dir = mkdtempSync(join(tmpdir(), 'coapkit-habits-'));
  await new Promise<void>((r) => blackhole.bind(0, '127.0.0.1', r));
  silentPort = blackhole.address().port;
  ticker = setInterval(() => {
    n++;
    observe.notify('/n');
  }, 100);
});

after(async () => {
  clearInterval(ticker);
  await server.close();
  blackhole.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("libcoap's coap-client commands (its man page and --help), with coapkit in place of coap-client", () => {
  it('coapkit URI and coapkit -m get URI/ are GETs', async () => {
    const bare = await runInProcess([`${U}/inspect`]);
    assert.equal(bare.code, 0, bare.stderr);
    assert.equal(seen(bare.out).method, 'GET');
    const m = await runInProcess(['-m', 'get', `${U}/inspect`]);
    assert.equal(m.code, 0, m.stderr);
    assert.equal(seen(m.out).method, 'GET');
  });

  it('coapkit -m get URI/.well-known/core lists the resources', async () => {
    const r = await runInProcess(['-m', 'get', `${U}/.well-known/core`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.out, /<\/inspect>/);
  });

  it('echo -n "mode=on" | coapkit -m put URI?color=r -f-', async () => {
    const r = await runCli(['-m', 'put', `${U}/inspect?color=r`, '-f-'], { input: 'mode=on' });
    assert.equal(r.code, 0, r.stderr);
    const s = seen(r.out);
    assert.equal(s.method, 'PUT');
    assert.equal(s.payload, 'mode=on');
    assert.ok(s.options.includes('Uri-Query="color=r"'), s.options.join(' '));
  });

  it('coapkit -m put URI -T 3a -t binary -f to_upload (token as text, like libcoap)', async () => {
    const file = join(dir, 'to_upload');
    writeFileSync(file, 'firmware');
    const r = await runInProcess(['-m', 'put', `${U}/inspect`, '-T', '3a', '-t', 'binary', '-f', file]);
    assert.equal(r.code, 0, r.stderr);
    const s = seen(r.out);
    assert.equal(s.token, Buffer.from('3a').toString('hex'));
    assert.ok(
      s.options.some((o) => o.startsWith('Content-Format=42')),
      s.options.join(' '),
    );
    assert.equal(s.payload, 'firmware');
  });

  it('coapkit -m get -T cafe URI; echo -n 1000 | coapkit -m put -T cafe URI -f -', async () => {
    const g = await runInProcess(['-m', 'get', '-T', 'cafe', `${U}/inspect`]);
    assert.equal(g.code, 0, g.stderr);
    assert.equal(seen(g.out).token, Buffer.from('cafe').toString('hex'));
    const p = await runInProcess(['-m', 'put', '-T', 'cafe', `${U}/inspect`, '-f', '-'], { input: '1000' });
    assert.equal(p.code, 0, p.stderr);
    assert.equal(seen(p.out).payload, '1000');
  });

  it('coapkit -m put -e hello URI stores it; -e decodes %XX as libcoap does', async () => {
    const put = await runInProcess(['-m', 'put', '-e', 'hello', `${U}/greeting`]);
    assert.equal(put.code, 0, put.stderr);
    assert.equal((await runInProcess([`${U}/greeting`])).out, 'hello');
    const enc = await runInProcess(['-m', 'post', '-e', 'caf%C3%A9 100%', `${U}/inspect`]);
    assert.equal(seen(enc.out).payload, 'café 100%');
  });

  it('-m on a method command must agree; -m/-X take any case; bad methods are named', async () => {
    const same = await runInProcess(['get', '-m', 'GET', `${U}/inspect`]);
    assert.equal(same.code, 0, same.stderr);
    const clash = await runInProcess(['get', '-m', 'put', `${U}/inspect`]);
    assert.equal(clash.code, 64);
    assert.match(clash.stderr, /-m put disagrees with the "get" command/);
    const bad = await runInProcess(['-X', 'HEAD', `${U}/inspect`]);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /-X HEAD: not a CoAP method[\s\S]*no HEAD/);
    const x = await runInProcess(['-X', 'delete', `${U}/inspect`]);
    assert.equal(seen(x.out).method, 'DELETE');
    // Flags first, then the method command.
    const first = await runInProcess(['-N', 'post', `${U}/inspect`]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(seen(first.out).method, 'POST');
  });

  it('-N sends NON; -T 0xHEX is bytes; a token over 8 bytes is a usage error', async () => {
    const r = await runInProcess(['-m', 'get', '-N', '-T', '0x0102ff', `${U}/inspect`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(seen(r.out).type, 'NON');
    assert.equal(seen(r.out).token, '0102ff');
    const long = await runInProcess(['get', '-T', '123456789', `${U}/inspect`]);
    assert.equal(long.code, 64);
    assert.match(long.stderr, /9 bytes; a CoAP token has at most 8/);
  });

  it('-b SIZE and -b 0,SIZE set the block size; -b 2,64 says what is not supported', async () => {
    for (const b of ['64', '0,64']) {
      const r = await runInProcess(['-m', 'get', '-b', b, `${U}/big`, '-v']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.out, 'b'.repeat(300));
      assert.match(r.stderr, /Block2: 4\/0\/64/);
    }
    const up = await runInProcess(['-m', 'put', '-b', '32', '-e', 'u'.repeat(100), `${U}/up`, '-v']);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, /Block1: 3\/0\/32/);
    const start = await runInProcess(['get', '-b', '2,64', `${U}/big`]);
    assert.equal(start.code, 64);
    assert.match(start.stderr, /starting at block 2 is not supported[\s\S]*use -b 64/);
  });

  it('-B SECONDS is the timeout', async () => {
    const t0 = performance.now();
    const r = await runInProcess(['-m', 'get', '-B', '0.3', `coap://127.0.0.1:${silentPort}/x`]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /no response from .* within 300 ms/);
    assert.ok(performance.now() - t0 < 10_000);
  });

  it('-s SECONDS on a GET observes for that long (coap-client -s), exit 0', async () => {
    const r = await runInProcess(['-m', 'get', '-s', '0.6', `${U}/n`]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.out.trim().split('\n');
    assert.ok(lines.length >= 2, r.out);
    assert.ok(
      lines.every((l) => /^n=\d+$/.test(l)),
      r.out,
    );
    const put = await runInProcess(['-m', 'put', '-s', '1', `${U}/n`]);
    assert.equal(put.code, 64);
    assert.match(put.stderr, /-s observes a resource[\s\S]*curl's -s \(silent\) is -q/);
  });

  it('-p 5683 on a GET is refused and names --local-port; --payload 5683 is sent with a warning', async () => {
    const before = inspected;
    const r = await runInProcess(['-m', 'get', '-p', '5683', `${U}/inspect`]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /-p is the payload here[\s\S]*for libcoap's local port use --local-port 5683/);
    assert.equal(inspected, before, 'nothing sent');
    const long = await runInProcess(['get', '--payload', '5683', `${U}/inspect`]);
    assert.equal(long.code, 0, long.stderr);
    assert.equal(seen(long.out).payload, '5683');
    assert.match(long.stderr, /^coapkit: warning: a GET with a 4-byte payload/);
    // On a PUT a number is a fine payload.
    const put = await runInProcess(['put', '-p', '42', `${U}/inspect`]);
    assert.equal(put.code, 0, put.stderr);
    assert.equal(put.stderr, '');
  });

  it('--local-port N sends from that port', async () => {
    let r: Awaited<ReturnType<typeof runInProcess>> | undefined;
    let port = 0;
    // The freed port could be taken again between close and bind: a few tries.
    for (let i = 0; i < 3; i++) {
      port = await freePort();
      r = await runInProcess(['get', '--local-port', String(port), `${U}/inspect`]);
      if (r.code === 0) break;
    }
    assert.equal(r!.code, 0, r!.stderr);
    assert.equal(seen(r!.out).peerPort, port);
  });

  it('a GET or DELETE with a payload warns on stderr (one line); -q silences it; PUT does not warn', async () => {
    const d = await runInProcess(['delete', `${U}/inspect`, '-e', 'x']);
    assert.equal(d.code, 0, d.stderr);
    assert.equal(d.stderr.split('\n').filter(Boolean).length, 1);
    assert.match(d.stderr, /warning: a DELETE with a 1-byte payload/);
    const q = await runInProcess(['get', `${U}/inspect`, '-e', 'x', '-q']);
    assert.equal(q.stderr, '');
    const put = await runInProcess(['put', `${U}/inspect`, '-e', 'x']);
    assert.equal(put.stderr, '');
  });
});

describe('PSK with -u ID -k KEY against coapkit serve', { timeout: 60_000 }, () => {
  let s: ServeProcess;
  before(async () => {
    s = await startServe([...LOOPBACK_PORTS, '--identity', 'me', '--psk', 'secret']);
  });
  after(async () => {
    await s.stop();
  });

  it('coapkit -m get -u me -k secret coaps://... (coap-client -u -k)', async () => {
    const r = await runInProcess([
      '-m',
      'get',
      '-u',
      'me',
      '-k',
      'secret',
      `coaps://127.0.0.1:${s.securePort}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.out.length > 0);
    const put = await runCli([
      '-m',
      'put',
      '-u',
      'me',
      '-k',
      'secret',
      '-e',
      'hi',
      `coaps://127.0.0.1:${s.securePort}/x`,
    ]);
    assert.equal(put.code, 0, put.stderr);
    const get = await runInProcess(['get', `coap://127.0.0.1:${s.port}/x`]);
    assert.equal(get.out, 'hi');
  });
});

describe('curl habits', () => {
  it('-d TEXT without a method is a POST (curl); -X PUT -d sends a PUT', async () => {
    const r = await runInProcess(['-d', 'a=1', `${U}/inspect`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(seen(r.out).method, 'POST');
    assert.equal(seen(r.out).payload, 'a=1');
    const x = await runInProcess(['-X', 'PUT', '--data', 'b', `${U}/inspect`]);
    assert.equal(seen(x.out).method, 'PUT');
  });

  it('-d @FILE and -p @FILE read a file; @- reads stdin; a missing @FILE exits 66', async () => {
    const file = join(dir, 'reading.json');
    writeFileSync(file, '{"t":21}');
    const d = await runInProcess(['post', `${U}/inspect`, '-d', `@${file}`]);
    assert.equal(seen(d.out).payload, '{"t":21}');
    const p = await runInProcess(['put', `${U}/inspect`, '-p', `@${file}`]);
    assert.equal(seen(p.out).payload, '{"t":21}');
    const stdin = await runCli(['post', `${U}/inspect`, '-d', '@-'], { input: 'from stdin' });
    assert.equal(seen(stdin.out).payload, 'from stdin');
    const missing = await runInProcess(['post', `${U}/inspect`, '-d', `@${join(dir, 'nope')}`]);
    assert.equal(missing.code, 66);
    const two = await runInProcess(['post', `${U}/inspect`, '-d', 'x', '-e', 'y']);
    assert.equal(two.code, 64);
    assert.match(two.stderr, /use only one of -d\/--data and -e\/--text/);
  });

  it('-i prints the code and options, an empty line, then the body; for 4.xx too', async () => {
    const put = await runInProcess(['put', '-e', 'v', `${U}/inc`, '-t', 'text']);
    assert.equal(put.code, 0, put.stderr);
    const r = await runInProcess(['get', `${U}/inc`, '-i']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.out,
      /^2\.05 Content\n(?:[A-Za-z0-9-]+: .*\n)*Content-Format: 0 \(text\/plain[^)]*\)\n(?:[A-Za-z0-9-]+: .*\n)*\nv$/,
    );
    assert.match(r.out, /\nETag: 0x[0-9a-f]+\n/);
    const nf = await runInProcess(['get', `${U}/nothing-here`, '-i']);
    assert.equal(nf.code, 1);
    assert.match(nf.out, /^4\.04 Not Found\n/);
    assert.equal(nf.stderr, '');
  });

  it('--fail: on 4.xx no body anywhere, only the code on stderr, exit 1', async () => {
    const r = await runInProcess(['get', `${U}/nothing-here`, '-i', '--fail']);
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.equal(r.stderr, 'coapkit: 4.04 Not Found\n');
    const ok = await runInProcess(['get', `${U}/inspect`, '--fail']);
    assert.equal(ok.code, 0);
  });
});

describe('unknown flags name the flag and the closest known one', () => {
  const cases: Array<[string[], RegExp]> = [
    [
      ['get', 'coap://127.0.0.1/', '--tiemout', '1'],
      /unknown option '--tiemout'\n {2}hint: did you mean -B\/--timeout\?/,
    ],
    [['get', 'coap://127.0.0.1/', '--paylod', 'x'], /hint: did you mean -p\/--payload\?/],
    [
      ['get', 'coap://127.0.0.1/', '-H', 'x'],
      /unknown option '-H'\n {2}hint: add options with -O NAME,VALUE/,
    ],
    [['get', 'coap://127.0.0.1/', '-a', '::1'], /use --local-address ADDR/],
    [['get', 'coap://127.0.0.1/', '--silent'], /use -q\/--quiet/],
    [['get', 'coap://127.0.0.1/', '-J', '1234'], /PKCS#11 is not supported/],
    [['observe', 'coap://127.0.0.1/', '--cuont', '1'], /did you mean -n\/--count\?/],
    [['ping', 'coap://127.0.0.1/', '-v', '9'], /unknown option '-v'/],
    [['get', 'coap://127.0.0.1/', '-v', '9'], /unexpected argument "9"\n {2}hint: -v takes no level here/],
  ];
  for (const [args, re] of cases) {
    it(args.slice(2).join(' '), async () => {
      const r = await runInProcess(args);
      assert.equal(r.code, 64);
      assert.match(r.stderr, re);
    });
  }
});

describe('ping, observe --count, Ctrl-C, -o (item 7)', () => {
  it('ping to a closed port fails at once (ICMP port unreachable), not after the timeout', async () => {
    const port = await freePort();
    const t0 = performance.now();
    const r = await runInProcess([
      'ping',
      `coap://127.0.0.1:${port}`,
      '-c',
      '2',
      '-i',
      '0',
      '--timeout',
      '30',
    ]);
    const ms = performance.now() - t0;
    assert.equal(r.code, 3);
    assert.match(r.out, /seq=1 connection refused \(ICMP port unreachable\)/);
    assert.match(r.out, /seq=2 connection refused/);
    assert.match(r.stderr, /connection refused/);
    // Two tries of 30 s each before; a generous bound that a shared machine still meets.
    assert.ok(ms < 15_000, `took ${ms.toFixed(0)} ms`);
  });

  it('CoapClient.ping rejects with the NetworkError of the ICMP unreachable', async () => {
    const port = await freePort();
    const client = new CoapClient();
    try {
      const t0 = performance.now();
      await assert.rejects(client.ping(`coap://127.0.0.1:${port}`), (e: unknown) => {
        assert.ok(e instanceof NetworkError, String(e));
        assert.match(e.message, /connection refused/);
        return true;
      });
      assert.ok(performance.now() - t0 < 15_000);
    } finally {
      await client.close();
    }
  });

  it('observe --count -1 / -n -1: a clear error saying what is valid', async () => {
    for (const args of [
      ['observe', `${U}/n`, '--count', '-1'],
      ['observe', `${U}/n`, '-n', '-1'],
      ['get', `${U}/n`, '--observe', '--count', '-1'],
    ]) {
      const r = await runInProcess(args);
      assert.equal(r.code, 64);
      assert.match(r.stderr, /--count expects an integer >= 1, got "-1"\n {2}hint: leave --count out/);
      assert.doesNotMatch(r.stderr, /ambiguous/);
    }
  });

  for (const [label, args, signal, status] of [
    ['observe URI, SIGINT', ['observe'], 'SIGINT', 130],
    ['get URI --observe, SIGINT', ['get', '--observe'], 'SIGINT', 130],
    ['-m get -s 60 URI, SIGINT', ['-m', 'get', '-s', '60'], 'SIGINT', 130],
    ['observe URI, SIGTERM', ['observe'], 'SIGTERM', 143],
  ] as const) {
    it(`${label}: deregisters and exits ${status}`, { timeout: 30_000 }, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args, `${U}/n`], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stderr.on('data', (c: Buffer) => {
        err += c.toString();
      });
      const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
      const kill = setTimeout(() => child.kill('SIGKILL'), 25_000);
      // Signal once the first notification is out (the observation is registered).
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('\n')) resolve();
        });
        child.on('close', () => resolve());
      });
      child.kill(signal);
      const code = await exited;
      clearTimeout(kill);
      assert.equal(code, status, err);
      for (let i = 0; i < 500 && observe.observerCount('/n') > 0; i++)
        await new Promise((r) => setTimeout(r, 20));
      assert.equal(observe.observerCount('/n'), 0, 'deregistered');
    });
  }

  it('-o into a missing folder exits 73 before anything is sent; -o a folder exits 73', async () => {
    const r = await runInProcess(['put', `${U}/o-test`, '-e', 'x', '-o', join(dir, 'missing', 'out')]);
    assert.equal(r.code, 73);
    assert.match(r.stderr, /^coapkit: cannot create output file ".*out": no such folder/);
    assert.equal((await runInProcess(['get', `${U}/o-test`])).code, 1, 'the PUT was not sent');
    const dash = await runInProcess(['get', `${U}/inspect`, '-o', '-']);
    assert.equal(seen(dash.out).method, 'GET', 'libcoap -o - is stdout');
    const d = await runInProcess(['get', `${U}/inspect`, '-o', dir]);
    assert.equal(d.code, 73);
    assert.match(d.stderr, /it is a folder/);
  });

  it('--help documents the new flags and exit statuses', async () => {
    const r = await runInProcess(['get', '--help']);
    for (const f of [
      '-m, --method',
      '-X, --request',
      '-e, --text',
      '-d, --data',
      '-i, --include',
      '--fail',
      '--local-port',
      '-T, --token',
      '-s, --duration',
      '-u, --identity',
      '-k, --psk',
    ]) {
      assert.ok(r.out.includes(f), f);
    }
    assert.match(r.out, /73 the -o FILE cannot be created/);
    const o = await runInProcess(['observe', '--help']);
    assert.match(o.out, /exits 130 \(SIGINT\)/);
    const m = await runInProcess(['--help']);
    assert.match(m.out, /\n {3}73 {2}cannot create the -o FILE/);
  });
});
