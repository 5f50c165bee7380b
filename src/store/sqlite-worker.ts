/**
 * The SQLite worker's source (plain JavaScript, run with `new Worker(src, {
 * eval: true })`): the database lives in a worker thread, so a commit's fsync
 * never blocks the event loop that serves reads. Kept as a string so it runs
 * the same from src/ (tsx) and dist/ without a second entry file.
 *
 * Protocol: the main thread posts { id, op, ... }; the worker answers
 * { id, ok: true, result } or { id, ok: false, kind, message } where kind is
 * 'full' | 'corrupt' | 'foreign' | 'busy' | 'io' | 'dependency' | 'other'.
 */

/** Schema version written to PRAGMA user_version. */
export const SQLITE_SCHEMA_VERSION = 1;
/** PRAGMA application_id of a coapkit database: "CoAP" in ASCII. */
export const SQLITE_APPLICATION_ID = 0x436f4150;

export const SQLITE_WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { file, binding, betterPath, appId, version, synchronous } = workerData;
let db;
let which;
const SQLITE_CODES = { 5: 'busy', 6: 'busy', 10: 'io', 11: 'corrupt', 13: 'full', 26: 'corrupt' };
function kindOf(err) {
  if (err && err.coapkitKind) return err.coapkitKind;
  const code = String((err && err.code) || '');
  if (typeof err?.errcode === 'number') {
    const k = SQLITE_CODES[err.errcode & 0xff];
    if (k) return k;
  }
  if (/SQLITE_FULL/.test(code)) return 'full';
  if (/SQLITE_CORRUPT|SQLITE_NOTADB/.test(code)) return 'corrupt';
  if (/SQLITE_BUSY|SQLITE_LOCKED/.test(code)) return 'busy';
  if (/SQLITE_IOERR|SQLITE_CANTOPEN|SQLITE_READONLY/.test(code)) return 'io';
  if (/ENOSPC|disk is full|database or disk is full/i.test(String(err && err.message))) return 'full';
  return 'other';
}
function fail(kind, message) {
  const e = new Error(message);
  e.coapkitKind = kind;
  return e;
}
function openDb() {
  // A file that is there but is not SQLite is refused before SQLite opens it.
  let exists = false;
  try {
    const st = fs.statSync(file);
    exists = st.size > 0;
    if (exists) {
      const fd = fs.openSync(file, 'r');
      const head = Buffer.alloc(16);
      fs.readSync(fd, head, 0, 16, 0);
      fs.closeSync(fd);
      if (head.toString('latin1') !== 'SQLite format 3\\u0000') {
        throw fail('foreign', file + ' is not a SQLite database (its first bytes are not "SQLite format 3")');
      }
    }
  } catch (err) {
    if (err.coapkitKind) throw err;
    if (err.code !== 'ENOENT') throw err;
  }
  if (binding !== 'better-sqlite3') {
    // Node 22 marks node:sqlite experimental and prints an ExperimentalWarning on every
    // start of a server with --data: a surprise for a user, who did not ask for it. That one
    // warning is dropped (it is emitted synchronously by the require); any other goes through.
    const emitWarning = process.emitWarning;
    process.emitWarning = function (warning, ...rest) {
      const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] && rest[0].type) || (warning && warning.name);
      if (type === 'ExperimentalWarning' && /SQLite/i.test(String((warning && warning.message) || warning))) return;
      return emitWarning.call(process, warning, ...rest);
    };
    try {
      const { DatabaseSync } = require('node:sqlite');
      process.emitWarning = emitWarning;
      db = new DatabaseSync(file);
      which = 'node:sqlite';
    } catch (err) {
      process.emitWarning = emitWarning;
      if (binding === 'node:sqlite') throw fail('dependency', 'node:sqlite is not available in Node ' + process.version + ' (it needs Node 22.13+ or 24): ' + err.message);
    }
  }
  if (db === undefined) {
    let Database;
    try {
      Database = require(betterPath || 'better-sqlite3');
    } catch (err) {
      throw fail('dependency', 'SQLite needs Node 22.13+ (node:sqlite) or the better-sqlite3 package (npm install better-sqlite3@12); Node ' + process.version + ' has neither: ' + err.message);
    }
    try {
      db = new Database(file);
    } catch (err) {
      // The native part built for another Node version (NODE_MODULE_VERSION) or missing.
      if (!/^SQLITE_/.test(String(err && err.code))) throw fail('dependency', 'better-sqlite3 cannot load in Node ' + process.version + ': ' + String(err && err.message).split('\\n').join(' '));
      throw err;
    }
    which = 'better-sqlite3';
  }
  // One server per data directory: the lock is held while it runs, and WAL needs no -shm
  // file (set before the first read: a full disk has no room for one). Writes nothing.
  db.exec('PRAGMA locking_mode = EXCLUSIVE');
  // Look before touching anything: a damaged or foreign file stays as it is.
  const id = db.prepare('PRAGMA application_id').get().application_id;
  const ver = db.prepare('PRAGMA user_version').get().user_version;
  const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master").get().n;
  if (id !== appId && !(id === 0 && tables === 0 && ver === 0)) {
    throw fail('foreign', file + ' is a SQLite database of another program (application_id ' + id + ', ' + tables + ' schema objects), not a coapkit store');
  }
  if (id === appId && ver !== version) {
    throw fail('foreign', file + ' is a coapkit store of schema version ' + ver + '; this coapkit reads version ' + version);
  }
  if (id === appId) {
    const check = db.prepare('PRAGMA quick_check').all().map((r) => r.quick_check);
    if (check.length !== 1 || check[0] !== 'ok') throw fail('corrupt', file + ' is damaged (quick_check: ' + check.slice(0, 3).join('; ') + ')');
  }
  db.exec('PRAGMA journal_mode = WAL');
  // FULL (default): each commit is fsynced, so an acknowledged write survives a power loss too;
  // NORMAL: it survives a crash of the process, not of the machine.
  db.exec('PRAGMA synchronous = ' + (synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'));
  // A new database gets the schema; an existing one is only locked here, not written (a full disk still opens).
  db.exec('BEGIN IMMEDIATE');
  try {
    if (id !== appId) {
      db.exec(\`
        CREATE TABLE IF NOT EXISTS coapkit_resources (
          path TEXT PRIMARY KEY, payload BLOB NOT NULL, content_format INTEGER, etag BLOB NOT NULL,
          max_age INTEGER, created INTEGER NOT NULL, modified INTEGER NOT NULL, ord INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS coapkit_counters (path TEXT PRIMARY KEY, next INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS coapkit_observers (
          key TEXT PRIMARY KEY, scheme TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL,
          token BLOB NOT NULL, path TEXT NOT NULL, accept INTEGER, options BLOB NOT NULL,
          seq INTEGER NOT NULL, created INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS coapkit_state (name TEXT PRIMARY KEY, value BLOB NOT NULL);
      \`);
      db.exec('PRAGMA application_id = ' + appId);
      db.exec('PRAGMA user_version = ' + version);
    }
    db.exec('COMMIT');
  } catch (err) {
    try { db.exec('ROLLBACK'); } catch {}
    throw err;
  }
  st = {
    putRes: db.prepare('INSERT OR REPLACE INTO coapkit_resources (path, payload, content_format, etag, max_age, created, modified, ord) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
    delRes: db.prepare('DELETE FROM coapkit_resources WHERE path = ?'),
    putCnt: db.prepare('INSERT OR REPLACE INTO coapkit_counters (path, next) VALUES (?, ?)'),
    delCnt: db.prepare('DELETE FROM coapkit_counters WHERE path = ?'),
    putObs: db.prepare('INSERT OR REPLACE INTO coapkit_observers (key, scheme, address, port, token, path, accept, options, seq, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
    delObs: db.prepare('DELETE FROM coapkit_observers WHERE key = ?'),
    putState: db.prepare('INSERT OR REPLACE INTO coapkit_state (name, value) VALUES (?, ?)'),
    delState: db.prepare('DELETE FROM coapkit_state WHERE name = ?'),
    getState: db.prepare('SELECT value FROM coapkit_state WHERE name = ?'),
  };
  return which;
}
let st;
const nul = (v) => (v === undefined ? null : v);
function apply(b) {
  db.exec('BEGIN IMMEDIATE');
  try {
    for (const p of b.deleteResources) st.delRes.run(p);
    for (const r of b.putResources) st.putRes.run(r.path, r.payload, nul(r.contentFormat), r.etag, nul(r.maxAge), r.created, r.modified, r.order);
    for (const p of b.deleteCounters) st.delCnt.run(p);
    for (const [p, n] of b.putCounters) st.putCnt.run(p, n);
    for (const k of b.deleteObservers) st.delObs.run(k);
    for (const o of b.putObservers) st.putObs.run(o.key, o.scheme, o.address, o.port, o.token, o.path, nul(o.accept), o.options, o.seq, o.created);
    for (const n of b.deleteState) st.delState.run(n);
    for (const [n, v] of b.putState) st.putState.run(n, v);
    db.exec('COMMIT');
  } catch (err) {
    try { db.exec('ROLLBACK'); } catch {}
    throw err;
  }
}
function reserveSeq(name, count, atLeast) {
  db.exec('BEGIN IMMEDIATE');
  try {
    const r = st.getState.get(name);
    let cur = 0;
    if (r) {
      const t = Buffer.from(r.value).toString('latin1');
      if (!/^[0-9]{1,16}$/.test(t) || Number(t) > 2 ** 50) {
        db.exec('ROLLBACK');
        return { bad: r.value };
      }
      cur = Number(t);
    }
    const first = Math.max(cur, atLeast);
    st.putState.run(name, Buffer.from(String(first + count), 'latin1'));
    db.exec('COMMIT');
    return { first };
  } catch (err) {
    try { db.exec('ROLLBACK'); } catch {}
    throw err;
  }
}
function load() {
  const resources = db.prepare('SELECT * FROM coapkit_resources ORDER BY ord').all().map((r) => ({
    path: r.path, payload: r.payload, contentFormat: r.content_format ?? undefined, etag: r.etag,
    maxAge: r.max_age ?? undefined, created: Number(r.created), modified: Number(r.modified), order: Number(r.ord),
  }));
  const counters = db.prepare('SELECT path, next FROM coapkit_counters').all().map((r) => [r.path, Number(r.next)]);
  const observers = db.prepare('SELECT * FROM coapkit_observers').all().map((o) => ({
    key: o.key, scheme: o.scheme, address: o.address, port: Number(o.port), token: o.token, path: o.path,
    accept: o.accept ?? undefined, options: o.options, seq: Number(o.seq), created: Number(o.created),
  }));
  return { resources, counters, observers };
}
parentPort.on('message', (m) => {
  let result;
  try {
    switch (m.op) {
      case 'open':
        try {
          result = openDb();
        } catch (err) {
          if (db) { try { db.close(); } catch {} db = undefined; }
          throw err;
        }
        break;
      case 'load': result = load(); break;
      case 'apply': apply(m.batch); break;
      case 'reserveSeq': result = reserveSeq(m.name, m.count, m.atLeast); break;
      case 'loadState': { const r = st.getState.get(m.name); result = r ? r.value : undefined; break; }
      case 'close': if (db) { try { db.close(); } catch {} db = undefined; } break;
    }
  } catch (err) {
    parentPort.postMessage({ id: m.id, ok: false, kind: kindOf(err), message: String((err && err.message) || err) });
    return;
  }
  parentPort.postMessage({ id: m.id, ok: true, result });
});
`;
