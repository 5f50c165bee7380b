/**
 * `coapkit serve --data DIR` / `--store postgres://...`: the durable store
 * behind the served resources and observers. Startup loads what the store
 * holds into memory (reads are served from there), then every change goes
 * through group commit before its 2.xx; observers registered before a
 * restart are notified again (plain coap:// ones; coaps:// ones too with
 * --state-key, whose DTLS sessions are saved on a graceful stop — after a
 * crash their sessions are gone and their first notification fails).
 */

import { Buffer } from 'node:buffer';
import type { CoapOption } from '../codec/message.js';
import { decodeUint } from '../codec/options.js';
import { OptionNumber } from '../constants/options.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import type { ObservePersistence, ObserveServer } from '../observe/server.js';
import type { DynamicStore } from '../server/dynamic-store.js';
import type { CoapServer } from '../server/server.js';
import { GroupCommitter } from '../store/batcher.js';
import { openStore } from '../store/open.js';
import { PostgresStore } from '../store/postgres.js';
import { SqliteStore } from '../store/sqlite.js';
import type { ObserverRecord, StateStore, StoreSnapshot } from '../store/types.js';
import { makePeer } from '../transport/transport.js';

/** The named blob holding the Observe sequence number reservation (4 bytes, big-endian). */
export const OBSERVE_SEQ_STATE = 'observe.seq';

export interface ServeStoreOptions {
  /** --data DIR: SQLite in DIR/coapkit.db. */
  data?: string;
  /** --store postgres://...: PostgreSQL. */
  storeUrl?: string;
  /** --state-key: DTLS sessions survive a graceful restart, so coaps:// observers are kept too. */
  stateKey?: Buffer;
}

export interface DurableServe {
  store: StateStore;
  committer: GroupCommitter;
  /** For the banner: "SQLite /x/coapkit.db (node:sqlite), 12 resources". */
  description: string;
  /** Re-registers the observers of the previous run that used `scheme` on `server`; returns how many. */
  restoreObservers(server: CoapServer, scheme?: 'coap' | 'coaps'): number;
  /** Deletes the stored observers that used `scheme` (coaps:// without --state-key or without coaps://). */
  forgetObservers(scheme: 'coap' | 'coaps'): void;
  close(): Promise<void>;
}

/** CoAP options as stored: (number u16, length u16, value) each. */
export function encodeStoredOptions(options: readonly CoapOption[]): Buffer {
  const parts: Buffer[] = [];
  for (const o of options) {
    const head = Buffer.alloc(4);
    head.writeUInt16BE(o.number, 0);
    head.writeUInt16BE(o.value.length, 2);
    parts.push(head, Buffer.from(o.value));
  }
  return Buffer.concat(parts);
}

/** The inverse of encodeStoredOptions; undefined when the bytes are not well formed. */
export function decodeStoredOptions(buf: Buffer): CoapOption[] | undefined {
  const out: CoapOption[] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 4 > buf.length) return undefined;
    const number = buf.readUInt16BE(at);
    const len = buf.readUInt16BE(at + 2);
    at += 4;
    if (at + len > buf.length) return undefined;
    out.push({ number, value: Buffer.from(buf.subarray(at, at + len)) });
    at += len;
  }
  return out;
}

function describe(store: StateStore, snap: StoreSnapshot): string {
  const n = snap.resources.length;
  const what = `${n} resource${n === 1 ? '' : 's'}, ${snap.observers.length} observer${snap.observers.length === 1 ? '' : 's'} loaded`;
  if (store instanceof SqliteStore) return `SQLite ${store.file} (${store.binding}, WAL), ${what}`;
  if (store instanceof PostgresStore) return `PostgreSQL ${store.location}, ${what}`;
  return `${store.kind}, ${what}`;
}

/** Opens the store, loads it into `resources`, and makes resources and observers durable. */
export async function openServeStore(
  opts: ServeStoreOptions,
  resources: DynamicStore,
  observe: ObserveServer,
): Promise<DurableServe | undefined> {
  if (opts.data === undefined && opts.storeUrl === undefined) return undefined;
  const store = await openStore({
    ...(opts.data !== undefined ? { data: opts.data } : {}),
    ...(opts.storeUrl !== undefined ? { url: opts.storeUrl } : {}),
  });
  let snap: StoreSnapshot;
  let seqBlob: Buffer | undefined;
  try {
    snap = await store.load();
    seqBlob = await store.loadState(OBSERVE_SEQ_STATE);
  } catch (err) {
    await store.close();
    throw err;
  }
  resources.loadSnapshot(snap);
  const committer = new GroupCommitter(store);
  resources.attachStore(committer);

  const hooks: ObservePersistence = {
    added(o, endpoint: Endpoint) {
      const scheme = o.peer.identity !== undefined || o.peer.auth !== undefined ? 'coaps' : 'coap';
      // coaps:// registrations need their DTLS session: kept only when sessions are (--state-key).
      if (scheme === 'coaps' && opts.stateKey === undefined) return undefined;
      // The key names the local endpoint too: servers sharing a PostgreSQL store each
      // restore only the observers registered through their own address and port.
      const local = endpoint.transport.localAddress();
      const id = `${scheme}|${local.address}%${local.port}|${o.peer.key}|${o.token.toString('hex')}`;
      const accept = o.options.find((x) => x.number === OptionNumber.Accept);
      const rec: ObserverRecord = {
        key: id,
        scheme,
        address: o.peer.address,
        port: o.peer.port,
        token: Buffer.from(o.token),
        path: o.path,
        accept: accept === undefined ? undefined : decodeUint(accept.value),
        options: encodeStoredOptions(o.options),
        seq: o.seq,
        created: Date.now(),
      };
      committer.enqueue({ op: 'putObserver', observer: rec });
      return id;
    },
    removed(id) {
      committer.enqueue({ op: 'deleteObserver', key: id });
    },
    reserve(upTo) {
      const v = Buffer.alloc(4);
      v.writeUInt32BE(upTo >>> 0, 0);
      committer.enqueue({ op: 'putState', name: OBSERVE_SEQ_STATE, value: v });
    },
  };
  observe.setPersistence(hooks, seqBlob?.length === 4 ? seqBlob.readUInt32BE(0) : undefined);

  // Several servers on one PostgreSQL database: changes made through another follow here.
  // A local write enqueued while a read was under way may be newer than what it read: then
  // read again (a few times; the local write's own commit is in the store by then).
  const follow = async (read: () => Promise<() => void>, tries = 3): Promise<void> => {
    for (let i = 0; i < tries; i++) {
      await committer.flush().catch(() => {});
      const before = committer.enqueued;
      let apply: () => void;
      try {
        apply = await read();
      } catch {
        return;
      }
      if (committer.enqueued === before) {
        apply();
        return;
      }
    }
  };
  const followPath = (path: string) =>
    follow(async () => {
      const rec = await store.getResource?.(path);
      return () => resources.applyRemote(path, rec);
    }).catch(() => {});
  const resync = () =>
    follow(async () => {
      const all = await store.load();
      return () => {
        const seen = new Set<string>();
        for (const r of all.resources) {
          seen.add(r.path);
          const cur = resources.get(r.path);
          if (cur === undefined || !cur.etag.equals(r.etag)) resources.applyRemote(r.path, r);
        }
        for (const cur of resources.list())
          if (!seen.has(cur.path)) resources.applyRemote(cur.path, undefined);
      };
    }).catch(() => {});
  const unsubscribe = await store.subscribe?.((ev) => {
    if (ev.kind === 'resync') void resync();
    else void followPath(ev.path);
  });
  return {
    store,
    committer,
    description: describe(store, snap),
    restoreObservers(server: CoapServer, scheme: 'coap' | 'coaps' = 'coap'): number {
      const shared = store.kind === 'postgres';
      let n = 0;
      for (const rec of snap.observers) {
        if (rec.scheme !== scheme) continue;
        // "coap|<local address>%<port>|<peer>|<token>": see hooks.added.
        const local = rec.key.split('|')[1] ?? '';
        const options = decodeStoredOptions(rec.options);
        const peer = makePeer(rec.address, rec.port);
        const sameFamily = (a: string) => (a.includes(':') ? 'IPv6' : 'IPv4') === peer.family || a === '::';
        const mine = server.endpoints.find((e) => {
          const a = e.transport.localAddress();
          return `${a.address}%${a.port}` === local;
        });
        // Shared store: another server's observer (or one of a node gone) is left alone.
        if (shared && mine === undefined) continue;
        const ep =
          mine ??
          server.endpoints.find((e) => sameFamily(e.transport.localAddress().address)) ??
          server.endpoints[0];
        if (options === undefined || ep === undefined) {
          committer.enqueue({ op: 'deleteObserver', key: rec.key });
          continue;
        }
        const ok = observe.restore(
          server,
          ep,
          { path: rec.path, peer, token: rec.token, options, seq: rec.seq },
          rec.key,
        );
        if (ok) n++;
        else committer.enqueue({ op: 'deleteObserver', key: rec.key });
      }
      return n;
    },
    forgetObservers(scheme: 'coap' | 'coaps'): void {
      for (const rec of snap.observers) {
        if (rec.scheme === scheme) committer.enqueue({ op: 'deleteObserver', key: rec.key });
      }
    },
    async close() {
      unsubscribe?.();
      await committer.close();
      await store.close();
    },
  };
}
