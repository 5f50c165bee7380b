/**
 * Durable store (issue 14): `kill -9` of `coapkit serve` under a PUT load, then a
 * restart on the same data: every write the client saw acknowledged (2.01/2.04) is
 * there with its bytes, ETag and Content-Format. SQLite (--data) and PostgreSQL
 * (--store, a throwaway cluster; skipped with the reason when PostgreSQL 15 is not
 * installed). Also: PostgreSQL stopped and started during a PUT loop (5.03 while it
 * is gone, reads still served, nothing acknowledged lost), and a corrupt or foreign
 * database file refused and left untouched.
 */

import assert from 'node:assert/strict';
import type { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encodeUint, getOption, getUintOption } from '../../src/codec/options.js';
import { OptionNumber } from '../../src/constants/options.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { RawCoapClient } from '../helpers/raw-coap.js';
import { LOOPBACK_PORTS, runCli, type ServeProcess, startServe } from './cli-helpers.js';

const PUT = 3;
const GET = 1;
const CREATED = 65;
const CHANGED = 68;
const CONTENT = 69;
const UNAVAILABLE = 163;
const FORMATS = [0, 42, 50, 60, 11542];

interface Acked {
  payload: Buffer;
  cf: number;
  etag: Buffer;
}

/**
 * PUTs up to `total` distinct resources from 16 concurrent workers; kills the
 * server (SIGKILL) once `killAfter` acknowledgements arrived. Returns what was acknowledged.
 */
async function loadAndKill(
  serve: ServeProcess,
  total: number,
  killAfter: number,
): Promise<Map<string, Acked>> {
  const client = await RawCoapClient.open(serve.port);
  const acked = new Map<string, Acked>();
  let next = 0;
  let killed = false;
  const worker = async () => {
    while (!killed && next < total) {
      const i = next++;
      const path = `/crash/r${i}`;
      const payload = randomBytes(4 + (i % 60));
      const cf = FORMATS[i % FORMATS.length]!;
      try {
        const m = await client.request(
          {
            code: PUT,
            path,
            payload,
            options: [{ number: OptionNumber.ContentFormat, value: encodeUint(cf) }],
          },
          { tries: 2, intervalMs: 500 },
        );
        if (m.code === CREATED || m.code === CHANGED) {
          const etag = getOption(m.options, OptionNumber.ETag);
          assert.ok(etag, `2.01 for ${path} carries an ETag`);
          acked.set(path, { payload, cf, etag });
        }
      } catch {
        // No answer: the server is gone.
      }
      if (!killed && acked.size >= killAfter) {
        killed = true;
        serve.child.kill('SIGKILL');
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  if (!killed) serve.child.kill('SIGKILL');
  await new Promise((r) =>
    serve.child.exitCode !== null || serve.child.signalCode !== null ? r(null) : serve.child.once('exit', r),
  );
  client.socket.close();
  return acked;
}

async function verify(serve: ServeProcess, acked: Map<string, Acked>): Promise<void> {
  const client = await RawCoapClient.open(serve.port);
  try {
    const paths = [...acked.keys()];
    let at = 0;
    const missing: string[] = [];
    const worker = async () => {
      while (at < paths.length) {
        const path = paths[at++]!;
        const want = acked.get(path)!;
        const m = await client.request({ code: GET, path });
        if (m.code !== CONTENT) {
          missing.push(`${path}: ${m.code >> 5}.${String(m.code & 31).padStart(2, '0')}`);
          continue;
        }
        assert.deepEqual(m.payload, want.payload, `bytes of ${path}`);
        assert.equal(
          getUintOption(m.options, OptionNumber.ContentFormat),
          want.cf,
          `Content-Format of ${path}`,
        );
        assert.deepEqual(getOption(m.options, OptionNumber.ETag), want.etag, `ETag of ${path}`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.deepEqual(missing, [], 'every acknowledged write survives the crash');
  } finally {
    client.socket.close();
  }
}

async function crashTest(storeArgs: string[]): Promise<void> {
  const killAfter = 50 + Math.floor(Math.random() * 850);
  const first = await startServe([...LOOPBACK_PORTS, ...storeArgs]);
  const acked = await loadAndKill(first, 1000, killAfter);
  assert.ok(
    acked.size >= Math.min(killAfter, 1000),
    `${acked.size} acknowledged before the kill at ${killAfter}`,
  );
  const second = await startServe([...LOOPBACK_PORTS, ...storeArgs]);
  try {
    assert.match(second.banner, /Data: .* loaded/);
    await verify(second, acked);
  } finally {
    await second.stop();
  }
}

describe('durable store: SQLite (--data)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'coapkit-data-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('kill -9 under a PUT load: every acknowledged write is there after the restart', async () => {
    await crashTest(['--data', join(dir, 'crash')]);
  });

  test('a file that is not SQLite is refused and left untouched', async () => {
    const d = join(dir, 'garbage');
    mkdirSync(d);
    const bytes = randomBytes(8192);
    writeFileSync(join(d, 'coapkit.db'), bytes);
    const r = await runCli(['serve', ...LOOPBACK_PORTS, '--data', d]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /coapkit\.db is not a SQLite database/);
    assert.deepEqual(readFileSync(join(d, 'coapkit.db')), bytes, 'file unchanged');
    assert.deepEqual(readdirSync(d), ['coapkit.db'], 'no -wal or -journal file created');
  });

  test('a SQLite database of another program is refused and left untouched', async (t) => {
    const d = join(dir, 'foreign');
    mkdirSync(d);
    // A valid SQLite file with someone else's table, made directly with a binding.
    const sql =
      'CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL); INSERT INTO invoices VALUES (1, 9.5)';
    type Db = { exec(sql: string): void; close(): void };
    let made = false;
    const builtin = (
      process as { getBuiltinModule?: (id: string) => { DatabaseSync?: new (f: string) => Db } | undefined }
    ).getBuiltinModule?.('node:sqlite');
    try {
      let db: Db;
      if (builtin?.DatabaseSync) db = new builtin.DatabaseSync(join(d, 'coapkit.db'));
      else {
        const { createRequire } = await import('node:module');
        const Database = createRequire(import.meta.url)('better-sqlite3') as new (f: string) => Db;
        db = new Database(join(d, 'coapkit.db'));
      }
      db.exec(sql);
      db.close();
      made = true;
    } catch {}
    if (!made) return t.skip('no SQLite binding loads in this Node (needed to make the foreign file)');
    const before = readFileSync(join(d, 'coapkit.db'));
    const r = await runCli(['serve', ...LOOPBACK_PORTS, '--data', d]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /another program .* not a coapkit store/);
    assert.deepEqual(readFileSync(join(d, 'coapkit.db')), before, 'file unchanged');
  });

  test('a damaged coapkit database is refused and left untouched', async () => {
    const d = join(dir, 'damaged');
    // Make a real store with some resources, then overwrite part of a data page.
    const s = await startServe([...LOOPBACK_PORTS, '--data', d]);
    const c = await RawCoapClient.open(s.port);
    for (let i = 0; i < 200; i++) {
      const m = await c.request({ code: PUT, path: `/d/r${i}`, payload: randomBytes(300) });
      assert.equal(m.code, CREATED);
    }
    c.socket.close();
    assert.equal(await s.stop(), 0);
    const file = join(d, 'coapkit.db');
    const bytes = readFileSync(file);
    assert.ok(bytes.length > 8 * 4096, `a database of several pages (${bytes.length} bytes)`);
    // Page 3 onwards: b-tree pages of the resources table; garbage over their headers.
    for (let page = 2; page < Math.floor(bytes.length / 4096); page++) {
      randomBytes(64).copy(bytes, page * 4096);
    }
    writeFileSync(file, bytes);
    const r = await runCli(['serve', ...LOOPBACK_PORTS, '--data', d]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /damaged|malformed|corrupt/i);
    assert.deepEqual(readFileSync(file), bytes, 'file unchanged');
  });
});

describe('durable store: PostgreSQL (--store)', () => {
  let pg: TestPostgres | string;
  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    if (typeof pg !== 'string') await pg.stop();
  });

  test('kill -9 under a PUT load: every acknowledged write is there after the restart', async (t) => {
    if (typeof pg === 'string') return t.skip(pg);
    await crashTest(['--store', pg.createDatabase('crash')]);
  });

  test('PostgreSQL stopped and started during a PUT loop: 5.03 meanwhile, reads served, nothing acknowledged lost', async (t) => {
    if (typeof pg === 'string') return t.skip(pg);
    const db = pg;
    const url = db.createDatabase('outage');
    const serve = await startServe([...LOOPBACK_PORTS, '--store', url]);
    const client = await RawCoapClient.open(serve.port);
    const acked = new Map<string, Buffer>();
    let unavailable = 0;
    let readsDuringOutage = 0;
    try {
      let i = 0;
      const put = async () => {
        const path = `/loop/r${i++}`;
        const payload = randomBytes(16);
        const m = await client.request({ code: PUT, path, payload }, { tries: 3, intervalMs: 2000 });
        if (m.code === CREATED || m.code === CHANGED) acked.set(path, payload);
        else if (m.code === UNAVAILABLE) unavailable++;
        else assert.fail(`unexpected ${m.code >> 5}.${m.code & 31} for ${path}`);
      };
      for (let k = 0; k < 100; k++) await put();
      assert.equal(acked.size, 100);
      await db.stopServer();
      // While the database is gone: writes 5.03, reads from memory.
      for (let k = 0; k < 20; k++) {
        await put();
        const g = await client.request({ code: GET, path: '/loop/r0' });
        if (g.code === CONTENT) readsDuringOutage++;
      }
      assert.ok(unavailable > 0, 'writes answered 5.03 while PostgreSQL was stopped');
      assert.equal(readsDuringOutage, 20, 'reads kept being served');
      await db.startServer();
      // The server reconnects: writes succeed again.
      const deadline = Date.now() + 30_000;
      const before = acked.size;
      while (acked.size < before + 100) {
        assert.ok(Date.now() < deadline, 'writes succeed again within 30 s of PostgreSQL coming back');
        await put();
      }
    } finally {
      client.socket.close();
      await serve.stop();
    }
    // Every acknowledged write is in the database.
    const stored = new Map<string, string>();
    const out = db.psql("SELECT path || ' ' || encode(payload, 'hex') FROM coapkit_resources", 'outage');
    for (const line of out.split('\n')) {
      const [p, hex] = line.split(' ');
      if (p) stored.set(p, hex ?? '');
    }
    for (const [path, payload] of acked) assert.equal(stored.get(path), payload.toString('hex'), path);
  });
});
