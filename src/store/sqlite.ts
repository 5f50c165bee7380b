/**
 * The SQLite store (`coapkit serve --data DIR`): one file, DIR/coapkit.db,
 * in WAL mode with synchronous=FULL (a commit is on disk when it returns),
 * opened with an exclusive lock (one server per directory).
 *
 * The binding: `node:sqlite` where the running Node has it (22.13+, 24: no
 * dependency), else the `better-sqlite3` package (an optional dependency,
 * loaded only here). Both are synchronous, so the database runs in a worker
 * thread: the event loop that answers GETs never waits for a disk write.
 */

import { Buffer } from 'node:buffer';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { coalesce } from './coalesce.js';
import { StoreDependencyError, type StoreError, StoreFormatError, StoreUnavailableError } from './errors.js';
import { checkReserve, parseStoredSequence, sequenceStateName } from './sequence.js';
import { SQLITE_APPLICATION_ID, SQLITE_SCHEMA_VERSION, SQLITE_WORKER_SOURCE } from './sqlite-worker.js';
import type {
  ObserverRecord,
  ResourceRecord,
  StateStore,
  StoreChange,
  StoreKind,
  StoreSnapshot,
} from './types.js';

/** The database file's name inside the data directory. */
export const SQLITE_FILE_NAME = 'coapkit.db';

/** The SQLite bindings the store can use. */
export type SqliteBinding = 'node:sqlite' | 'better-sqlite3';

/** Settings of the SQLite store. */
export interface SqliteStoreOptions {
  /**
   * Which binding to use; default: node:sqlite when this Node has it, else
   * better-sqlite3.
   */
  binding?: SqliteBinding;
  /**
   * 'FULL' (default): a commit returns once it is fsynced (survives a power
   * loss). 'NORMAL': once it is in the OS (survives a crash of the process,
   * not of the machine), several times faster on slow disks.
   */
  synchronous?: 'FULL' | 'NORMAL';
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  kind?: string;
  message?: string;
}

function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return Buffer.alloc(0);
}

/** Whether this Node has node:sqlite (22.13+ without a flag, 24). */
export function hasNodeSqlite(): boolean {
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  try {
    return typeof get === 'function' && get('node:sqlite') !== undefined;
  } catch {
    return false;
  }
}

/** A StateStore in one SQLite file (see the module comment). */
export class SqliteStore implements StateStore {
  /** Always 'sqlite'. */
  readonly kind: StoreKind = 'sqlite';
  /** The database file. */
  readonly location: string;
  /** The binding in use, known after open(). */
  binding: SqliteBinding | undefined;
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: unknown) => void }
  >();
  private dead: Error | undefined;

  private constructor(
    /** The database file's path. */
    readonly file: string,
    private readonly options: SqliteStoreOptions,
  ) {
    this.location = file;
  }

  /**
   * Opens (creating when missing) DIR/coapkit.db. Refuses, with a
   * StoreFormatError and without changing it, a file that is not a coapkit
   * database or is damaged; a StoreDependencyError names what is missing
   * when neither binding is available.
   */
  static async open(dir: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    const d = resolve(dir);
    try {
      mkdirSync(d, { recursive: true });
    } catch (err) {
      throw new StoreUnavailableError(`cannot create the data directory ${d}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return SqliteStore.openFile(join(d, SQLITE_FILE_NAME), options);
  }

  /** Opens a database file directly (see `open`). */
  static async openFile(file: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    const s = new SqliteStore(file, options);
    await s.start();
    return s;
  }

  private async start(): Promise<void> {
    let betterPath: string | undefined;
    if (this.options.binding !== 'node:sqlite' && !hasNodeSqlite()) {
      try {
        betterPath = createRequire(import.meta.url).resolve('better-sqlite3');
      } catch {
        throw new StoreDependencyError(
          `SQLite storage needs Node 22.13+ (built-in node:sqlite) or the better-sqlite3 package; Node ${process.version} has neither`,
          { hint: 'npm install better-sqlite3@12, or run on Node 22.13+ / 24' },
        );
      }
    }
    const worker = new Worker(SQLITE_WORKER_SOURCE, {
      eval: true,
      workerData: {
        file: this.file,
        binding: this.options.binding,
        betterPath,
        appId: SQLITE_APPLICATION_ID,
        version: SQLITE_SCHEMA_VERSION,
        synchronous: this.options.synchronous ?? 'FULL',
      },
    });
    this.worker = worker;
    worker.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(this.error(m.kind ?? 'other', m.message ?? 'SQLite error'));
    });
    const die = (err: Error) => {
      this.dead = err;
      for (const p of this.pending.values()) p.reject(new StoreUnavailableError(err.message, { cause: err }));
      this.pending.clear();
    };
    worker.on('error', die);
    worker.on('exit', () => die(new Error('the SQLite worker exited')));
    try {
      this.binding = (await this.call({ op: 'open' })) as SqliteBinding;
    } catch (err) {
      await this.stopWorker();
      throw err;
    }
    // The worker must not keep a stopped server's process alive.
    worker.unref();
  }

  private error(kind: string, message: string): StoreError {
    const where = this.file;
    switch (kind) {
      case 'full':
        return new StoreUnavailableError(`disk full: cannot write ${where}: ${message}`);
      case 'corrupt':
        return new StoreFormatError(message.includes(where) ? message : `${where}: ${message}`, {
          hint: 'the file was left as it is; move it away (or restore a backup) and start again',
        });
      case 'foreign':
        return new StoreFormatError(message, {
          hint: 'give --data a directory of its own (coapkit creates coapkit.db in it); the file was left as it is',
        });
      case 'busy':
        return new StoreUnavailableError(`${where} is in use by another process (another coapkit serve?)`, {
          hint: 'one server per --data directory',
        });
      case 'dependency':
        return new StoreDependencyError(message, {
          hint: 'npm install better-sqlite3@12, or run on Node 22.13+ / 24',
        });
      default:
        return new StoreUnavailableError(`${where}: ${message}`);
    }
  }

  private call(msg: Record<string, unknown>): Promise<unknown> {
    const w = this.worker;
    if (w === undefined || this.dead !== undefined) {
      return Promise.reject(new StoreUnavailableError(`${this.file} is closed`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Keep the process alive while a call is pending (a commit must finish).
      if (this.pending.size === 1) w.ref();
      w.postMessage({ ...msg, id });
    }).finally(() => {
      if (this.pending.size === 0) w.unref();
    });
  }

  async load(): Promise<StoreSnapshot> {
    const r = (await this.call({ op: 'load' })) as {
      resources: Array<Omit<ResourceRecord, 'payload' | 'etag'> & { payload: unknown; etag: unknown }>;
      counters: Array<[string, number]>;
      observers: Array<Omit<ObserverRecord, 'token' | 'options'> & { token: unknown; options: unknown }>;
    };
    return {
      resources: r.resources.map((x) => ({ ...x, payload: toBuffer(x.payload), etag: toBuffer(x.etag) })),
      counters: r.counters,
      observers: r.observers.map((o) => ({ ...o, token: toBuffer(o.token), options: toBuffer(o.options) })),
    };
  }

  async apply(changes: readonly StoreChange[]): Promise<void> {
    if (changes.length === 0) return;
    await this.call({ op: 'apply', batch: coalesce(changes) });
  }

  saveState(name: string, value: Uint8Array): Promise<void> {
    return this.apply([{ op: 'putState', name, value: Buffer.from(value) }]);
  }

  async loadState(name: string): Promise<Buffer | undefined> {
    const v = await this.call({ op: 'loadState', name });
    return v === undefined || v === null ? undefined : Buffer.from(toBuffer(v));
  }

  deleteState(name: string): Promise<void> {
    return this.apply([{ op: 'deleteState', name }]);
  }

  /** One IMMEDIATE transaction in the worker: read the counter, write it moved up by `count`. */
  async reserveSequence(name: string, count: number, atLeast = 0): Promise<number> {
    checkReserve(name, count, atLeast);
    const r = (await this.call({ op: 'reserveSeq', name: sequenceStateName(name), count, atLeast })) as
      | { first: number }
      | { bad: Uint8Array };
    // The worker answers the stored bytes when they are not a number: refused here, with the same error as elsewhere.
    if ('bad' in r) {
      parseStoredSequence(name, toBuffer(r.bad));
      throw new StoreFormatError(`${this.file}: bad OSCORE sequence counter ${name}`);
    }
    return r.first;
  }

  private async stopWorker(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w === undefined) return;
    await w.terminate();
  }

  /** Closes the database (releasing its lock) and stops the worker. */
  async close(): Promise<void> {
    if (this.worker === undefined) return;
    try {
      await this.call({ op: 'close' });
    } catch {}
    await this.stopWorker();
  }
}
