/**
 * A throwaway PostgreSQL 15 cluster for tests. The code lives in
 * bench/lib/postgres.mjs (plain JavaScript, so bench/store.mjs runs it with
 * node alone); its types in bench/lib/postgres.d.mts.
 *
 *   const pg = await startPostgres();
 *   if (typeof pg === 'string') return t.skip(pg);
 *   ... pg.url ...            // postgres://coapkit@127.0.0.1:PORT/coapkit
 *   await pg.stopServer(); await pg.startServer();   // fault tests: same data
 *   await pg.stop();          // server down, directory gone
 */

export {
  PG_BIN,
  type StartPostgresOptions,
  startPostgres,
  type TestPostgres,
} from '../../bench/lib/postgres.mjs';
