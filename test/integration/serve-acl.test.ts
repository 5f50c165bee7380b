/**
 * `coapkit serve` access control (issue 12): `--acl FILE` with PSK identities
 * A and B over coaps:// (A reads and writes /devices/A/..., gets 4.03 on
 * /devices/B/... for GET, PUT, Observe, and does not discover B's resources;
 * an anonymous coap:// peer gets 4.01), the "alice/bob" scenario with the
 * defaults (keys given: anonymous peers only read), `--anonymous-writes`,
 * `--generate-psk` staying open, and bad rule files.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CoapClient } from '../../src/client/client.js';
import type { CoapResponse } from '../../src/client/response.js';
import { parseLinkFormat } from '../../src/codec/link-format.js';
import { getOption } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { withTimeout } from '../helpers/timing.js';
import { LOOPBACK_PORTS, runInProcess, type ServeProcess, startServe } from './cli-helpers.js';

const T = { timeout: 10_000 };

function links(r: CoapResponse): string[] {
  assert.equal(r.codeText, '2.05 Content');
  return parseLinkFormat(r.payload.toString('utf8')).map((l) => l.target);
}

describe('coapkit serve --acl, PSK identities A and B', { timeout: 120_000 }, () => {
  let dir = '';
  let srv: ServeProcess;
  let S = '';
  let U = '';
  const a = new CoapClient({ psk: { identity: 'A', key: 'key-of-A' } });
  const b = new CoapClient({ psk: { identity: 'B', key: 'key-of-B' } });
  const anon = new CoapClient();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-acl-'));
    writeFileSync(join(dir, 'keys.txt'), 'A:key-of-A\nB:key-of-B\n');
    writeFileSync(
      join(dir, 'rules.acl'),
      [
        '# each device its own subtree',
        '* GET,PUT,POST,DELETE /devices/{identity}/**',
        '* GET /time',
        'anonymous GET /time',
      ].join('\n'),
    );
    srv = await startServe([
      ...LOOPBACK_PORTS,
      '--psk-file',
      join(dir, 'keys.txt'),
      '--acl',
      join(dir, 'rules.acl'),
    ]);
    S = `coaps://127.0.0.1:${srv.securePort}`;
    U = `coap://127.0.0.1:${srv.port}`;
  });
  after(async () => {
    await Promise.all([a.close(), b.close(), anon.close()]);
    await srv?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('says so in the banner', () => {
    assert.match(srv.banner, /^Access: 3 rules from .*rules\.acl \(first match wins/m);
  });

  it('A and B each read and write their own subtree', async () => {
    assert.equal((await a.put(`${S}/devices/A/temp`, { payload: '21', ...T })).codeText, '2.01 Created');
    assert.equal((await b.put(`${S}/devices/B/temp`, { payload: '19', ...T })).codeText, '2.01 Created');
    const r = await a.get(`${S}/devices/A/temp`, T);
    assert.equal(r.codeText, '2.05 Content');
    assert.equal(r.payload.toString(), '21');
    assert.equal((await a.put(`${S}/devices/A/temp`, { payload: '22', ...T })).codeText, '2.04 Changed');
    assert.equal((await a.post(`${S}/devices/A/log`, { payload: 'x', ...T })).codeText, '2.01 Created');
  });

  it("A gets 4.03 on B's subtree: GET, PUT, DELETE, Observe; B's value is untouched", async () => {
    assert.equal((await a.get(`${S}/devices/B/temp`, T)).codeText, '4.03 Forbidden');
    assert.equal((await a.put(`${S}/devices/B/temp`, { payload: '99', ...T })).codeText, '4.03 Forbidden');
    assert.equal((await a.delete(`${S}/devices/B/temp`, T)).codeText, '4.03 Forbidden');
    assert.equal((await a.get(`${S}/devices/Bx`, T)).codeText, '4.03 Forbidden');
    const obs = a.observe(`${S}/devices/B/temp`);
    const first = await withTimeout(obs.registered, 10_000, 'observe answer');
    assert.equal(first.codeText, '4.03 Forbidden');
    assert.equal(getOption(first.options, OptionNumber.Observe), undefined);
    await obs.cancel();
    const r = await b.get(`${S}/devices/B/temp`, T);
    assert.equal(r.payload.toString(), '19');
  });

  it('A observes its own resource and is notified of its change', async () => {
    const obs = a.observe(`${S}/devices/A/temp`);
    const first = await withTimeout(obs.registered, 10_000, 'registration');
    assert.equal(first.codeText, '2.05 Content');
    assert.notEqual(getOption(first.options, OptionNumber.Observe), undefined);
    const it = obs[Symbol.asyncIterator]();
    await it.next(); // the registration response
    assert.equal((await a.put(`${S}/devices/A/temp`, { payload: '23', ...T })).codeText, '2.04 Changed');
    const n = await withTimeout(it.next(), 10_000, 'notification');
    assert.equal(n.value?.payload.toString(), '23');
    await obs.cancel();
  });

  it('discovery lists only what the peer may read', async () => {
    const seenA = links(await a.get(`${S}/.well-known/core`, T));
    assert.ok(seenA.includes('/devices/A/temp'), seenA.join(' '));
    assert.ok(seenA.includes('/time'));
    assert.ok(!seenA.some((l) => l.startsWith('/devices/B')), seenA.join(' '));
    const seenB = links(await b.get(`${S}/.well-known/core`, T));
    assert.ok(seenB.includes('/devices/B/temp'));
    assert.ok(!seenB.some((l) => l.startsWith('/devices/A')), seenB.join(' '));
    const seenAnon = links(await anon.get(`${U}/.well-known/core`, T));
    assert.deepEqual(seenAnon, ['/time']);
  });

  it('an anonymous coap:// peer gets 4.01 where an authenticated one would be allowed, 4.03 elsewhere', async () => {
    assert.equal((await anon.get(`${U}/devices/A/temp`, T)).codeText, '4.01 Unauthorized');
    assert.equal(
      (await anon.put(`${U}/devices/A/temp`, { payload: '0', ...T })).codeText,
      '4.01 Unauthorized',
    );
    assert.equal((await anon.delete(`${U}/devices/A/temp`, T)).codeText, '4.01 Unauthorized');
    const obs = anon.observe(`${U}/devices/A/temp`);
    assert.equal((await withTimeout(obs.registered, 10_000, 'observe answer')).codeText, '4.01 Unauthorized');
    await obs.cancel();
    // Nothing allows anyone to write /other.
    assert.equal((await anon.put(`${U}/other`, { payload: '0', ...T })).codeText, '4.03 Forbidden');
    assert.equal((await anon.get(`${U}/time`, T)).codeText, '2.05 Content');
    assert.equal((await a.get(`${S}/devices/A/temp`, T)).payload.toString(), '23');
  });
});

describe('the alice/bob scenario of issue 12', { timeout: 120_000 }, () => {
  let dir = '';
  const alice = new CoapClient({ psk: { identity: 'alice', key: 'alice-key' } });
  const bob = new CoapClient({ psk: { identity: 'bob', key: 'bob-key' } });
  const anon = new CoapClient();
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-acl-'));
    writeFileSync(join(dir, 'keys.txt'), 'alice:alice-key\nbob:bob-key\n');
    writeFileSync(join(dir, 'own.acl'), '* * /{identity}/**\nanonymous GET /time\n');
  });
  after(async () => {
    await Promise.all([alice.close(), bob.close(), anon.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('with keys and no --acl: anonymous peers only read; authenticated peers read and write', async () => {
    const srv = await startServe([...LOOPBACK_PORTS, '--psk-file', join(dir, 'keys.txt')]);
    try {
      assert.match(
        srv.banner,
        /^Access: authenticated \(coaps:\/\/ or OSCORE\) peers read and write; anonymous/m,
      );
      const S = `coaps://127.0.0.1:${srv.securePort}`;
      const U = `coap://127.0.0.1:${srv.port}`;
      assert.equal((await alice.put(`${S}/alice/secret`, { payload: 'a', ...T })).codeText, '2.01 Created');
      // The defaults do not separate identities (that is what --acl is for).
      assert.equal((await bob.get(`${S}/alice/secret`, T)).payload.toString(), 'a');
      // Anonymous: reads and discovers, cannot overwrite or delete.
      assert.equal((await anon.get(`${U}/alice/secret`, T)).payload.toString(), 'a');
      assert.ok(links(await anon.get(`${U}/.well-known/core`, T)).includes('/alice/secret'));
      assert.equal(
        (await anon.put(`${U}/alice/secret`, { payload: 'x', ...T })).codeText,
        '4.01 Unauthorized',
      );
      assert.equal((await anon.delete(`${U}/alice/secret`, T)).codeText, '4.01 Unauthorized');
      assert.equal((await anon.post(`${U}/alice`, { payload: 'x', ...T })).codeText, '4.01 Unauthorized');
      const obs = anon.observe(`${U}/alice/secret`);
      assert.equal((await withTimeout(obs.registered, 10_000, 'observe')).codeText, '2.05 Content');
      await obs.cancel();
      assert.equal((await alice.get(`${S}/alice/secret`, T)).payload.toString(), 'a');
    } finally {
      await srv.stop('SIGKILL');
    }
  });

  it('with --acl "* * /{identity}/**": bob gets 4.03, the anonymous peer 4.01', async () => {
    const srv = await startServe([
      ...LOOPBACK_PORTS,
      '--psk-file',
      join(dir, 'keys.txt'),
      '--acl',
      join(dir, 'own.acl'),
    ]);
    try {
      const S = `coaps://127.0.0.1:${srv.securePort}`;
      const U = `coap://127.0.0.1:${srv.port}`;
      assert.equal((await alice.put(`${S}/alice/secret`, { payload: 'a', ...T })).codeText, '2.01 Created');
      assert.equal((await bob.get(`${S}/alice/secret`, T)).codeText, '4.03 Forbidden');
      assert.equal((await bob.put(`${S}/alice/secret`, { payload: 'b', ...T })).codeText, '4.03 Forbidden');
      assert.equal((await anon.get(`${U}/alice/secret`, T)).codeText, '4.01 Unauthorized');
      assert.equal((await anon.delete(`${U}/alice/secret`, T)).codeText, '4.01 Unauthorized');
      assert.ok(!links(await anon.get(`${U}/.well-known/core`, T)).includes('/alice/secret'));
      assert.ok(!links(await bob.get(`${S}/.well-known/core`, T)).includes('/alice/secret'));
      assert.equal((await alice.get(`${S}/alice/secret`, T)).payload.toString(), 'a');
    } finally {
      await srv.stop('SIGKILL');
    }
  });

  it('--anonymous-writes opens writes again; --generate-psk (npm start) is open and says so', async () => {
    const open = await startServe([
      ...LOOPBACK_PORTS,
      '--psk-file',
      join(dir, 'keys.txt'),
      '--anonymous-writes',
    ]);
    try {
      assert.match(open.banner, /^Access: open, every peer may read and write, coap:\/\/ included/m);
      const r = await anon.put(`coap://127.0.0.1:${open.port}/alice/secret`, { payload: 'x', ...T });
      assert.equal(r.codeText, '2.01 Created');
    } finally {
      await open.stop('SIGKILL');
    }
    const dev = await startServe([...LOOPBACK_PORTS, '--generate-psk']);
    try {
      const lines = dev.banner.split('\n').filter((l) => l.startsWith('Access:'));
      assert.deepEqual(lines, [
        'Access: open, every peer may read and write (development server; give keys or --acl FILE to restrict)',
      ]);
      const r = await anon.put(`coap://127.0.0.1:${dev.port}/x`, { payload: 'x', ...T });
      assert.equal(r.codeText, '2.01 Created');
    } finally {
      await dev.stop('SIGKILL');
    }
  });

  it("--generate-psk --identity ID: the generated key is ID's, the server as open, the Try line works", async () => {
    const dev = await startServe([...LOOPBACK_PORTS, '--generate-psk', '--identity', 'dev-1']);
    try {
      assert.match(dev.banner, /^PSK generated for this run: identity "dev-1", key \(hex\) [0-9a-f]{32}$/m);
      assert.match(dev.banner, /^Access: open, every peer may read and write \(development server/m);
      const line = /^Try: .*? (get coaps:\/\/\S+ --identity dev-1 --psk-hex [0-9a-f]{32})$/m.exec(dev.banner);
      assert.ok(line, dev.banner);
      const r = await runInProcess(line[1]!.split(' '));
      assert.equal(r.code, 0, r.stderr);
      const w = await anon.put(`coap://127.0.0.1:${dev.port}/x`, { payload: 'x', ...T });
      assert.equal(w.codeText, '2.01 Created');
    } finally {
      await dev.stop('SIGKILL');
    }
    // A key given: --identity names it, as before (and without one, still an error).
    const r = await runInProcess(['serve', '--port', '0', '--identity', 'dev-1']);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, /--identity needs --psk SECRET or --psk-hex HEX/);
  });

  it('a bad rule file stops serve with exit 64 naming file:line; a missing one with 66', async () => {
    const bad = join(dir, 'bad.acl');
    writeFileSync(bad, '# ok\n* GET /x\nalice GOT /y\n');
    const r = await runInProcess(['serve', '--port', '0', '--acl', bad]);
    assert.equal(r.code, 64, r.stderr);
    assert.match(r.stderr, /bad\.acl:3: unknown method "GOT"/);
    const m = await runInProcess(['serve', '--port', '0', '--acl', join(dir, 'none.acl')]);
    assert.equal(m.code, 66, m.stderr);
    assert.match(m.stderr, /cannot read ACL file/);
    const both = await runInProcess(['serve', '--port', '0', '--acl', bad, '--anonymous-writes']);
    assert.equal(both.code, 64);
    assert.match(both.stderr, /--anonymous-writes/);
  });
});
