/**
 * `coapkit serve --workers 2` (SO_REUSEPORT, Node 22.12+): two processes answer different
 * peers, a duplicate CON is answered from the deduplication state of the worker that saw the
 * first copy, a worker killed with SIGKILL is replaced while the other peers keep being served,
 * and SIGTERM to the supervisor stops every worker. Runs on this Node when it has reusePort,
 * else on COAPKIT_NODE24 (set by .ci/run); skipped with the reason when neither is there.
 * On a Node without reusePort, --workers 2 is refused with the version needed.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { encodeMessage } from '../../src/codec/message.js';
import { MessageType, Method } from '../../src/constants/codes.js';
import { reusePortSupported } from '../../src/transport/udp.js';
import { pathOptions } from '../helpers/raw-coap.js';
import { until, withTimeout } from '../helpers/timing.js';
import { cliEnv, ROOT, runCli } from './cli-helpers.js';

const N24 = [process.env.COAPKIT_NODE24].find(
  (p): p is string => p !== undefined && p !== '' && existsSync(p),
);
const NODE = reusePortSupported() ? process.execPath : N24;

interface Supervisor {
  child: ChildProcess;
  port: number;
  pids: number[];
  stdout(): string;
  stderr(): string;
}

function startWorkers(n: number): Promise<Supervisor> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      NODE!,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'serve',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '-v',
        '--workers',
        String(n),
      ],
      { cwd: ROOT, env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      child.kill('SIGKILL');
      reject(new Error(`no workers banner in 30 s: ${out} ${err}`));
    }, 30_000);
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /Workers: \d+ processes \(pids ([\d, ]+)\)/.exec(out);
      if (done || !m) return;
      done = true;
      clearTimeout(timer);
      resolve({
        child,
        port: Number(/coap:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]),
        pids: m[1]!.split(', ').map(Number),
        stdout: () => out,
        stderr: () => err,
      });
    });
    child.on('exit', (code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${out} ${err}`));
    });
  });
}

let nextMid = 0x1000;
/**
 * A CON GET of `path` from `socket` (or the given datagram), sent again every 300 ms until
 * answered (at most 20 times); resolves with the first datagram carrying its token.
 */
async function get(socket: dgram.Socket, port: number, path: string, bytes?: Buffer): Promise<Buffer> {
  const req =
    bytes ??
    encodeMessage({
      type: MessageType.CON,
      code: Method.GET,
      messageId: nextMid++ & 0xffff,
      token: Buffer.from([1, 2, 3, nextMid & 0xff]),
      options: pathOptions(path),
      payload: Buffer.alloc(0),
    });
  return withTimeout(
    new Promise<Buffer>((resolve) => {
      let tries = 0;
      const send = () => {
        if (tries++ < 20) socket.send(req, port, '127.0.0.1');
      };
      const iv = setInterval(send, 300);
      // The answer to this request: same token (a late answer to an earlier request is not it).
      const token = req.subarray(4, 4 + (req[0]! & 0x0f));
      const onMessage = (m: Buffer) => {
        if (!m.subarray(4, 4 + (m[0]! & 0x0f)).equals(token)) return;
        clearInterval(iv);
        socket.off('message', onMessage);
        resolve(m);
      };
      socket.on('message', onMessage);
      send();
    }),
    10_000,
    `answer to GET ${path}`,
  );
}

async function socketOn(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

/** The pid a -v log line of `path` names ("... GET /path from ... [worker PID]"). */
function pidsFor(out: string, path: string): number[] {
  const re = new RegExp(`GET ${path.replace(/[/-]/g, '\\$&')} from .*\\[worker (\\d+)\\]`, 'g');
  return [...out.matchAll(re)].map((m) => Number(m[1]));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('serve --workers 2: two processes, same-worker dedup, a killed worker is replaced', async (t) => {
  if (NODE === undefined)
    return t.skip(
      `Node ${process.versions.node} has no dgram reusePort (22.12+) and COAPKIT_NODE24 is not set`,
    );
  const sup = await startWorkers(2);
  const sockets: dgram.Socket[] = [];
  try {
    assert.equal(sup.pids.length, 2);
    assert.notEqual(sup.pids[0], sup.pids[1]);

    // Different peers (source ports) land on both workers.
    const seen = new Set<number>();
    for (let i = 0; i < 64 && seen.size < 2; i++) {
      const s = await socketOn();
      sockets.push(s);
      await get(s, sup.port, `/peer-${i}`);
      await until(() => pidsFor(sup.stdout(), `/peer-${i}`).length === 1, `log line of /peer-${i}`);
      seen.add(pidsFor(sup.stdout(), `/peer-${i}`)[0]!);
    }
    assert.deepEqual([...seen].sort(), [...sup.pids].sort(), 'both workers answered peers');

    // A duplicate CON: the same datagram again gets the same answer, replayed by the worker
    // that saw the first copy (its dedup state); no second request reaches a handler.
    const dupSocket = sockets[0]!;
    const dup = encodeMessage({
      type: MessageType.CON,
      code: Method.GET,
      messageId: 0x7777,
      token: Buffer.from([9, 9, 9, 9]),
      options: pathOptions('/dup'),
      payload: Buffer.alloc(0),
    });
    const first = await get(dupSocket, sup.port, '/dup', dup);
    const again = await get(dupSocket, sup.port, '/dup', dup);
    assert.deepEqual(again, first, 'the duplicate gets the same response');
    await get(dupSocket, sup.port, '/dup-after');
    await until(() => pidsFor(sup.stdout(), '/dup-after').length === 1, 'log line of /dup-after');
    assert.deepEqual(
      pidsFor(sup.stdout(), '/dup'),
      pidsFor(sup.stdout(), '/dup-after'),
      'one /dup request, same worker',
    );

    // SIGKILL one worker: the supervisor starts another; peers keep being answered.
    const victim = sup.pids[0]!;
    process.kill(victim, 'SIGKILL');
    await until(
      () => new RegExp(`worker ${victim} ended \\(SIGKILL\\); started worker \\d+`).test(sup.stderr()),
      'the replacement worker',
      20_000,
    );
    const replacement = Number(/started worker (\d+)/.exec(sup.stderr())![1]);
    assert.ok(alive(replacement));
    const after = new Set<number>();
    for (let i = 0; i < 64 && after.size < 2; i++) {
      const s = await socketOn();
      sockets.push(s);
      await get(s, sup.port, `/after-${i}`);
      await until(() => pidsFor(sup.stdout(), `/after-${i}`).length === 1, `log line of /after-${i}`);
      after.add(pidsFor(sup.stdout(), `/after-${i}`)[0]!);
    }
    assert.deepEqual(
      [...after].sort(),
      [sup.pids[1]!, replacement].sort(),
      'the survivor and the replacement answer',
    );

    // SIGTERM to the supervisor stops every worker and exits 0.
    const exited = new Promise<number | null>((r) => sup.child.once('exit', (code) => r(code)));
    sup.child.kill('SIGTERM');
    assert.equal(await withTimeout(exited, 15_000, 'supervisor exit'), 0);
    await until(() => !alive(sup.pids[1]!) && !alive(replacement), 'workers gone');
  } finally {
    for (const s of sockets) s.close();
    if (sup.child.exitCode === null) sup.child.kill('SIGKILL');
  }
});

test('serve --workers 2 without reusePort names the Node version needed', async (t) => {
  if (reusePortSupported()) return t.skip(`Node ${process.versions.node} has reusePort`);
  const r = await runCli(['serve', '--workers', '2', '--port', '0']);
  assert.equal(r.code, 64);
  assert.match(r.stderr, /--workers 2 needs Node 22\.12\.0 or later \(dgram reusePort\); this is Node 20\./);
});
