/** Opens the store a server is configured with: `--data DIR` (SQLite) or `--store URL` (PostgreSQL). */

import { StoreError } from './errors.js';
import { MemoryStore } from './memory.js';
import { PostgresStore, type PostgresStoreOptions } from './postgres.js';
import { type SqliteBinding, SqliteStore } from './sqlite.js';
import type { StateStore } from './types.js';

/** What openStore() opens. */
export interface OpenStoreOptions {
  /** Data directory: SQLite in DIR/coapkit.db. */
  data?: string;
  /** postgres://user:password@host:port/database (or postgresql://). */
  url?: string;
  /** Force a SQLite binding (default: node:sqlite when present, else better-sqlite3). */
  sqliteBinding?: SqliteBinding;
  /** PostgreSQL connection settings. */
  postgres?: PostgresStoreOptions;
}

/** A store for the options given; the memory store when neither `data` nor `url` is. */
export async function openStore(options: OpenStoreOptions): Promise<StateStore> {
  if (options.data !== undefined && options.url !== undefined) {
    throw new StoreError('give either a data directory (SQLite) or a store URL (PostgreSQL), not both');
  }
  if (options.url !== undefined) {
    if (!/^postgres(ql)?:\/\//i.test(options.url)) {
      throw new StoreError(`unsupported store URL "${options.url.replace(/:[^:@/]*@/, ':***@')}"`, {
        hint: 'use postgres://user:password@host:port/database, or --data DIR for SQLite',
      });
    }
    return PostgresStore.open(options.url, options.postgres);
  }
  if (options.data !== undefined) {
    return SqliteStore.open(options.data, options.sqliteBinding ? { binding: options.sqliteBinding } : {});
  }
  return new MemoryStore();
}
