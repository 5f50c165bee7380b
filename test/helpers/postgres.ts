/**
 * A throwaway PostgreSQL 15 cluster for tests: `initdb` into a temporary
 * directory, `postgres` on a free TCP port of 127.0.0.1 with its unix socket in
 * that directory, stopped and removed by `stop()`. Run as the `postgres` system
 * user when the tests run as root (initdb refuses root). Skips (returns a
 * reason) when /usr/lib/postgresql/15/bin is missing.
 *
 *   const pg = await startPostgres();
 *   if (typeof pg === 'string') return t.skip(pg);
 *   ... pg.url ...            // postgres://coapkit@127.0.0.1:PORT/coapkit
 *   await pg.stopServer(); await pg.startServer();   // fault tests: same data
 *   await pg.stop();          // server down, directory gone
 *
 * With `{ netns, host, port, trustNetwork }` (root, network namespace tests)
 * every program runs inside namespace `netns`, the server also listens on
 * `host` (the URL's host) and trusts connections from `trustNetwork`.
 */

import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where Debian's postgresql-15 installs its server programs. */
export const PG_BIN = process.env.COAPKIT_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface TestPostgres {
  /** Connection URL for the `coapkit` database (user `coapkit`, trust authentication on loopback). */
  url: string;
  port: number;
  /** The cluster's temporary directory (data in `data/`, the socket in `sock/`). */
  dir: string;
  /** Stops the server (fast shutdown), keeping the data: to test a store that goes away. */
  stopServer(): Promise<void>;
  /** Starts it again on the same port and data. */
  startServer(): Promise<void>;
  /** Runs SQL with psql in `database` (default coapkit); returns stdout (tuples only, unaligned). */
  psql(sql: string, database?: string): string;
  /** Stops the server and removes the directory. */
  stop(): Promise<void>;
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Runs as the postgres system user when we are root (initdb and postgres refuse root). */
function asPgUser(cmd: string, args: string[]): { cmd: string; args: string[] } {
  if (process.getuid?.() === 0) return { cmd: 'runuser', args: ['-u', 'postgres', '--', cmd, ...args] };
  return { cmd, args };
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

export interface StartPostgresOptions {
  /** Run initdb, the server and psql inside this network namespace (`ip netns exec`). */
  netns?: string;
  /** Also listen on this address, and put it in the URL (default: 127.0.0.1 only). */
  host?: string;
  /** TCP port (default: a free one of this namespace's loopback). */
  port?: number;
  /** Trust (no password) connections from this CIDR too, e.g. `10.15.0.0/16`. */
  trustNetwork?: string;
}

/** Starts a cluster, or returns why it cannot (the test skips with that reason). */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<TestPostgres | string> {
  const inNs = (c: { cmd: string; args: string[] }): { cmd: string; args: string[] } =>
    opts.netns === undefined ? c : { cmd: 'ip', args: ['netns', 'exec', opts.netns, c.cmd, ...c.args] };
  const asPg = (cmd: string, args: string[]) => inNs(asPgUser(cmd, args));
  if (!existsSync(join(PG_BIN, 'initdb')) || !existsSync(join(PG_BIN, 'postgres'))) {
    return `PostgreSQL 15 not installed (${PG_BIN} missing; Debian package postgresql-15)`;
  }
  const root = process.getuid?.() === 0;
  if (root && spawnSync('id', ['-u', 'postgres']).status !== 0) {
    return 'running as root and there is no postgres system user to run initdb as';
  }
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-pg-'));
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  run('mkdir', ['-p', sock]);
  chmodSync(dir, 0o755);
  if (root) {
    const uid = Number(run('id', ['-u', 'postgres']).trim());
    const gid = Number(run('id', ['-g', 'postgres']).trim());
    chownSync(dir, uid, gid);
    chownSync(sock, uid, gid);
  }
  const init = asPg(join(PG_BIN, 'initdb'), [
    '-D',
    data,
    '-U',
    'coapkit',
    '--auth=trust',
    '--no-sync',
    '-E',
    'UTF8',
    '--locale=C',
  ]);
  try {
    run(init.cmd, init.args);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  if (opts.trustNetwork !== undefined) {
    appendFileSync(join(data, 'pg_hba.conf'), `host all all ${opts.trustNetwork} trust\n`);
  }
  const port = opts.port ?? (await freeTcpPort());
  const listen = opts.host === undefined ? '127.0.0.1' : `127.0.0.1,${opts.host}`;
  const log = join(dir, 'postgres.log');
  const ctl = (args: string[]): void => {
    const c = asPg(join(PG_BIN, 'pg_ctl'), ['-D', data, ...args]);
    run(c.cmd, c.args);
  };
  let running = false;
  // A test that dies must not leave a server behind.
  const onExit = (): void => {
    if (!running) return;
    const c = asPg(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']);
    spawnSync(c.cmd, c.args, { timeout: 10_000 });
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  // pg_ctl (not a child process of ours): it waits for the server to be ready or gone.
  const startServer = async (): Promise<void> => {
    ctl([
      '-l',
      log,
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${port} -k ${sock} -h ${listen} -c max_connections=50`,
      'start',
    ]);
    running = true;
  };

  const stopServer = async (): Promise<void> => {
    if (!running) return;
    // Fast shutdown: sessions are disconnected, nothing committed is lost.
    ctl(['-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };

  const psql = (sql: string, database = 'coapkit'): string => {
    const c = inNs({
      cmd: join(PG_BIN, 'psql'),
      args: [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        'coapkit',
        '-d',
        database,
        '-v',
        'ON_ERROR_STOP=1',
        '-At',
        '-c',
        sql,
      ],
    });
    return run(c.cmd, c.args);
  };

  try {
    await startServer();
    const c = inNs({
      cmd: join(PG_BIN, 'createdb'),
      args: ['-h', '127.0.0.1', '-p', String(port), '-U', 'coapkit', 'coapkit'],
    });
    run(c.cmd, c.args);
  } catch (err) {
    await stopServer();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `postgres://coapkit@${opts.host ?? '127.0.0.1'}:${port}/coapkit`,
    port,
    dir,
    stopServer,
    startServer,
    psql,
    stop: async () => {
      await stopServer();
      process.off('exit', onExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
