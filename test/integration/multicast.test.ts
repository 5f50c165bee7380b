/**
 * CoAP group communication (RFC 7252 §8) over real UDP multicast.
 *
 * Multicast must never leave this machine, and the host's routes send
 * 224.0.0.0/4 out of its real interface. So the outer test (root only)
 * creates a private network namespace with nothing but loopback and a veth
 * pair inside it, routes 224.0.0.0/4 to lo there (IPv4 groups work on lo),
 * brings up the veth pair with DAD off (IPv6 multicast does not loop back
 * over lo; ff02::fd%ckv0 works), and re-runs this file inside it
 * (COAPKIT_MC_INNER=1). The namespace is deleted afterwards. Without root or
 * iproute2 the test is skipped with the reason.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CoapClient } from '../../src/client/client.js';
import { decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { MessageType, ResponseCode } from '../../src/constants/codes.js';
import { OptionNumber } from '../../src/constants/options.js';
import { ResponseCodeError } from '../../src/errors.js';
import type { MulticastListener } from '../../src/multicast/server.js';
import { CoapServer } from '../../src/server/server.js';

const FILE = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const INNER = process.env.COAPKIT_MC_INNER === '1';
const GROUP = '224.0.1.187';
const LEISURE = 300;
const WINDOW = 1200;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

/** The environment for the inner run: not a child of this test runner (NODE_TEST_CONTEXT). */
function innerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, COAPKIT_MC_INNER: '1' };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

if (!INNER) {
  test('multicast suite inside a private network namespace', { timeout: 150_000 }, async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root to create a network namespace (ip netns add)');
      return;
    }
    const ns = `coapkit-mc-${process.pid}`;
    try {
      sh('ip', ['netns', 'add', ns]);
    } catch (err) {
      t.skip(`cannot create a network namespace: ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    try {
      const inNs = (...args: string[]) => sh('ip', ['netns', 'exec', ns, ...args]);
      try {
        inNs('ip', 'link', 'set', 'lo', 'up');
        inNs('ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo');
        inNs('sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
        inNs('ip', 'link', 'add', 'ckv0', 'type', 'veth', 'peer', 'name', 'ckv1');
        inNs('ip', 'link', 'set', 'ckv0', 'up');
        inNs('ip', 'link', 'set', 'ckv1', 'up');
        // A global address for site-local (ff05::fd) source selection.
        inNs('ip', '-6', 'addr', 'add', 'fd77::1/64', 'dev', 'ckv0', 'nodad');
      } catch (err) {
        t.skip(`cannot set up multicast in the namespace: ${(err as Error).message.split('\n')[0]}`);
        return;
      }
      const child = spawn(
        'ip',
        ['netns', 'exec', ns, process.execPath, '--import', 'tsx', '--test', '--test-reporter=spec', FILE],
        { cwd: ROOT, env: innerEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        out += d;
      });
      const killer = setTimeout(() => child.kill('SIGKILL'), 140_000);
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      clearTimeout(killer);
      for (const l of out.split('\n'))
        if (/^\s*(✔|✖|﹣|ℹ (tests|pass|fail|skipped))/.test(l)) t.diagnostic(l);
      assert.equal(code, 0, `inner multicast tests failed:\n${out}`);
      // The inner run really ran the suite (not, say, zero tests).
      assert.match(out, /ℹ fail 0/);
      assert.ok(Number(/ℹ pass (\d+)/.exec(out)?.[1]) >= 13, `inner run passed too few tests:\n${out}`);
    } finally {
      try {
        sh('ip', ['netns', 'del', ns]);
      } catch {
        // already gone
      }
    }
  });
} else {
  const servers: CoapServer[] = [];
  const listeners: MulticastListener[][] = [];
  const client = new CoapClient();

  async function member(n: number, rt: string): Promise<CoapServer> {
    const s = new CoapServer();
    s.get('/hello', () => `hello from ${n}`, { rt: 'greeting' });
    s.get('/sensor', () => `${20 + n}`, { rt });
    s.get('/empty', () => ({ code: ResponseCode.Content }));
    s.get('/bad', () => {
      throw new ResponseCodeError(ResponseCode.BadRequest, 'no');
    });
    s.get('/boom', () => {
      throw new Error('boom');
    });
    s.put('/thing', () => ({ code: ResponseCode.Changed }));
    await s.listen({ host: `127.0.0.${n}`, port: 0 });
    listeners.push(await s.listenMulticast({ groups: [GROUP], interface: '127.0.0.1', leisureMs: LEISURE }));
    servers.push(s);
    return s;
  }

  const mc = (path: string, extra: Parameters<CoapClient['multicast']>[1] = {}) =>
    client.multicast(`coap://${GROUP}${path}`, {
      windowMs: WINDOW,
      multicastInterface: '127.0.0.1',
      ...extra,
    });

  describe('IPv4 group 224.0.1.187 on loopback, three members', () => {
    before(async () => {
      await member(2, 'temperature');
      await member(3, 'temperature');
      await member(4, 'humidity');
    });
    after(async () => {
      await Promise.all(servers.map((s) => s.close()));
      await client.close();
    });

    test('one NON GET collects one NON response per member, each from its unicast address', async () => {
      const t0 = performance.now();
      const res = await mc('/hello');
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= WINDOW - 50, `collected for the whole window (${elapsed} ms)`);
      assert.equal(res.length, 3, `three responses, got ${res.map((r) => r.text()).join(', ')}`);
      const bySource = new Map(res.map((r) => [r.peer.address, r]));
      for (const n of [2, 3, 4]) {
        const r = bySource.get(`127.0.0.${n}`);
        assert.ok(r, `a response from 127.0.0.${n}`);
        assert.equal(r.code, ResponseCode.Content);
        assert.equal(r.text(), `hello from ${n}`);
        assert.equal(r.type, MessageType.NON);
        assert.equal(r.peer.port, servers[n - 2]!.addresses()[0]!.port, 'from the unicast endpoint');
        // §8.2: each response waited a random time within the leisure.
        assert.ok(r.rttMs < LEISURE + 600, `rtt ${r.rttMs} within leisure ${LEISURE} ms`);
      }
      // The same token for all (matched on token only).
      const tokens = new Set(res.map((r) => r.token.toString('hex')));
      assert.equal(tokens.size, 1);
      // A follow-up goes unicast to a member that answered.
      const one = bySource.get('127.0.0.3')!;
      const u = await client.get(`coap://127.0.0.3:${one.peer.port}/hello`, { timeout: 3000 });
      assert.equal(u.text(), 'hello from 3');
    });

    test('error responses and empty 2.05 are suppressed; a 2.04 is sent', async () => {
      for (const path of ['/missing', '/bad', '/boom', '/empty']) {
        const res = await mc(path, { windowMs: LEISURE + 400 });
        assert.deepEqual(
          res.map((r) => `${r.peer.address} ${r.code}`),
          [],
          `no response for ${path}`,
        );
      }
      const put = await mc('/thing', { method: 'PUT', payload: 'x', windowMs: LEISURE + 400 });
      assert.equal(put.length, 3);
      assert.ok(put.every((r) => r.code === ResponseCode.Changed));
    });

    test('/.well-known/core?rt= answers only from members with a matching link', async () => {
      const temp = await mc('/.well-known/core?rt=temperature');
      assert.deepEqual(temp.map((r) => r.peer.address).sort(), ['127.0.0.2', '127.0.0.3']);
      for (const r of temp) assert.match(r.text(), /<\/sensor>;rt="temperature"/);
      const hum = await mc('/.well-known/core?rt=humidity');
      assert.deepEqual(
        hum.map((r) => r.peer.address),
        ['127.0.0.4'],
      );
      const none = await mc('/.well-known/core?rt=pressure', { windowMs: LEISURE + 400 });
      assert.equal(none.length, 0, 'no match: silence instead of 4.04');
      const all = await mc('/.well-known/core');
      assert.equal(all.length, 3);
    });

    test('CON requests, pings and malformed messages to the group get nothing back (no ACK, no RST)', async () => {
      const sock = dgram.createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '0.0.0.0', () => r()));
      sock.setMulticastInterface('127.0.0.1');
      sock.setMulticastLoopback(true);
      const got: Buffer[] = [];
      sock.on('message', (m) => got.push(m));
      const send = (b: Uint8Array) =>
        new Promise<void>((r, j) => sock.send(b, 5683, GROUP, (e) => (e ? j(e) : r())));
      try {
        const path = [{ number: OptionNumber.UriPath, value: Buffer.from('hello') }];
        await send(
          encodeMessage({
            type: MessageType.CON,
            code: 1,
            messageId: 0x1234,
            token: Buffer.from([1]),
            options: path,
          }),
        );
        await send(Buffer.from([0x40, 0, 0x12, 0x35])); // CoAP ping
        await send(Buffer.from([0x41, 0x01, 0x12, 0x36])); // CON GET, token length 1 but no token
        await send(Buffer.from([0x50, 0x45, 0x12, 0x37])); // NON 2.05 matching nothing
        // NON with an unrecognized critical option (9): rejected silently.
        await send(
          encodeMessage({
            type: MessageType.NON,
            code: 1,
            messageId: 0x1238,
            token: Buffer.from([2]),
            options: [...path, { number: 9, value: Buffer.from('x') }],
          }),
        );
        // Control: a NON request in the same way is answered by all three.
        await send(
          encodeMessage({
            type: MessageType.NON,
            code: 1,
            messageId: 0x1239,
            token: Buffer.from([3]),
            options: path,
          }),
        );
        await new Promise((r) => setTimeout(r, LEISURE + 500));
        const decoded = got.map((m) => decodeMessage(m));
        assert.deepEqual(
          decoded.map((m) => [m.type, m.code, m.token.toString('hex')]),
          [
            [MessageType.NON, ResponseCode.Content, '03'],
            [MessageType.NON, ResponseCode.Content, '03'],
            [MessageType.NON, ResponseCode.Content, '03'],
          ],
        );
        const stats = listeners.map((l) => l[0]!.transport.stats);
        for (const s of stats) {
          assert.equal(s.droppedConfirmable, 2);
          assert.ok(s.droppedOther >= 1);
        }
      } finally {
        sock.close();
      }
    });

    test('Linux: a wildcard socket on the group port receives the group datagrams too', async () => {
      // This is why coapkit serve --multicast never binds its unicast socket to the wildcard address
      // on the group port: such a socket would get (and answer as unicast) every multicast request.
      const wild = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      await new Promise<void>((r) => wild.bind(5683, '0.0.0.0', () => r()));
      const seen: Buffer[] = [];
      wild.on('message', (m) => seen.push(m));
      const res = await mc('/hello', { windowMs: LEISURE + 400 });
      wild.close();
      assert.equal(res.length, 3);
      assert.equal(seen.length, 1, 'the wildcard socket got the multicast request as well');
    });

    test('client.request() to a group address goes out NON and takes the first member to answer', async () => {
      const c = new CoapClient();
      try {
        // No confirmable: false given: a CON would be ignored by every member (§8.1).
        const r = await c.get(`coap://${GROUP}/hello`, { multicast: true, timeout: 3000 });
        assert.equal(r.type, MessageType.NON);
        assert.match(r.text(), /^hello from [234]$/);
      } finally {
        await c.close();
      }
    });

    test('an abort signal ends the window early with what was collected', async () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const t0 = performance.now();
      await mc('/hello', { windowMs: 5000, signal: ac.signal });
      // Well before the 5 s window (a generous margin for a busy machine).
      assert.ok(performance.now() - t0 < 4000);
    });
  });

  describe('IPv6 group ff02::fd on a veth link', () => {
    test('link-local group with a zone in the URI', async () => {
      const s = new CoapServer();
      s.get('/hello', () => 'hello over IPv6');
      await s.listen({ host: '::', port: 0 });
      try {
        await s.listenMulticast({ groups: ['ff02::fd'], interface6: 'ckv0', leisureMs: LEISURE });
        const c = new CoapClient();
        try {
          const res = await c.multicast('coap://[ff02::fd%25ckv0]/hello', { windowMs: WINDOW });
          assert.equal(res.length, 1);
          assert.equal(res[0]!.text(), 'hello over IPv6');
          assert.equal(res[0]!.peer.family, 'IPv6');
          assert.doesNotMatch(res[0]!.peer.address, /^ff/i, 'from a unicast address');
        } finally {
          await c.close();
        }
      } finally {
        await s.close();
      }
    });
  });

  describe('libcoap server in the group', () => {
    test('coapkit discovers a coap-server-notls -g 224.0.1.187', async (t) => {
      try {
        sh('coap-server-notls', ['-h']);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          t.skip('coap-server-notls is not installed');
          return;
        }
      }
      const srv = spawn('coap-server-notls', ['-g', GROUP], { stdio: 'ignore' });
      try {
        await new Promise((r) => setTimeout(r, 400));
        const c = new CoapClient();
        try {
          // libcoap answers a multicast request after a random delay within its own leisure (5 s).
          const res = await c.multicast(`coap://${GROUP}/.well-known/core`, { windowMs: 6000 });
          assert.equal(res.length, 1, res.map((r) => r.text()).join(' | '));
          assert.match(res[0]!.text(), /<\/time>/);
          assert.equal(res[0]!.type, MessageType.NON);
          assert.equal(res[0]!.peer.address, '127.0.0.1');
        } finally {
          await c.close();
        }
      } finally {
        srv.kill('SIGKILL');
      }
    });
  });

  describe('CLI and libcoap', () => {
    const children: ChildProcess[] = [];
    const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

    function start(args: string[]): Promise<{ child: ChildProcess; banner: string }> {
      const child = spawn(process.execPath, [...CLI, ...args], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      return new Promise((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 15_000);
        child.stdout!.on('data', (d) => {
          out += d;
          if (out.includes('Stop with Ctrl-C')) {
            clearTimeout(timer);
            resolve({ child, banner: out });
          }
        });
        child.stderr!.on('data', (d) => {
          out += d;
        });
        child.on('exit', () => reject(new Error(`serve exited: ${out}`)));
      });
    }

    function run(
      cmd: string,
      args: string[],
      timeoutMs = 20_000,
    ): Promise<{ code: number | null; out: string; err: string }> {
      const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => {
        out += d;
      });
      child.stderr.on('data', (d) => {
        err += d;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      return new Promise((resolve) =>
        child.on('close', (code) => {
          clearTimeout(timer);
          resolve({ code, out, err });
        }),
      );
    }

    after(() => {
      for (const c of children) c.kill('SIGKILL');
    });

    test('two `coapkit serve --multicast`, then `coapkit discover` and `coapkit get` on the group', async () => {
      await start(['serve', '--multicast', '--host', '127.0.0.6', '--port', '0', '--leisure', '0.2']);
      await start(['serve', '--multicast', '--host', '127.0.0.7', '--port', '0', '--leisure', '0.2']);
      const d = await run(process.execPath, [...CLI, 'discover', `coap://${GROUP}`, '--window', '1']);
      assert.equal(d.code, 0, d.err);
      assert.match(d.out, /^coap:\/\/127\.0\.0\.6:\d+$/m);
      assert.match(d.out, /^coap:\/\/127\.0\.0\.7:\d+$/m);
      assert.equal((d.out.match(/<\/time>/g) ?? []).length, 2, d.out);
      const g = await run(process.execPath, [...CLI, 'get', `coap://${GROUP}/`, '--window', '1']);
      assert.equal(g.code, 0, g.err);
      assert.equal(
        (g.out.match(/^# 2\.05 Content from coap:\/\/127\.0\.0\.[67]:\d+$/gm) ?? []).length,
        2,
        g.out,
      );
      const none = await run(process.execPath, [...CLI, 'get', `coap://${GROUP}/nothing`, '--window', '0.6']);
      assert.equal(none.code, 3, 'no response: exit 3');
      assert.match(none.err, /no response/);
    });

    test('serve --multicast on the group port binds unicast per address: each request is handled once', async () => {
      const { banner } = await start(['serve', '--multicast', '--leisure', '0', '-v']);
      assert.match(banner, /coap:\/\/127\.0\.0\.1:5683/);
      assert.doesNotMatch(banner, /coap:\/\/(\[::\]|0\.0\.0\.0):5683/);
      // Unicast CON on the same port still works.
      const u = await run(process.execPath, [...CLI, 'get', 'coap://127.0.0.1:5683/', '--timeout', '5']);
      assert.equal(u.code, 0, u.err);
      // Multicast: the 127.0.0.1 member answers exactly once (plus 127.0.0.6/7 from the previous test).
      const c = new CoapClient();
      try {
        const res = await c.multicast(`coap://${GROUP}/`, { windowMs: 800, multicastInterface: '127.0.0.1' });
        const fromLocal = res.filter((r) => r.peer.address === '127.0.0.1');
        assert.equal(fromLocal.length, 1, `one response from 127.0.0.1, got ${res.map((r) => r.peer.key)}`);
      } finally {
        await c.close();
      }
    });

    test('IPv6: serve --multicast --multicast-interface ckv0, get on ff02::fd%25ckv0 and ff05::fd', async () => {
      const { banner } = await start([
        'serve',
        '--multicast',
        '--multicast-interface',
        'ckv0',
        '--host',
        '::',
        '--port',
        '0',
        '--leisure',
        '0.2',
      ]);
      assert.match(banner, /coap:\/\/\[ff02::fd%25ckv0\]:5683 {2}\(multicast group/);
      assert.match(banner, /coap:\/\/\[ff05::fd%25ckv0\]:5683/);
      const g = await run(process.execPath, [...CLI, 'get', 'coap://[ff02::fd%25ckv0]/', '--window', '1']);
      assert.equal(g.code, 0, g.err);
      assert.match(g.out, /^# 2\.05 Content from coap:\/\/\[fe80:[0-9a-f:]+%25ckv0\]:\d+$/m);
      const s = await run(process.execPath, [
        ...CLI,
        'discover',
        'coap://[ff05::fd]',
        '--multicast-interface',
        'ckv0',
        '--window',
        '1',
      ]);
      assert.equal(s.code, 0, s.err);
      assert.match(s.out, /^coap:\/\/\[fd77::1\]:\d+\n {2}<\/>/m);
    });

    test('libcoap coap-client-notls gets answers from coapkit group members', async (t) => {
      try {
        sh('coap-client-notls', ['-h']);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          t.skip('coap-client-notls is not installed');
          return;
        }
      }
      const r = await run('coap-client-notls', [
        '-m',
        'get',
        '-N',
        '-B',
        '2',
        `coap://${GROUP}/.well-known/core`,
      ]);
      // libcoap prints each response payload as it arrives.
      assert.ok((r.out.match(/<\/time>/g) ?? []).length >= 2, `stdout: ${r.out}\nstderr: ${r.err}`);
    });
  });
}
