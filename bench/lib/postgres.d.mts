/** Types of bench/lib/postgres.mjs (a throwaway PostgreSQL 15 cluster; see there). */

/** Where Debian's postgresql-15 installs its server programs. */
export declare const PG_BIN: string;

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
  /** Creates database `name` (a plain identifier) in the cluster; returns its connection URL. */
  createDatabase(name: string): string;
  /** Stops the server and removes the directory. */
  stop(): Promise<void>;
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
export declare function startPostgres(opts?: StartPostgresOptions): Promise<TestPostgres | string>;
