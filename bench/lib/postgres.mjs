// A throwaway PostgreSQL 15 cluster, for the tests (test/helpers/postgres.ts
// re-exports it with its types, bench/lib/postgres.d.mts) and the bench
// (bench/store.mjs): `initdb` into a temporary directory, `postgres` on a free
// TCP port of 127.0.0.1 with its unix socket in that directory, stopped and
// removed by `stop()`. Run as the `postgres` system user when we run as root
// (initdb refuses root). Returns a reason instead when
// /usr/lib/postgresql/15/bin is missing.
//
//   const pg = await startPostgres();
//   if (typeof pg === 'string') return t.skip(pg);
//   ... pg.url ...            // postgres://coapkit@127.0.0.1:PORT/coapkit
//   await pg.stopServer(); await pg.startServer();   // fault tests: same data
//   await pg.stop();          // server down, directory gone
//
// With `{ netns, host, port, trustNetwork }` (root, network namespace tests)
// every program runs inside namespace `netns`, the server also listens on
// `host` (the URL's host) and trusts connections from `trustNetwork`.
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where Debian's postgresql-15 installs its server programs. */
export const PG_BIN = process.env.COAPKIT_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** @returns {Promise<number>} */
function freeTcpPort() {
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
function asPgUser(cmd, args) {
  if (process.getuid?.() === 0) return { cmd: 'runuser', args: ['-u', 'postgres', '--', cmd, ...args] };
  return { cmd, args };
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** Starts a cluster, or returns why it cannot (a test skips with that reason). */
export async function startPostgres(opts = {}) {
  const inNs = (c) =>
    opts.netns === undefined ? c : { cmd: 'ip', args: ['netns', 'exec', opts.netns, c.cmd, ...c.args] };
  const asPg = (cmd, args) => inNs(asPgUser(cmd, args));
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
  const ctl = (args) => {
    const c = asPg(join(PG_BIN, 'pg_ctl'), ['-D', data, ...args]);
    run(c.cmd, c.args);
  };
  let running = false;
  // A test that dies must not leave a server behind.
  const onExit = () => {
    if (!running) return;
    const c = asPg(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']);
    spawnSync(c.cmd, c.args, { timeout: 10_000 });
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  // pg_ctl (not a child process of ours): it waits for the server to be ready or gone.
  const startServer = async () => {
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

  const stopServer = async () => {
    if (!running) return;
    // Fast shutdown: sessions are disconnected, nothing committed is lost.
    ctl(['-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };

  const psql = (sql, database = 'coapkit') => {
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
  const base = `postgres://coapkit@${opts.host ?? '127.0.0.1'}:${port}`;
  return {
    url: `${base}/coapkit`,
    port,
    dir,
    stopServer,
    startServer,
    psql,
    createDatabase: (name) => {
      psql(`CREATE DATABASE ${name}`);
      return `${base}/${name}`;
    },
    stop: async () => {
      await stopServer();
      process.off('exit', onExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
