/** Durable stores for the server's state (resources, observers, named blobs). */

export { GroupCommitter, type GroupCommitterOptions } from './batcher.js';
export { StoreDependencyError, StoreError, StoreFormatError, StoreUnavailableError } from './errors.js';
export { MemoryStore } from './memory.js';
export { type OpenStoreOptions, openStore } from './open.js';
export { POSTGRES_CHANNEL, PostgresStore, type PostgresStoreOptions } from './postgres.js';
export {
  hasNodeSqlite,
  SQLITE_FILE_NAME,
  type SqliteBinding,
  SqliteStore,
  type SqliteStoreOptions,
} from './sqlite.js';
export type {
  ObserverRecord,
  RemoteChange,
  ResourceRecord,
  StateStore,
  StoreChange,
  StoreKind,
  StoreSnapshot,
} from './types.js';
