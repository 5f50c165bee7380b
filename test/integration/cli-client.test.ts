/**
 * The coapkit client commands (get/put/post/delete/..., discover, ping)
 * spawned against an in-test CoapServer with a DynamicStore: payload output,
 * exit codes, -v, -o, stdin payloads, -O options, usage errors.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { formatOptionValue } from '../../src/codec/options.js';
import { optionName } from '../../src/constants/options.js';
import { ResponseCodeError } from '../../src/errors.js';
import { DynamicStore } from '../../src/server/dynamic-store.js';
import { CoapServer } from '../../src/server/server.js';
import { runInProcess as runCli, runCli as spawnCli } from './cli-helpers.js';

let server: CoapServer;
let store: DynamicStore;
let U = '';
let dir = '';
/** A UDP socket that swallows everything: requests to it time out. */
const blackhole = createSocket('udp4');
let silentPort = 0;

before(async () => {
  server = new CoapServer({ maxPayloadSize: 300 });
  store = new DynamicStore({ maxResources: 50, maxSize: 300 });
  store.mount(server);
  server.get('/boom', () => {
    throw new Error('handler failure');
  });
  server.get('/teapot', () => {
    throw new ResponseCodeError('5.03', 'come back later');
  });
  server.get('/sensors/temp', () => ({ payload: '21.5', contentFormat: 0 }), {
    rt: 'temperature',
    ct: 0,
    if: 'sensor',
  });
  server.get('/sensors/hum', () => ({ payload: '40', contentFormat: 0 }), {
    rt: 'humidity',
    ct: 0,
    if: 'sensor',
  });
  server.get('/bin', () => ({ payload: Buffer.from([0, 1, 2, 255]), contentFormat: 42 }));
  // Reports what it received, to check -O, -t, -A and --non.
  const inspect = (req: import('../../src/server/server.js').ServerRequest) => ({
    payload: JSON.stringify({
      type: req.confirmable ? 'CON' : 'NON',
      method: req.method,
      options: req.options.map((o) => `${optionName(o.number)}=${formatOptionValue(o.number, o.value)}`),
      payload: req.text(),
    }),
    contentFormat: 50,
  });
  server.get('/inspect', inspect);
  server.post('/inspect', inspect);
  server.fetch('/inspect', inspect);
  server.ipatch('/inspect', inspect);
  await server.listen({ host: '127.0.0.1', port: 0 });
  U = `coap://127.0.0.1:${server.addresses()[0]!.port}`;
  dir = mkdtempSync(join(tmpdir(), 'coapkit-cli-'));
  await new Promise<void>((r) => blackhole.bind(0, '127.0.0.1', r));
  silentPort = blackhole.address().port;
});

after(async () => {
  await server.close();
  blackhole.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('coapkit request commands', () => {
  it('get writes the raw payload to stdout (no newline added on a pipe) and exits 0', async () => {
    const r = await spawnCli(['get', `${U}/time`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.out, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(r.stderr, '');
  });

  it('binary payloads come out byte-exact', async () => {
    const r = await runCli(['get', `${U}/bin`]);
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout, Buffer.from([0, 1, 2, 255]));
  });

  it('put creates then replaces; get returns it with its Content-Format (-v)', async () => {
    const put = await runCli(['put', `${U}/things/a`, '-p', '{"on":true}', '-t', 'json', '-v']);
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stderr, /^> CON PUT/m);
    assert.match(put.stderr, /Content-Format: 50 \(application\/json\)/);
    assert.match(put.stderr, /^\* PUT coap:\/\/127\.0\.0\.1:\d+\/things\/a$/m);
    assert.match(put.stderr, /^> CON PUT MID=\d+ Token=0x[0-9a-f]{16} {2}to 127\.0\.0\.1:\d+$/m);
    assert.match(put.stderr, /^>\s+payload: 11 bytes$/m);
    assert.match(put.stderr, /^< ACK 2\.01 Created MID=\d+ Token=0x[0-9a-f]{16} {2}from 127\.0\.0\.1:\d+$/m);
    assert.match(
      put.stderr,
      /^\* 2\.01 Created from 127\.0\.0\.1:\d+ in [\d.]+ ms \(rtt [\d.]+ ms, piggybacked\)$/m,
    );
    // The request and the response carry the same Message ID (piggybacked ACK).
    const mids = [...put.stderr.matchAll(/MID=(\d+)/g)].map((m) => m[1]);
    assert.equal(mids.length, 2);
    assert.equal(mids[0], mids[1]);
    const put2 = await runCli(['put', `${U}/things/a`, '-p', '{"on":false}', '-t', 'application/json', '-v']);
    assert.match(put2.stderr, /2\.04 Changed/);
    const get = await runCli(['get', `${U}/things/a`, '-v']);
    assert.equal(get.code, 0);
    assert.equal(get.out, '{"on":false}');
    assert.match(get.stderr, /^< ACK 2\.05 Content/m);
    assert.match(get.stderr, /^<\s+Content-Format: 50 \(application\/json\)/m);
    assert.match(get.stderr, /^<\s+ETag: 0x[0-9a-f]{16}/m);
    assert.match(get.stderr, /^<\s+Max-Age: 60/m);
    assert.match(get.stderr, /^>\s+Uri-Path: "things"/m);
  });

  it('ETag validation via -O ETag gives 2.03 (exit 0, empty stdout); If-None-Match on existing gives 4.12 (exit 1)', async () => {
    await runCli(['put', `${U}/e`, '-p', 'v1']);
    const etag = store.get('/e')!.etag.toString('hex');
    const valid = await runCli(['get', `${U}/e`, '-O', `ETag,0x${etag}`, '-v']);
    assert.equal(valid.code, 0, valid.stderr);
    assert.match(valid.stderr, /2\.03 Valid/);
    assert.equal(valid.out, '');
    const inm = await runCli(['put', `${U}/e`, '-p', 'v2', '-O', 'If-None-Match']);
    assert.equal(inm.code, 1);
    assert.match(inm.stderr, /^coapkit: 4\.12 Precondition Failed/m);
    const ifm = await runCli(['put', `${U}/e`, '-p', 'v3', '-O', `If-Match,0x${etag}`]);
    assert.equal(ifm.code, 0, ifm.stderr);
    assert.equal(store.get('/e')!.payload.toString(), 'v3');
  });

  it('post appends to a collection and reports Location-Path with -v', async () => {
    const r = await runCli(['post', `${U}/log`, '-p', 'entry', '-v']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /2\.01 Created/);
    assert.match(r.stderr, /Location-Path: "log"\n<\s+Location-Path: "1"/);
    assert.equal(store.get('/log/1')?.payload.toString(), 'entry');
  });

  it('delete exits 0; a later get is 4.04 with exit 1 and the diagnostic on stderr', async () => {
    store.set('/gone', 'x');
    const d = await runCli(['delete', `${U}/gone`]);
    assert.equal(d.code, 0);
    const g = await spawnCli(['get', `${U}/gone`]);
    assert.equal(g.code, 1);
    assert.equal(g.out, '');
    assert.equal(g.stderr, 'coapkit: 4.04 Not Found: no resource at /gone\n');
    const q = await runCli(['get', `${U}/gone`, '-q']);
    assert.equal(q.code, 1);
    assert.equal(q.stderr, '');
  });

  it('5.xx responses exit 2', async () => {
    const r = await spawnCli(['get', `${U}/boom`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /5\.00 Internal Server Error/);
    const t = await runCli(['get', `${U}/teapot`]);
    assert.equal(t.code, 2);
    assert.match(t.stderr, /5\.03 Service Unavailable: come back later/);
  });

  it('-f - reads the payload from stdin; -f FILE from a file; -o writes the payload to a file', async () => {
    const r = await spawnCli(['post', `${U}/echo`, '-f', '-', '-t', 'text'], { input: 'from stdin' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.out, 'from stdin');
    const file = join(dir, 'payload.bin');
    writeFileSync(file, Buffer.from([9, 8, 7]));
    const out = join(dir, 'out.bin');
    const f = await runCli(['put', `${U}/echo`, '-f', file, '-t', 'octet', '-o', out]);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(f.out, '');
    assert.deepEqual(readFileSync(out), Buffer.from([9, 8, 7]));
  });

  it('a missing input file exits 66', async () => {
    const r = await spawnCli(['put', `${U}/x`, '-f', join(dir, 'nope.txt')]);
    assert.equal(r.code, 66);
    assert.match(r.stderr, /^coapkit: cannot read payload file ".*nope\.txt": no such file/);
  });

  it('-O adds options by name or number with per-format values; -A sets Accept; --non sends NON', async () => {
    const r = await runCli([
      'get',
      `${U}/inspect?x=1`,
      '-O',
      'Uri-Query,limit=5',
      '-O',
      '2048,0x0102',
      '-O',
      'Max-Age,30',
      '-A',
      'json',
      '--non',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const seen = JSON.parse(r.out) as { type: string; options: string[] };
    assert.equal(seen.type, 'NON');
    assert.ok(seen.options.includes('Uri-Query="x=1"'), r.out);
    assert.ok(seen.options.includes('Uri-Query="limit=5"'), r.out);
    assert.ok(seen.options.includes('Option 2048=0x0102'), r.out);
    assert.ok(seen.options.includes('Max-Age=30'), r.out);
    assert.ok(seen.options.includes('Accept=50 (application/json)'), r.out);
  });

  it('fetch and ipatch send their method codes with payload', async () => {
    const f = await runCli(['fetch', `${U}/inspect`, '-p', 'q', '-t', 'json']);
    assert.equal(JSON.parse(f.out).method, 'FETCH');
    const i = await runCli(['ipatch', `${U}/inspect`, '-p', 'p']);
    const seen = JSON.parse(i.out) as { method: string; payload: string };
    assert.equal(seen.method, 'iPATCH');
    assert.equal(seen.payload, 'p');
  });

  it('limits: 4.13 over the size limit exits 1', async () => {
    const r = await runCli(['put', `${U}/big`, '-p', 'x'.repeat(301)]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /4\.13 Request Entity Too Large/);
  });

  it('timeouts exit 3 with a hint', async () => {
    const r = await spawnCli(['get', `coap://127.0.0.1:${silentPort}/x`, '--timeout', '0.5']);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /^coapkit: .*(time|respon)/im);
    assert.match(r.stderr, /hint: .*server running/);
  });
});

describe('coapkit usage errors (exit 64)', { concurrency: 4 }, () => {
  const cases: Array<[string, string[], RegExp]> = [
    [
      'unknown flag',
      ['get', 'coap://127.0.0.1/', '--bogus'],
      /^coapkit: unknown option '--bogus'\n {2}hint: see 'coapkit get --help'/,
    ],
    ['bad URI', ['get', 'localhost/x'], /^coapkit: invalid URI "localhost\/x": /],
    ['bad scheme', ['get', 'http://x/'], /^coapkit: invalid URI "http:\/\/x\/": unsupported URI scheme/],
    ['bad port', ['get', 'coap://h:99999/'], /^coapkit: invalid URI .*port/],
    [
      'unknown content format',
      ['put', 'coap://127.0.0.1/', '-t', 'nonsense'],
      /unknown content format "nonsense"/,
    ],
    ['unknown option name', ['get', 'coap://127.0.0.1/', '-O', 'Bogus-Opt,1'], /unknown option "Bogus-Opt"/],
    ['bad uint option', ['get', 'coap://127.0.0.1/', '-O', 'Max-Age,abc'], /bad value in -O Max-Age,abc/],
    ['missing URI', ['get'], /^coapkit: missing URI/],
    ['extra argument', ['get', 'coap://a/', 'coap://b/'], /unexpected argument/],
    ['payload twice', ['put', 'coap://a/', '-p', 'x', '-f', 'y'], /only one of -p\/--payload and -f\/--file/],
    ['unknown command', ['frobnicate'], /^coapkit: unknown command "frobnicate"/],
    ['coaps without key', ['get', 'coaps://127.0.0.1/'], /coaps:\/\/ needs a pre-shared key/],
    ['identity without key', ['get', 'coaps://127.0.0.1/', '--identity', 'me'], /without a key/],
    ['bad timeout', ['get', 'coap://a/', '--timeout', '0'], /--timeout expects a positive number/],
    ['no arguments', [], /Usage:/],
  ];
  cases.forEach(([name, args, re], i) => {
    it(name, async () => {
      // The first two through a real process, the rest in-process (same code path, faster).
      const r = i < 2 ? await spawnCli(args) : await runCli(args);
      assert.equal(r.code, 64, `${name}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
  });
});

describe('coapkit help', { concurrency: 4 }, () => {
  it('--help lists commands and the exit status table', async () => {
    const r = await spawnCli(['--help']);
    assert.equal(r.code, 0);
    for (const re of [
      /discover/,
      /ping/,
      /serve/,
      /^\s+0 {2}success/m,
      /^\s+1 {2}the server answered 4\.xx/m,
      /^\s+3 {2}timeout/m,
      /^\s+64 {2}usage/m,
      /^\s+66 {2}input file/m,
      /^\s+70 {2}internal/m,
    ]) {
      assert.match(r.out, re);
    }
  });
  for (const cmd of ['get', 'put', 'discover', 'ping', 'serve']) {
    it(`${cmd} --help`, async () => {
      const r = await runCli([cmd, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.out, new RegExp(`Usage: coapkit (${cmd}|<method>)`));
    });
  }
  it('--version', async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^coapkit \d+\.\d+\.\d+\n$/);
  });
});

describe('coapkit discover and ping', () => {
  it('discover prints one link per line with attributes', async () => {
    store.set('/disc/x', '{}', 50);
    const r = await runCli(['discover', U]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.out.trimEnd().split('\n');
    assert.ok(lines.includes('</sensors/temp>  rt=temperature if=sensor ct=0'), r.out);
    assert.ok(lines.includes('</disc/x>  ct=50 sz=2 title="Dynamic resource"'), r.out);
    assert.ok(lines.some((l) => l.startsWith('</time>')));
  });

  it('filters are sent as Uri-Query and applied locally; --json', async () => {
    const r = await runCli(['discover', U, '--rt', 'temp*', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.out), [
      { href: '/sensors/temp', rt: 'temperature', if: 'sensor', ct: '0' },
    ]);
    const two = await runCli(['discover', U, '--if', 'sensor', '--rt', 'humidity']);
    assert.equal(two.out, '</sensors/hum>  rt=humidity if=sensor ct=0\n');
    const v = await runCli(['discover', U, '--rt', 'humidity', '-v']);
    assert.match(v.stderr, /^\* GET coap:\/\/127\.0\.0\.1:\d+\/\.well-known\/core\?rt=humidity$/m);
    assert.match(v.stderr, /^>\s+Uri-Query: "rt=humidity"$/m);
    assert.match(v.stderr, /^>\s+Accept: 40 \(application\/link-format\)$/m);
    assert.match(v.stderr, /^< ACK 2\.05 Content/m);
    const none = await runCli(['discover', U, '--rt', 'no-such-type']);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.out, '');
    assert.equal(none.stderr, 'coapkit: no matching links\n');
    const noneJson = await runCli(['discover', U, '--href', '/zzz', '--json']);
    assert.equal(noneJson.out, '[]\n');
    const ct = await runCli(['discover', U, '--ct', 'json', '--href', '/disc*']);
    assert.equal(ct.out, '</disc/x>  ct=50 sz=2 title="Dynamic resource"\n');
  });

  it('ping prints RTTs and a summary, exit 0; a silent port exits 3', async () => {
    const r = await spawnCli(['ping', U, '-c', '2', '-i', '0.05']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.out, /^RST from 127\.0\.0\.1:\d+: seq=1 time=[\d.]+ ms$/m);
    assert.match(r.out, /2 sent, 2 received, 0% lost/);
    const dead = await runCli(['ping', `coap://127.0.0.1:${silentPort}`, '--timeout', '0.3']);
    assert.equal(dead.code, 3);
    assert.match(dead.out, /1 sent, 0 received, 100% lost/);
    assert.match(dead.stderr, /hint: is a server running on that port\?/);
  });
});
