/**
 * OSCORE sender sequence numbers in the durable store (RFC 8613 §7.5, issues
 * 13 and 14): `reserveSequence` on PostgreSQL from two connections at once
 * gives disjoint ranges; a server whose next range is late answers 5.03 with
 * Max-Age (never a reused number); two `coapkit serve --store postgres://...`
 * processes given the same --oscore context never send the same Partial IV;
 * and `coapkit serve --data DIR` killed with SIGKILL continues above every
 * Partial IV it used, starting above an existing FILE.seq (migration), which
 * it no longer writes.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadOscoreContext } from '../../src/cli/oscore.js';
import { type CoapMessage, decodeMessage, encodeMessage } from '../../src/codec/message.js';
import { decodeUint } from '../../src/codec/options.js';
import { CoapServer, enableOscore, OscoreContext } from '../../src/index.js';
import { decodeOscoreOption, sequenceOf } from '../../src/oscore/option.js';
import { type PlainMessage, protectRequest, unprotectResponse } from '../../src/oscore/protect.js';
import { StoreFormatError } from '../../src/store/errors.js';
import { PostgresStore } from '../../src/store/postgres.js';
import { OSCORE_CLIENT, OSCORE_SERVER, oscoreContextDir } from '../helpers/oscore-files.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { pathOptions } from '../helpers/raw-coap.js';
import { until, withTimeout } from '../helpers/timing.js';
import { LOOPBACK_PORTS, runInProcess, startServe } from './cli-helpers.js';

/** The CLI tests' context pair, with an ID Context. */
const ID_CONTEXT = { 'id-context_hex': '37cbf3210017a2d3' };
const SERVER = { ...OSCORE_SERVER, ...ID_CONTEXT };
const CLIENT = { ...OSCORE_CLIENT, ...ID_CONTEXT };

/**
 * A client on one UDP socket: protected requests by hand; every datagram that
 * comes back is recorded (its server Partial IV, once per message ID), and
 * confirmable ones (notifications) are acknowledged.
 */
class RawOscoreClient {
  readonly sock = dgram.createSocket('udp4');
  /** Server Partial IVs seen, in order. */
  readonly serverPivs: number[] = [];
  readonly notifications: CoapMessage[] = [];
  private mid = 1;
  private readonly seenMids = new Set<number>();
  private readonly waiting = new Map<string, (m: CoapMessage) => void>();

  constructor(
    readonly port: number,
    readonly ctx: OscoreContext,
  ) {
    this.sock.on('message', (buf) => {
      const m = decodeMessage(buf);
      if (m.type === 0) {
        this.sock.send(
          encodeMessage({ type: 2, code: 0, messageId: m.messageId, token: Buffer.alloc(0), options: [] }),
          port,
          '127.0.0.1',
        );
      }
      if (this.seenMids.has(m.messageId)) return;
      this.seenMids.add(m.messageId);
      const opt = m.options.find((o) => o.number === 9);
      const piv = opt === undefined ? undefined : decodeOscoreOption(opt.value).partialIv;
      if (piv !== undefined) this.serverPivs.push(sequenceOf(piv));
      const key = m.token.toString('hex');
      const w = this.waiting.get(key);
      if (w !== undefined) {
        this.waiting.delete(key);
        w(m);
      } else this.notifications.push(m);
    });
  }

  async ready(): Promise<void> {
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', () => r()));
  }

  /** One protected request; the outer answer and the binding to read it. */
  async send(plain: PlainMessage): Promise<{ outer: CoapMessage; inner?: CoapMessage }> {
    const { message, binding } = protectRequest(this.ctx, plain);
    const messageId = this.mid++;
    const token = Buffer.alloc(4);
    token.writeUInt32BE(messageId);
    const got = new Promise<CoapMessage>((r) => this.waiting.set(token.toString('hex'), r));
    this.sock.send(encodeMessage({ type: 0, messageId, token, ...message }), this.port, '127.0.0.1');
    const outer = await withTimeout(got, 10_000, 'an answer');
    if (outer.options.every((o) => o.number !== 9)) return { outer };
    return { outer, inner: unprotectResponse(binding, outer) };
  }

  /** A request, repeated once with the Echo value when the server challenges it (after its start). */
  async request(plain: PlainMessage): Promise<CoapMessage> {
    const first = await this.send(plain);
    const echo = first.inner?.options.find((o) => o.number === 252);
    if (first.inner?.code !== 0x81 || echo === undefined) {
      assert.ok(first.inner, `protected answer expected, got ${first.outer.code.toString(16)}`);
      return first.inner;
    }
    const again = await this.send({
      ...plain,
      options: [...plain.options, { number: 252, value: Buffer.from(echo.value) }],
    });
    assert.ok(again.inner, 'protected answer after Echo');
    return again.inner;
  }

  close(): void {
    this.sock.close();
  }
}

let pg: TestPostgres | string;
let dir: string;
let sfile: string;
let cfile: string;
before(async () => {
  pg = await startPostgres();
  ({ dir, sfile, cfile } = oscoreContextDir('coapkit-oscseq-', SERVER, CLIENT));
});
after(async () => {
  if (typeof pg !== 'string') await pg.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('reserveSequence on PostgreSQL', () => {
  it('two connections reserving at once get disjoint ranges; migration floor; a bad counter is refused', async (t) => {
    if (typeof pg === 'string') return t.skip(pg);
    const url = pg.createDatabase('seq');
    const a = await PostgresStore.open(url);
    const b = await PostgresStore.open(url);
    try {
      assert.equal(await a.reserveSequence('01:37cb', 10, 500), 500, 'starts at the FILE.seq floor');
      const jobs: Promise<number>[] = [];
      for (let i = 0; i < 100; i++) {
        jobs.push(a.reserveSequence('01:37cb', 3));
        jobs.push(b.reserveSequence('01:37cb', 3));
        // Interleaved with the other writes of the connection (a resource batch in a transaction).
        if (i % 10 === 0) jobs.push(a.saveState(`other${i}`, Buffer.from('x')).then(() => -1));
      }
      const firsts = (await Promise.all(jobs)).filter((n) => n >= 0).sort((p, q) => p - q);
      assert.equal(firsts.length, 200);
      for (let i = 0; i < firsts.length; i++) assert.equal(firsts[i], 510 + 3 * i, 'contiguous and disjoint');
      assert.equal((await b.loadState('oscore.seq:01:37cb'))?.toString(), String(510 + 600));
      assert.equal(await b.reserveSequence('01:37cb', 1, 7), 1110, 'never below what was given');
      await a.saveState('oscore.seq:bad', Buffer.from('1x'));
      await assert.rejects(a.reserveSequence('bad', 1), StoreFormatError);
      assert.equal((await a.loadState('oscore.seq:bad'))?.toString(), '1x', 'left as it was');
      await a.saveState('oscore.seq:binary', Buffer.from([0xff, 0x00, 0x31]));
      await assert.rejects(a.reserveSequence('binary', 1), StoreFormatError);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('a server whose next range is late', () => {
  it('answers an unprotected 5.03 with Max-Age, then continues with the new range', async () => {
    let release: ((n: number) => void) | undefined;
    let calls = 0;
    const source = {
      reserve: (): Promise<number> => {
        calls++;
        if (calls === 1) return Promise.resolve(40);
        return new Promise<number>((r) => {
          release = r;
        });
      },
    };
    const sctx = new OscoreContext({
      masterSecret: Buffer.from(SERVER.secret_hex, 'hex'),
      masterSalt: Buffer.from(SERVER.salt_hex, 'hex'),
      senderId: Buffer.from('01', 'hex'),
      recipientId: Buffer.from('c1'),
      idContext: Buffer.from(SERVER['id-context_hex'], 'hex'),
      sequenceSource: source,
      sequenceMargin: 2,
      replayState: 'fresh',
    });
    await sctx.ready();
    const server = new CoapServer();
    server.get('/x', () => ({ payload: 'x' }));
    const layer = enableOscore(server, { contexts: [sctx], ownPartialIv: true });
    const ep = await server.listen({ host: '127.0.0.1', port: 0 });
    const client = new RawOscoreClient(
      ep.transport.localAddress().port,
      loadOscoreContext(cfile, { sequence: false }),
    );
    await client.ready();
    try {
      assert.equal((await client.request({ code: 1, options: pathOptions('/x') })).code, 0x45);
      assert.equal((await client.request({ code: 1, options: pathOptions('/x') })).code, 0x45);
      assert.deepEqual(client.serverPivs, [40, 41], 'each response with its own Partial IV');
      const late = await client.send({ code: 1, options: pathOptions('/x') });
      assert.equal(late.outer.code, 0xa3, '5.03 Service Unavailable');
      assert.equal(late.inner, undefined, 'not protected: no number to protect it with');
      const maxAge = late.outer.options.find((o) => o.number === 14);
      assert.ok(maxAge);
      assert.equal(decodeUint(maxAge.value), 1);
      assert.equal(layer.stats.protectFailures, 1);
      release!(90);
      await until(() => sctx.reservations === 2, 'the next range arrived');
      assert.equal((await client.request({ code: 1, options: pathOptions('/x') })).code, 0x45);
      assert.deepEqual(client.serverPivs, [40, 41, 90]);
    } finally {
      client.close();
      await server.close();
    }
  });
});

describe('coapkit serve --oscore with a store', () => {
  it('--workers above 1 with --oscore is refused without --store (they would share FILE.seq)', async (t) => {
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    if (major < 22 || (major === 22 && minor < 12))
      return t.skip(`--workers needs Node 22.12+ (${process.version})`);
    const r = await runInProcess(['serve', ...LOOPBACK_PORTS, '--workers', '2', '--oscore', sfile]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /--oscore with --workers above 1 needs --store postgres/);
  });

  it('two servers on one PostgreSQL store and one context never send the same Partial IV', async (t) => {
    if (typeof pg === 'string') return t.skip(pg);
    const url = pg.createDatabase('fleet');
    const args = [...LOOPBACK_PORTS, '--store', url, '--oscore', sfile];
    const n1 = await startServe(args);
    const n2 = await startServe(args);
    const ctx = loadOscoreContext(cfile, { sequence: false });
    const c1 = new RawOscoreClient(n1.port, ctx);
    const c2 = new RawOscoreClient(n2.port, ctx);
    try {
      assert.match(n1.banner, /OSCORE: 1 context .*; sequence numbers from the store/);
      await c1.ready();
      await c2.ready();
      // Each response carries the server's own Partial IV (--store): more than a range per node.
      for (let i = 0; i < 300; i++) {
        assert.equal((await c1.request({ code: 1, options: pathOptions('/time') })).code, 0x45);
        assert.equal((await c2.request({ code: 1, options: pathOptions('/time') })).code, 0x45);
      }
      const all = [...c1.serverPivs, ...c2.serverPivs];
      assert.ok(c1.serverPivs.length >= 300 && c2.serverPivs.length >= 300);
      assert.equal(new Set(all).size, all.length, 'no Partial IV sent by both servers');
      assert.ok(
        Math.max(...c1.serverPivs) >= 256 && Math.max(...c2.serverPivs) >= 256,
        'both took several ranges',
      );
      assert.equal(readFileSync(`${sfile}.seq`, 'utf8'), 'store 0\n', 'FILE.seq says the numbers moved');
    } finally {
      c1.close();
      c2.close();
      await n1.stop();
      await n2.stop();
    }
  });

  it('PostgreSQL stopped: 5.03 + Max-Age once the range runs out, numbering goes on when it is back', async (t) => {
    if (typeof pg === 'string') return t.skip(pg);
    const db = pg;
    const url = db.createDatabase('outage');
    const n = await startServe([...LOOPBACK_PORTS, '--store', url, '--oscore', sfile]);
    const c = new RawOscoreClient(n.port, loadOscoreContext(cfile, { sequence: false }));
    try {
      await c.ready();
      assert.equal((await c.request({ code: 1, options: pathOptions('/time') })).code, 0x45);
      await db.stopServer();
      // The first range (256) runs out; the reservation of the next one fails meanwhile.
      let unavailable: CoapMessage | undefined;
      for (let i = 0; i < 400 && unavailable === undefined; i++) {
        const r = await c.send({ code: 1, options: pathOptions('/time') });
        if (r.inner === undefined) unavailable = r.outer;
        else assert.equal(r.inner.code, 0x45);
      }
      assert.ok(unavailable, 'a 5.03 once the range ran out');
      assert.equal(unavailable.code, 0xa3);
      assert.equal(decodeUint(unavailable.options.find((o) => o.number === 14)!.value), 1, 'Max-Age 1');
      const before = Math.max(...c.serverPivs);
      await db.startServer();
      // The store reconnects in the background; each message asks again until a range is committed.
      let back: CoapMessage | undefined;
      for (let i = 0; i < 400 && back === undefined; i++) {
        const r = await c.send({ code: 1, options: pathOptions('/time') });
        if (r.inner !== undefined) back = r.inner;
        else await new Promise((res) => setTimeout(res, 50));
      }
      assert.equal(back?.code, 0x45, 'protected answers again once PostgreSQL is back');
      const after = c.serverPivs.filter((p) => p > before);
      assert.ok(after.length >= 1 && after[0]! >= 256, `the new range starts above the first: ${after[0]}`);
      assert.equal(new Set(c.serverPivs).size, c.serverPivs.length, 'no Partial IV twice');
    } finally {
      c.close();
      await n.stop();
      // Left running for the other tests, whatever happened above.
      try {
        db.psql('SELECT 1');
      } catch {
        await db.startServer();
      }
    }
  });

  it('--data: after SIGKILL the next Partial IV is above every one used before; FILE.seq is the floor', async () => {
    const data = join(dir, 'data');
    // A context that was used with FILE.seq before the store: the store starts above it.
    writeFileSync(`${sfile}.seq`, '1000\n');
    const args = [...LOOPBACK_PORTS, '--data', data, '--oscore', sfile];
    const seen: number[] = [];
    let ctx = loadOscoreContext(cfile, { sequence: false });
    const s1 = await startServe(args);
    const c1 = new RawOscoreClient(s1.port, ctx);
    try {
      await c1.ready();
      // The Echo challenge and the notifications of /time carry the server's own Partial IV.
      await c1.request({
        code: 1,
        options: [{ number: 6, value: Buffer.alloc(0) }, ...pathOptions('/time')],
      });
      await until(() => c1.notifications.length >= 2, 'two notifications', 20_000);
    } finally {
      s1.child.kill('SIGKILL');
      await s1.stop();
      c1.close();
    }
    seen.push(...c1.serverPivs);
    assert.ok(seen.length >= 4, `Partial IVs seen: ${seen.join(' ')}`);
    assert.ok(Math.min(...seen) >= 1000, 'the store started above FILE.seq');
    const s2 = await startServe(args);
    // A fresh client context (the replay window of the server is new too: Echo again).
    ctx = new OscoreContext({
      masterSecret: Buffer.from(CLIENT.secret_hex, 'hex'),
      masterSalt: Buffer.from(CLIENT.salt_hex, 'hex'),
      senderId: Buffer.from('c1'),
      recipientId: Buffer.from('01', 'hex'),
      idContext: Buffer.from(CLIENT['id-context_hex'], 'hex'),
      senderSequenceNumber: ctx.senderSequenceNumber,
    });
    const c2 = new RawOscoreClient(s2.port, ctx);
    try {
      await c2.ready();
      await c2.request({ code: 1, options: pathOptions('/time') });
      assert.ok(c2.serverPivs.length >= 1, 'the Echo challenge has its own Partial IV');
      for (const p of c2.serverPivs)
        assert.ok(p > Math.max(...seen), `Partial IV ${p} after the restart is above ${Math.max(...seen)}`);
    } finally {
      c2.close();
      await s2.stop();
    }
    assert.equal(readFileSync(`${sfile}.seq`, 'utf8'), 'store 1000\n', 'FILE.seq says the numbers moved');
    // Going back to the file alone would reuse numbers the store gave out: refused, saying why.
    for (const cmd of [
      ['serve', ...LOOPBACK_PORTS, '--oscore', sfile],
      ['get', 'coap://127.0.0.1:9/time', '--oscore', sfile],
    ]) {
      const r = await runInProcess(cmd);
      assert.equal(r.code, 64, r.stderr);
      assert.match(
        r.stderr,
        /sequence numbers are kept in a durable store since coapkit serve --data\/--store/,
      );
      assert.match(r.stderr, /derive a new context \(never reuse a nonce\)/);
    }
  });
});
