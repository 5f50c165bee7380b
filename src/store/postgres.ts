/**
 * The PostgreSQL store (`coapkit serve --store postgres://...`): several
 * servers can share one database (the fleet). Uses the `pg` package (an
 * optional dependency), loaded only here.
 *
 * One connection for writes: a batch is one transaction of a few multi-row
 * statements. When the database goes away, writes fail at once with
 * StoreUnavailableError (the server answers 5.03) and the store reconnects in
 * the background. A batch whose COMMIT was sent but not answered is reported
 * as failed: it was not acknowledged, and it may be stored (never lost).
 *
 * Every committed batch also sends a NOTIFY on channel `coapkit_changes`
 * (delivered on commit) with the paths it changed, so other servers sharing
 * the database learn of them (`subscribe`).
 */

import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { coalesce } from './coalesce.js';
import { StoreDependencyError, StoreFormatError, StoreUnavailableError } from './errors.js';
import { badStoredSequence, checkReserve, MAX_STORED_SEQUENCE, sequenceStateName } from './sequence.js';
import type {
  ObserverRecord,
  RemoteChange,
  ResourceRecord,
  StateStore,
  StoreChange,
  StoreKind,
  StoreSnapshot,
} from './types.js';

/** Schema version kept in coapkit_meta. */
export const POSTGRES_SCHEMA_VERSION = 1;
/** The NOTIFY channel of committed changes. */
export const POSTGRES_CHANNEL = 'coapkit_changes';

/** The subset of pg's Client this store uses. */
interface PgClient {
  connect(): Promise<void>;
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  end(): Promise<void>;
  on(event: 'error', cb: (err: Error) => void): unknown;
  on(event: 'end', cb: () => void): unknown;
  on(event: 'notification', cb: (m: { channel: string; payload?: string }) => void): unknown;
}
type PgClientClass = new (config: Record<string, unknown>) => PgClient;

/** Settings of the PostgreSQL store. */
export interface PostgresStoreOptions {
  /** Client-side timeout of one query, ms (default 5000): a database that stops answering fails writes. */
  queryTimeoutMs?: number;
  /** First reconnect delay, ms (default 250, doubling up to 5000). */
  reconnectMs?: number;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

async function loadPg(): Promise<PgClientClass> {
  try {
    const mod = (await import('pg')) as unknown as {
      default?: { Client: PgClientClass };
      Client?: PgClientClass;
    };
    const Client = mod.Client ?? mod.default?.Client;
    if (Client === undefined) throw new Error('pg has no Client export');
    return Client;
  } catch (err) {
    throw new StoreDependencyError(`--store postgres:// needs the pg package: ${(err as Error).message}`, {
      cause: err,
      hint: 'npm install pg',
    });
  }
}

const num = (v: unknown): number => Number(v);
const optNum = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : Number(v));

/** A StateStore in PostgreSQL, shareable by several servers (see the module comment). */
export class PostgresStore implements StateStore {
  /** Always 'postgres'. */
  readonly kind: StoreKind = 'postgres';
  /** The URL without its password. */
  readonly location: string;
  /** This server's id in NOTIFY payloads (it ignores its own changes). */
  readonly origin = randomBytes(6).toString('hex');
  private client: PgClient | undefined;
  private connecting: Promise<void> | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private delay: number;
  private closed = false;
  private listener: PgClient | undefined;
  /** LISTEN was in place once (a later one is a re-listen: see RemoteChange 'resync'). */
  private listened = false;
  private readonly subscribers = new Set<(ev: RemoteChange) => void>();
  /** Times the write connection was (re)established. */
  connects = 0;
  /** Called when the connection is lost or back (logs). */
  onStatus: ((up: boolean, err?: Error) => void) | undefined;

  private constructor(
    private readonly url: string,
    private readonly Client: PgClientClass,
    private readonly options: PostgresStoreOptions,
  ) {
    this.location = redactUrl(url);
    this.delay = options.reconnectMs ?? 250;
  }

  /** Connects and creates the schema when missing; refuses a schema of another version. */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const Client = await loadPg();
    const s = new PostgresStore(url, Client, options);
    await s.connect();
    return s;
  }

  private newClient(): PgClient {
    return new this.Client({
      connectionString: this.url,
      query_timeout: this.options.queryTimeoutMs ?? 5000,
      connectionTimeoutMillis: this.options.queryTimeoutMs ?? 5000,
      application_name: 'coapkit',
    });
  }

  private async connect(): Promise<void> {
    const c = this.newClient();
    try {
      await c.connect();
    } catch (err) {
      throw new StoreUnavailableError(`cannot connect to ${this.location}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    c.on('error', (err) => this.lost(c, err));
    c.on('end', () => this.lost(c, new Error('connection ended')));
    try {
      await this.ensureSchema(c);
    } catch (err) {
      await c.end().catch(() => {});
      throw err;
    }
    this.client = c;
    this.connects++;
    this.delay = this.options.reconnectMs ?? 250;
  }

  private async ensureSchema(c: PgClient): Promise<void> {
    await c.query('BEGIN');
    try {
      // Servers of a fleet starting together: one creates the schema.
      await c.query("SELECT pg_advisory_xact_lock(hashtext('coapkit_schema'))");
      const meta = await c.query("SELECT to_regclass('coapkit_meta') IS NOT NULL AS has");
      if (meta.rows[0]?.has === true) {
        const v = await c.query("SELECT value FROM coapkit_meta WHERE key = 'schema_version'");
        const version = Number(v.rows[0]?.value);
        if (version !== POSTGRES_SCHEMA_VERSION) {
          throw new StoreFormatError(
            `${this.location} holds a coapkit schema of version ${v.rows[0]?.value ?? '(none)'}; this coapkit uses version ${POSTGRES_SCHEMA_VERSION}`,
            { hint: 'the database was left as it is' },
          );
        }
      } else {
        const other = await c.query(
          "SELECT count(*) AS n FROM pg_tables WHERE tablename IN ('coapkit_resources', 'coapkit_counters', 'coapkit_observers', 'coapkit_state')",
        );
        if (Number(other.rows[0]?.n) > 0) {
          throw new StoreFormatError(
            `${this.location} has coapkit_* tables but no coapkit_meta: not a coapkit store (or a damaged one)`,
            { hint: 'the database was left as it is; use another database' },
          );
        }
        await c.query(`
          CREATE TABLE coapkit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
          CREATE TABLE coapkit_resources (
            path TEXT PRIMARY KEY, payload BYTEA NOT NULL, content_format INTEGER, etag BYTEA NOT NULL,
            max_age BIGINT, created BIGINT NOT NULL, modified BIGINT NOT NULL, ord BIGINT NOT NULL);
          CREATE TABLE coapkit_counters (path TEXT PRIMARY KEY, next BIGINT NOT NULL);
          CREATE TABLE coapkit_observers (
            key TEXT PRIMARY KEY, scheme TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL,
            token BYTEA NOT NULL, path TEXT NOT NULL, accept INTEGER, options BYTEA NOT NULL,
            seq BIGINT NOT NULL, created BIGINT NOT NULL);
          CREATE TABLE coapkit_state (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
        `);
        await c.query('INSERT INTO coapkit_meta (key, value) VALUES ($1, $2)', [
          'schema_version',
          String(POSTGRES_SCHEMA_VERSION),
        ]);
      }
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  /** The write connection failed: writes fail until a reconnect succeeds. */
  private lost(c: PgClient, err: Error): void {
    if (this.client !== c) return;
    this.client = undefined;
    c.end().catch(() => {});
    this.onStatus?.(false, err);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer !== undefined || this.connecting !== undefined) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connecting = this.reconnect().then(
        () => {
          this.connecting = undefined;
        },
        () => {
          this.connecting = undefined;
          this.delay = Math.min(this.delay * 2, 5000);
          this.scheduleReconnect();
        },
      );
    }, this.delay);
  }

  /** Re-establishes what is missing: the write connection, and LISTEN when someone subscribed. */
  private async reconnect(): Promise<void> {
    if (this.closed) return;
    if (this.client === undefined) {
      await this.connect();
      this.onStatus?.(true);
    }
    if (this.subscribers.size > 0 && this.listener === undefined) await this.listen();
  }

  private writer(): PgClient {
    const c = this.client;
    if (c === undefined) {
      this.scheduleReconnect();
      throw new StoreUnavailableError(`${this.location} is unreachable (reconnecting)`);
    }
    return c;
  }

  async load(): Promise<StoreSnapshot> {
    const c = this.writer();
    const res = await c.query('SELECT * FROM coapkit_resources ORDER BY ord');
    const cnt = await c.query('SELECT path, next FROM coapkit_counters');
    const obs = await c.query('SELECT * FROM coapkit_observers');
    return {
      resources: res.rows.map(rowToResource),
      counters: cnt.rows.map((r) => [String(r.path), num(r.next)]),
      observers: obs.rows.map(
        (o): ObserverRecord => ({
          key: String(o.key),
          scheme: o.scheme === 'coaps' ? 'coaps' : 'coap',
          address: String(o.address),
          port: num(o.port),
          token: o.token as Buffer,
          path: String(o.path),
          accept: optNum(o.accept),
          options: o.options as Buffer,
          seq: num(o.seq),
          created: num(o.created),
        }),
      ),
    };
  }

  async getResource(path: string): Promise<ResourceRecord | undefined> {
    const r = await this.writer().query('SELECT * FROM coapkit_resources WHERE path = $1', [path]);
    return r.rows[0] === undefined ? undefined : rowToResource(r.rows[0]);
  }

  /**
   * Statements on the write connection, one at a time: a reservation must
   * never run inside another caller's open transaction (it would be rolled
   * back with it, or be committed only later).
   */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => {});
    return run;
  }
  private tail: Promise<unknown> = Promise.resolve();

  apply(changes: readonly StoreChange[]): Promise<void> {
    if (changes.length === 0) return Promise.resolve();
    return this.serial(() => this.applyNow(changes));
  }

  /**
   * One statement (autocommit): INSERT ... ON CONFLICT DO UPDATE moves the
   * counter up under the row's lock, so concurrent servers get disjoint ranges;
   * RETURNING gives the new value once it is committed.
   */
  reserveSequence(name: string, count: number, atLeast = 0): Promise<number> {
    try {
      checkReserve(name, count, atLeast);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.serial(async () => {
      const c = this.writer();
      let r: { rows: Array<Record<string, unknown>> };
      try {
        r = await c.query(
          `INSERT INTO coapkit_state (name, value)
             VALUES ($1, convert_to(($2::bigint + $3::bigint)::text, 'UTF8'))
           ON CONFLICT (name) DO UPDATE SET value = convert_to((GREATEST(
             CASE WHEN encode(coapkit_state.value, 'escape') ~ '^[0-9]{1,16}$'
               THEN encode(coapkit_state.value, 'escape')::bigint END, $2::bigint) + $3::bigint)::text, 'UTF8')
           WHERE encode(coapkit_state.value, 'escape') ~ '^[0-9]{1,16}$'
           RETURNING encode(value, 'escape')::bigint - $3::bigint AS first`,
          [sequenceStateName(name), atLeast, count],
        );
      } catch (err) {
        throw this.failed(c, err, (err as Error).message);
      }
      const row = r.rows[0];
      // No row: the WHERE refused a stored value that is not a number.
      const first = row === undefined ? Number.NaN : Number(row.first);
      if (!Number.isSafeInteger(first) || first < 0 || first > MAX_STORED_SEQUENCE)
        throw badStoredSequence(name, `${this.location}: `, '');
      return first;
    });
  }

  private async applyNow(changes: readonly StoreChange[]): Promise<void> {
    const c = this.writer();
    const b = coalesce(changes);
    try {
      await c.query('BEGIN');
      if (b.deleteResources.length > 0) {
        await c.query('DELETE FROM coapkit_resources WHERE path = ANY($1::text[])', [b.deleteResources]);
      }
      // POST entries: a plain INSERT, so that an entry number another server took meanwhile
      // fails the batch (unique violation) instead of overwriting an acknowledged entry.
      const fresh = b.putResources.filter((x) => b.createOnly.has(x.path));
      const upserts = b.putResources.filter((x) => !b.createOnly.has(x.path));
      for (const [rows, conflict] of [
        [fresh, ''],
        [
          upserts,
          `ON CONFLICT (path) DO UPDATE SET payload = EXCLUDED.payload, content_format = EXCLUDED.content_format,
             etag = EXCLUDED.etag, max_age = EXCLUDED.max_age, created = EXCLUDED.created,
             modified = EXCLUDED.modified, ord = EXCLUDED.ord`,
        ],
      ] as const) {
        if (rows.length === 0) continue;
        await c.query(
          `INSERT INTO coapkit_resources (path, payload, content_format, etag, max_age, created, modified, ord)
           SELECT * FROM unnest($1::text[], $2::bytea[], $3::int[], $4::bytea[], $5::int8[], $6::int8[], $7::int8[], $8::int8[])
           ${conflict}`,
          [
            rows.map((x) => x.path),
            rows.map((x) => x.payload),
            rows.map((x) => x.contentFormat ?? null),
            rows.map((x) => x.etag),
            rows.map((x) => x.maxAge ?? null),
            rows.map((x) => x.created),
            rows.map((x) => x.modified),
            rows.map((x) => x.order),
          ],
        );
      }
      if (b.deleteCounters.length > 0) {
        await c.query('DELETE FROM coapkit_counters WHERE path = ANY($1::text[])', [b.deleteCounters]);
      }
      if (b.putCounters.length > 0) {
        await c.query(
          `INSERT INTO coapkit_counters (path, next) SELECT * FROM unnest($1::text[], $2::int8[])
           ON CONFLICT (path) DO UPDATE SET next = EXCLUDED.next`,
          [b.putCounters.map((x) => x[0]), b.putCounters.map((x) => x[1])],
        );
      }
      if (b.deleteObservers.length > 0) {
        await c.query('DELETE FROM coapkit_observers WHERE key = ANY($1::text[])', [b.deleteObservers]);
      }
      if (b.putObservers.length > 0) {
        const o = b.putObservers;
        await c.query(
          `INSERT INTO coapkit_observers (key, scheme, address, port, token, path, accept, options, seq, created)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bytea[], $6::text[], $7::int[], $8::bytea[], $9::int8[], $10::int8[])
           ON CONFLICT (key) DO UPDATE SET seq = EXCLUDED.seq, address = EXCLUDED.address, port = EXCLUDED.port,
             token = EXCLUDED.token, path = EXCLUDED.path, accept = EXCLUDED.accept, options = EXCLUDED.options`,
          [
            o.map((x) => x.key),
            o.map((x) => x.scheme),
            o.map((x) => x.address),
            o.map((x) => x.port),
            o.map((x) => x.token),
            o.map((x) => x.path),
            o.map((x) => x.accept ?? null),
            o.map((x) => x.options),
            o.map((x) => x.seq),
            o.map((x) => x.created),
          ],
        );
      }
      if (b.deleteState.length > 0) {
        await c.query('DELETE FROM coapkit_state WHERE name = ANY($1::text[])', [b.deleteState]);
      }
      for (const [name, value] of b.putState) {
        await c.query(
          'INSERT INTO coapkit_state (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value',
          [name, value],
        );
      }
      for (const payload of notifyPayloads(this.origin, b.putResources, b.deleteResources)) {
        await c.query('SELECT pg_notify($1, $2)', [POSTGRES_CHANNEL, payload]);
      }
      await c.query('COMMIT');
    } catch (err) {
      if (this.client === c) await c.query('ROLLBACK').catch(() => {});
      const msg =
        (err as { code?: string }).code === '23505'
          ? `a POST entry number was taken by another server meanwhile (retry): ${(err as Error).message}`
          : (err as Error).message;
      throw this.failed(c, err, msg);
    }
  }

  /**
   * A statement on `c` failed with `err`: when the connection is lost,
   * reconnect in the background; the error to throw (`msg` says what failed).
   */
  private failed(c: PgClient, err: unknown, msg: string): StoreUnavailableError {
    if (this.client !== c || /terminat|Connection|ECONN|timeout|shutdown/i.test(msg))
      this.lost(c, err as Error);
    return new StoreUnavailableError(`${this.location}: ${msg}`, { cause: err });
  }

  saveState(name: string, value: Uint8Array): Promise<void> {
    return this.apply([{ op: 'putState', name, value: Buffer.from(value) }]);
  }

  async loadState(name: string): Promise<Buffer | undefined> {
    const r = await this.writer().query('SELECT value FROM coapkit_state WHERE name = $1', [name]);
    return r.rows[0] === undefined ? undefined : (r.rows[0].value as Buffer);
  }

  deleteState(name: string): Promise<void> {
    return this.apply([{ op: 'deleteState', name }]);
  }

  /**
   * Changes committed by other servers sharing this database (LISTEN
   * coapkit_changes); resolves once LISTEN is in place.
   */
  async subscribe(listener: (ev: RemoteChange) => void): Promise<() => void> {
    this.subscribers.add(listener);
    if (this.listener === undefined) {
      try {
        await this.listen();
      } catch {
        this.scheduleReconnect();
      }
    }
    return () => {
      this.subscribers.delete(listener);
    };
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const c = this.newClient();
    this.listener = c;
    const drop = () => {
      if (this.listener !== c) return;
      this.listener = undefined;
      c.end().catch(() => {});
      // The write connection's reconnect loop restarts LISTEN once it is back.
      this.scheduleReconnect();
    };
    c.on('error', drop);
    c.on('end', drop);
    c.on('notification', (m) => {
      if (m.channel !== POSTGRES_CHANNEL || m.payload === undefined) return;
      let parsed: { o?: unknown; p?: unknown; d?: unknown };
      try {
        parsed = JSON.parse(m.payload) as typeof parsed;
      } catch {
        return;
      }
      if (typeof parsed.o !== 'string' || parsed.o === this.origin) return;
      const origin = parsed.o;
      for (const [list, kind] of [
        [parsed.p, 'put'],
        [parsed.d, 'delete'],
      ] as const) {
        if (!Array.isArray(list)) continue;
        for (const path of list) {
          if (typeof path !== 'string') continue;
          for (const s of this.subscribers) s({ path, kind, origin });
        }
      }
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${POSTGRES_CHANNEL}`);
    } catch (err) {
      drop();
      throw err;
    }
    // Listening again after a loss: what was notified meanwhile is gone; subscribers reload.
    if (this.listened) for (const s of this.subscribers) s({ path: '', kind: 'resync', origin: '' });
    this.listened = true;
  }

  /** Stops reconnecting and closes both connections. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    await this.connecting?.catch(() => {});
    const c = this.client;
    this.client = undefined;
    const l = this.listener;
    this.listener = undefined;
    await Promise.all([c?.end().catch(() => {}), l?.end().catch(() => {})]);
  }
}

function rowToResource(r: Record<string, unknown>): ResourceRecord {
  return {
    path: String(r.path),
    payload: r.payload as Buffer,
    contentFormat: optNum(r.content_format),
    etag: r.etag as Buffer,
    maxAge: optNum(r.max_age),
    created: num(r.created),
    modified: num(r.modified),
    order: num(r.ord),
  };
}

/** NOTIFY payloads (at most ~7,000 bytes each; PostgreSQL's limit is 8,000). */
function notifyPayloads(
  origin: string,
  puts: readonly ResourceRecord[],
  deletes: readonly string[],
): string[] {
  const out: string[] = [];
  let p: string[] = [];
  let d: string[] = [];
  let size = 0;
  const emit = () => {
    if (p.length + d.length > 0) out.push(JSON.stringify({ o: origin, p, d }));
    p = [];
    d = [];
    size = 0;
  };
  const add = (list: 'p' | 'd', path: string) => {
    const cost = path.length * 2 + 4;
    if (size + cost > 7000) emit();
    (list === 'p' ? p : d).push(path);
    size += cost;
  };
  for (const r of puts) add('p', r.path);
  for (const x of deletes) add('d', x);
  emit();
  return out;
}
