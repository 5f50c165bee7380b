/**
 * What a durable store keeps for the server (issue 14): resources, POST
 * collection counters, observe registrations, and named blobs (DTLS sessions,
 * OSCORE sequence numbers, the Observe sequence high-water mark). Three
 * implementations: memory (the library default), SQLite (`coapkit serve --data
 * DIR`), PostgreSQL (`--store postgres://...`).
 *
 * The server keeps its working copy in memory and reads only from there; a
 * store is the durable copy, loaded once at start (`load()`) and kept up to
 * date by `apply()`, one transaction per batch of changes (group commit,
 * see GroupCommitter).
 */

import type { Buffer } from 'node:buffer';

/** One stored resource (its representation and metadata). */
export interface ResourceRecord {
  /** Absolute path, e.g. "/sensors/temp". */
  path: string;
  /** The representation's bytes. */
  payload: Buffer;
  /** Content-Format given when it was stored; undefined when the request had none. */
  contentFormat: number | undefined;
  /** Entity tag as served (8 bytes). */
  etag: Buffer;
  /** Max-Age in seconds for this resource; undefined: the server's default. */
  maxAge: number | undefined;
  /** Creation and last modification, milliseconds since the epoch. */
  created: number;
  /** Last modification, milliseconds since the epoch. */
  modified: number;
  /** Creation order (increasing): the order of entries in a POST collection. */
  order: number;
}

/** One observe registration (RFC 7641) as it survives a restart. */
export interface ObserverRecord {
  /** Identifies the registration (endpoint kind, peer and token). */
  key: string;
  /** 'coap' (plain UDP) or 'coaps' (DTLS: only restorable with its session). */
  scheme: 'coap' | 'coaps';
  /** Peer address and port the notifications go to. */
  address: string;
  /** Peer port. */
  port: number;
  /** The registration's token: notifications carry it. */
  token: Buffer;
  /** The observed resource's path. */
  path: string;
  /** Accept of the registration; undefined when it had none. */
  accept: number | undefined;
  /** The registering request's options, encoded as CoAP options (delta form, no payload marker). */
  options: Buffer;
  /** The last Observe sequence number sent to it (24 bits). */
  seq: number;
  /** When it registered, milliseconds since the epoch. */
  created: number;
}

/** One change in a batch; a batch is committed as one transaction, in order. */
export type StoreChange =
  | {
      /** Create or replace a resource. */
      op: 'putResource';
      /** The resource's new state. */
      resource: ResourceRecord;
      /**
       * A new POST collection entry: it must not exist in the store yet (another
       * server sharing the store may have taken the number); the batch fails if it does.
       */
      create?: boolean;
    }
  | {
      /** Remove a resource. */
      op: 'deleteResource';
      /** Its path. */
      path: string;
    }
  | {
      /** Set the next entry number of a POST collection. */
      op: 'putCounter';
      /** The collection's path. */
      path: string;
      /** The last entry number used. */
      next: number;
    }
  | {
      /** Remove a POST collection counter. */
      op: 'deleteCounter';
      /** The collection's path. */
      path: string;
    }
  | {
      /** Create or replace an observe registration. */
      op: 'putObserver';
      /** The registration. */
      observer: ObserverRecord;
    }
  | {
      /** Remove an observe registration. */
      op: 'deleteObserver';
      /** Its key. */
      key: string;
    }
  | {
      /** Store a named blob. */
      op: 'putState';
      /** The blob's name. */
      name: string;
      /** Its bytes. */
      value: Buffer;
    }
  | {
      /** Remove a named blob. */
      op: 'deleteState';
      /** The blob's name. */
      name: string;
    };

/** Everything a store holds, as `load()` returns it at start. */
export interface StoreSnapshot {
  /** In creation order. */
  resources: ResourceRecord[];
  /** POST collection counters: path and last entry number. */
  counters: Array<[path: string, next: number]>;
  /** Observe registrations. */
  observers: ObserverRecord[];
}

/** Which implementation a store is. */
export type StoreKind = 'memory' | 'sqlite' | 'postgres';

/**
 * A durable store. `apply()` commits a batch as one transaction and resolves
 * only after it is committed; it rejects with a StoreUnavailableError when the
 * store cannot take writes now (disk full, database gone): nothing of that
 * batch is stored then (or, for a connection lost during COMMIT, it may be:
 * never acknowledged, never lost).
 */
export interface StateStore {
  /** Which implementation it is. */
  readonly kind: StoreKind;
  /** Where it lives, for messages: a file path or a URL without its password. */
  readonly location: string;
  /** Everything stored (called once at start). */
  load(): Promise<StoreSnapshot>;
  /** Commits `changes` in order, as one transaction. */
  apply(changes: readonly StoreChange[]): Promise<void>;
  /** Stores a named blob (DTLS sessions, sequence numbers): committed when the promise resolves. */
  saveState(name: string, value: Uint8Array): Promise<void>;
  /** A named blob, or undefined. */
  loadState(name: string): Promise<Buffer | undefined>;
  /** Removes a named blob. */
  deleteState(name: string): Promise<void>;
  /**
   * Reserves `count` OSCORE sender sequence numbers for the context `name`
   * (RFC 8613 §7.5): resolves with the first number of a range [first, first +
   * count) that no other caller ever receives (in this process or another
   * server sharing the store), committed before it resolves; `first` is at
   * least `atLeast` (a FILE.seq being migrated). Kept as the named blob
   * `oscore.seq:NAME` (decimal text). Undefined in stores that cannot do it.
   */
  reserveSequence?(name: string, count: number, atLeast?: number): Promise<number>;
  /**
   * Changes committed by another server sharing this store (PostgreSQL
   * LISTEN/NOTIFY): `listener` gets the paths; resolves once listening.
   * Undefined when the store has no other writers (memory, SQLite).
   */
  subscribe?(listener: (ev: RemoteChange) => void): Promise<() => void>;
  /** Reads one resource from the store (after a RemoteChange). */
  getResource?(path: string): Promise<ResourceRecord | undefined>;
  /** Waits for what is in progress and releases the database (file lock, connections). */
  close(): Promise<void>;
}

/** A change made by another server sharing the store. */
export interface RemoteChange {
  /** The resource's path. */
  path: string;
  /**
   * Created or replaced, or deleted; 'resync' (path ''): notifications may have
   * been missed (LISTEN was re-established), reload everything.
   */
  kind: 'put' | 'delete' | 'resync';
  /** The writing server's id (a server ignores its own changes). */
  origin: string;
}
