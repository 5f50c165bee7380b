/**
 * A store of dynamic resources, like libcoap's `coap-server -d`: clients
 * create resources with PUT, read them with GET, append entries to a
 * collection with POST and remove them with DELETE. `/.well-known/core`
 * lists what exists. Used by `coapkit serve`, reusable on any CoapServer:
 *
 *   const store = new DynamicStore({ maxResources: 100 });
 *   store.mount(server);
 *   store.onChange('/a', (ev) => ...);   // hook for Observe (RFC 7641)
 *
 * The request logic lives in `handle()`, which only needs a request-like
 * object, so it is testable without sockets.
 */

import { Buffer } from 'node:buffer';
import { hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { filterLinks, type Link, serializeLinkFormat } from '../codec/link-format.js';
import type { CoapOption } from '../codec/message.js';
import { decodeUint, encodeUint, getOptions, getUintOption, hasOption } from '../codec/options.js';
import { ResponseCode } from '../constants/codes.js';
import { ContentFormat } from '../constants/content-formats.js';
import { OptionNumber } from '../constants/options.js';
import type { GroupCommitter } from '../store/batcher.js';
import type { ResourceRecord, StoreChange, StoreSnapshot } from '../store/types.js';

/** One stored resource. */
export interface StoredResource {
  /** Absolute path, e.g. "/sensors/temp". */
  readonly path: string;
  readonly payload: Buffer;
  /** Content-Format given when it was stored; undefined when the request had none. */
  readonly contentFormat: number | undefined;
  /** Entity tag: first 8 bytes of SHA-256 over the Content-Format and the payload. */
  readonly etag: Buffer;
  readonly created: Date;
  readonly modified: Date;
}

export type ChangeKind = 'created' | 'updated' | 'deleted';

/** Emitted (event `change`, and to `onChange` listeners) whenever a resource changes. */
export interface ChangeEvent {
  kind: ChangeKind;
  path: string;
  /** The new state; undefined when deleted. */
  resource: StoredResource | undefined;
}

/** The subset of a server request the store needs. */
export interface StoreRequest {
  /** 'GET', 'PUT', 'POST', 'DELETE', ... */
  method: string;
  /** "/a/b" */
  path: string;
  options: readonly CoapOption[];
  payload: Buffer;
  query?: readonly string[];
}

/** A response in the shape CoapServer handlers return. */
export interface StoreResponse {
  code: number;
  payload?: Buffer | string;
  contentFormat?: number;
  options?: Array<{ number: number; value: Buffer }>;
  maxAge?: number;
  etag?: Buffer;
  locationPath?: string[];
}

export interface DynamicStoreOptions {
  /** Most dynamic resources at once; further creations get 5.03. Default 1000. */
  maxResources?: number;
  /** Largest representation in bytes; larger ones get 4.13 with Size1. Default 65536. */
  maxSize?: number;
  /**
   * How the 4.13 diagnostic names the `maxSize` limit, so whoever reads it knows
   * what to raise (coapkit serve: `--max-size`). Default: not named.
   */
  maxSizeName?: string;
  /**
   * Bound on the memory the store holds, in bytes: every resource costs its
   * path (UTF-8 bytes) plus its payload plus a fixed overhead
   * ({@link RESOURCE_OVERHEAD_BYTES}), every POST collection counter its path
   * plus {@link COUNTER_OVERHEAD_BYTES}. A creation or replacement that would
   * exceed it gets 5.03 (like `maxResources`). Default 64 MiB.
   */
  maxBytes?: number;
  /** Max-Age (seconds) sent with GET responses. Default 60. */
  maxAge?: number;
  /** Register the built-in resources `/`, `/time` and `/echo`. Default true. */
  builtins?: boolean;
  /** Advertise `obs` on dynamic resources in /.well-known/core (set by the Observe layer). Default false. */
  observable?: boolean;
  /** Text served on `/`. */
  banner?: string;
  /** Clock, for tests. */
  now?: () => Date;
}

/** What mount() needs from a server (CoapServer satisfies it). */
export interface MountTarget {
  route(
    method: StoreMethod,
    pattern: string,
    handler: (req: StoreRequest) => StoreResponse | Promise<StoreResponse>,
    attrs?: { ct?: number; title?: string; obs?: boolean },
  ): unknown;
  addLinkProvider(provider: () => Link[], watch?: (invalidate: () => void) => void): void;
}

type StoreMethod = 'GET' | 'PUT' | 'POST' | 'DELETE';

interface Builtin {
  title: string;
  ct: number;
  methods: readonly StoreMethod[];
  handle(req: StoreRequest): StoreResponse;
  obs?: boolean;
}

const WELL_KNOWN = '/.well-known/core';

/** What a stored resource costs besides its path and payload bytes (objects, Map entry, ETag, dates). */
export const RESOURCE_OVERHEAD_BYTES = 256;
/** What a POST collection counter costs besides its path bytes. */
export const COUNTER_OVERHEAD_BYTES = 64;

function resourceCost(path: string, payloadLength: number): number {
  return Buffer.byteLength(path, 'utf8') + payloadLength + RESOURCE_OVERHEAD_BYTES;
}

function counterCost(path: string): number {
  return Buffer.byteLength(path, 'utf8') + COUNTER_OVERHEAD_BYTES;
}

/** Normalizes "a/b/" or "/a/b" to "/a/b" (keeps "/" for the root). */
export function normalizePath(path: string): string {
  let p = path.startsWith('/') ? path : `/${path}`;
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

function segments(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

const EMPTY = Buffer.alloc(0);

/** Entity tag over Content-Format and payload (RFC 7252 §5.10.6). */
export function computeEtag(payload: Uint8Array, contentFormat: number | undefined): Buffer {
  // SHA-256 over uint(Content-Format + 1) (empty when none), a 0 byte, and the payload, in one
  // call (crypto.hash: no Hash object per resource written).
  const cf = contentFormat === undefined ? EMPTY : encodeUint(contentFormat + 1);
  const input = Buffer.allocUnsafe(cf.length + 1 + payload.length);
  cf.copy(input, 0);
  input[cf.length] = 0;
  input.set(payload, cf.length + 1);
  return Buffer.from(hash('sha256', input, 'buffer').subarray(0, 8));
}

function text(code: number, message: string): StoreResponse {
  return { code, payload: message, contentFormat: ContentFormat.TextPlain };
}

export class DynamicStore extends EventEmitter {
  readonly maxResources: number;
  readonly maxSize: number;
  private readonly maxSizeName: string | undefined;
  readonly maxAge: number;
  readonly maxBytes: number;
  /** When true, dynamic resources carry `obs` in /.well-known/core. */
  observable: boolean;
  private readonly resources = new Map<string, StoredResource>();
  /**
   * Next entry number per POST collection. An entry exists only while the
   * collection has resources below it: the last DELETE gives it back (so a
   * POST/DELETE loop over ever new collection paths holds nothing).
   */
  private readonly counters = new Map<string, number>();
  /** Bytes accounted for resources and counters (see `maxBytes`). */
  private usedBytes = 0;
  /** Dynamic resources sorted by path, and their links; rebuilt after a change. */
  private sorted: StoredResource[] | undefined;
  private linkCache: Link[] | undefined;
  private readonly builtins = new Map<string, Builtin>();
  private readonly now: () => Date;
  /** Durable store (write path): every change is committed there before a write is answered. */
  private journal: GroupCommitter | undefined;
  /** Creation order of each resource (kept only with a durable store). */
  private readonly orders = new Map<string, number>();
  private nextOrder = 1;

  constructor(options: DynamicStoreOptions = {}) {
    super();
    this.maxResources = options.maxResources ?? 1000;
    this.maxSize = options.maxSize ?? 64 * 1024;
    this.maxSizeName = options.maxSizeName;
    this.maxAge = options.maxAge ?? 60;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.observable = options.observable ?? false;
    this.now = options.now ?? (() => new Date());
    if (options.builtins ?? true) this.addBuiltins(options.banner);
  }

  // ---- library API ---------------------------------------------------------

  /** Number of dynamic resources. */
  get size(): number {
    return this.resources.size;
  }

  /** Bytes the store accounts for (paths, payloads, per-resource and per-counter overhead). */
  get bytes(): number {
    return this.usedBytes;
  }

  /** Number of POST collection counters held (one per collection with entries). */
  get counterCount(): number {
    return this.counters.size;
  }

  get(path: string): StoredResource | undefined {
    return this.resources.get(normalizePath(path));
  }

  has(path: string): boolean {
    return this.resources.has(normalizePath(path));
  }

  /** All dynamic resources, sorted by path. */
  list(): StoredResource[] {
    return this.sortedList().slice();
  }

  /** The sorted list, cached until the next change (callers must not modify it). */
  private sortedList(): StoredResource[] {
    if (this.sorted === undefined) {
      this.sorted = [...this.resources.values()].sort((a, b) =>
        a.path < b.path ? -1 : a.path > b.path ? 1 : 0,
      );
    }
    return this.sorted;
  }

  /** True when `path` is served by a built-in resource (`/`, `/time`, `/echo`, `/.well-known/core`). */
  isBuiltin(path: string): boolean {
    const p = normalizePath(path);
    return p === WELL_KNOWN || this.builtins.has(p);
  }

  /**
   * Creates or replaces a resource without any limit or precondition check.
   * Returns whether it was created.
   */
  set(path: string, payload: Uint8Array | string, contentFormat?: number): { created: boolean } {
    const p = normalizePath(path);
    const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
    const old = this.resources.get(p);
    if (old) this.usedBytes -= resourceCost(p, old.payload.length);
    this.usedBytes += resourceCost(p, data.length);
    const now = this.now();
    const res: StoredResource = {
      path: p,
      payload: data,
      contentFormat,
      etag: computeEtag(data, contentFormat),
      created: old?.created ?? now,
      modified: now,
    };
    this.resources.set(p, res);
    if (this.journal !== undefined) this.journalPut(res, old);
    this.emitChange({ kind: old ? 'updated' : 'created', path: p, resource: res });
    return { created: !old };
  }

  /** Removes a resource and everything below it. Returns the removed paths. */
  delete(path: string): string[] {
    const p = normalizePath(path);
    const prefix = p === '/' ? '/' : `${p}/`;
    const removed: string[] = [];
    for (const [key, res] of this.resources) {
      if (key === p || key.startsWith(prefix)) {
        this.resources.delete(key);
        this.usedBytes -= resourceCost(key, res.payload.length);
        removed.push(key);
        if (this.journal !== undefined) this.journalDelete(key, res);
      }
    }
    if (removed.length > 0) this.releaseCounters(p, prefix, removed);
    for (const key of removed) this.emitChange({ kind: 'deleted', path: key, resource: undefined });
    return removed;
  }

  /**
   * Gives back the POST counters that no longer serve a purpose after `removed`
   * went away: the counters of the deleted subtree, and the counter of each
   * parent collection left without resources below it.
   */
  private releaseCounters(p: string, prefix: string, removed: readonly string[]): void {
    if (this.counters.size === 0) return;
    for (const key of this.counters.keys()) {
      if (key === p || key.startsWith(prefix)) this.dropCounter(key);
    }
    const parents = new Set<string>();
    for (const key of removed) {
      const cut = key.lastIndexOf('/');
      parents.add(cut <= 0 ? '/' : key.slice(0, cut));
    }
    for (const parent of parents) {
      if (this.counters.has(parent) && !this.hasBelow(parent)) this.dropCounter(parent);
    }
  }

  private dropCounter(key: string): void {
    const had = this.counters.get(key);
    if (this.counters.delete(key)) {
      this.usedBytes -= counterCost(key);
      if (this.journal !== undefined && had !== undefined) {
        this.journal.enqueue({ op: 'deleteCounter', path: key }, () => this.restoreCounter(key, had));
      }
    }
  }

  /** True when some resource lies below `path`. */
  private hasBelow(path: string): boolean {
    const prefix = path === '/' ? '/' : `${path}/`;
    for (const key of this.resources.keys()) if (key.startsWith(prefix)) return true;
    return false;
  }

  /** Removes every dynamic resource. */
  clear(): void {
    for (const key of [...this.resources.keys()]) this.delete(key);
    for (const key of [...this.counters.keys()]) this.dropCounter(key);
  }

  /**
   * Calls `cb` when the resource at `path` is created, replaced or deleted.
   * Returns a function that unsubscribes. (The Observe layer hooks in here.)
   */
  onChange(path: string, cb: (ev: ChangeEvent) => void): () => void {
    const p = normalizePath(path);
    const listener = (ev: ChangeEvent): void => {
      if (ev.path === p) cb(ev);
    };
    this.on('change', listener);
    return () => {
      this.off('change', listener);
    };
  }

  private emitChange(ev: ChangeEvent): void {
    this.sorted = undefined;
    this.linkCache = undefined;
    this.emit('change', ev);
  }

  /** The links /.well-known/core lists: built-ins, then dynamic resources. */
  links(): Link[] {
    return [...this.builtinLinks(), ...this.dynamicLinks()];
  }

  /** Links of the built-in resources. */
  builtinLinks(): Link[] {
    const out: Link[] = [];
    for (const [path, b] of this.builtins) {
      const attributes: Link['attributes'] = [
        ['ct', String(b.ct)],
        ['title', b.title],
      ];
      if (b.obs) attributes.push(['obs', true]);
      out.push({ target: path, attributes });
    }
    return out;
  }

  /**
   * Links of the dynamic resources (ct, sz, title, and obs when observable).
   * Built once per change of the store (a `change` event tells when to ask again).
   */
  dynamicLinks(): Link[] {
    if (this.linkCache === undefined || this.linkCacheObservable !== this.observable) {
      this.linkCache = this.buildDynamicLinks();
      this.linkCacheObservable = this.observable;
    }
    return this.linkCache.slice();
  }

  private linkCacheObservable = false;

  private buildDynamicLinks(): Link[] {
    const out: Link[] = [];
    for (const r of this.sortedList()) {
      const attributes: Link['attributes'] = [];
      if (r.contentFormat !== undefined) attributes.push(['ct', String(r.contentFormat)]);
      attributes.push(['sz', String(r.payload.length)]);
      attributes.push(['title', 'Dynamic resource']);
      if (this.observable) attributes.push(['obs', true]);
      out.push({ target: r.path, attributes });
    }
    return out;
  }

  // ---- request handling ----------------------------------------------------

  /** Handles one request; never throws for bad input (answers with a 4.xx instead). */
  handle(req: StoreRequest): StoreResponse {
    const path = normalizePath(req.path);
    if (path === WELL_KNOWN) return this.wellKnown(req);
    const builtin = this.builtins.get(path);
    if (builtin) {
      if (!(builtin.methods as readonly string[]).includes(req.method)) {
        return text(
          ResponseCode.MethodNotAllowed,
          `${path} is built in and only supports ${builtin.methods.join(', ')}`,
        );
      }
      return builtin.handle(req);
    }
    switch (req.method) {
      case 'GET':
        return this.read(path, req.options);
      case 'PUT':
        return this.put(path, req);
      case 'POST':
        return this.post(path, req);
      case 'DELETE':
        return this.remove(path, req.options);
      default:
        return text(ResponseCode.MethodNotAllowed, `${req.method} is not supported on dynamic resources`);
    }
  }

  /**
   * The GET response for `path` given the request options (Accept, ETag).
   * Public so the Observe layer can build notifications with it.
   */
  read(path: string, options: readonly CoapOption[] = []): StoreResponse {
    const p = normalizePath(path);
    const res = this.resources.get(p);
    if (!res) {
      const children = this.children(p);
      if (children.length === 0) return text(ResponseCode.NotFound, `no resource at ${p}`);
      // A collection without a representation of its own: list its entries.
      if (!this.acceptable(options, ContentFormat.LinkFormat)) {
        return text(ResponseCode.NotAcceptable, `${p} is available as application/link-format (40) only`);
      }
      const body = serializeLinkFormat(children.map((c) => ({ target: c.path, attributes: [] })));
      return { code: ResponseCode.Content, payload: body, contentFormat: ContentFormat.LinkFormat };
    }
    // One pass over the request's options for Accept and ETag (most requests have neither).
    let acceptValue: Buffer | undefined;
    let hasEtag = false;
    for (const o of options) {
      if (o.number === OptionNumber.Accept) acceptValue ??= o.value;
      else if (o.number === OptionNumber.ETag) hasEtag = true;
    }
    if (acceptValue !== undefined && acceptValue.length <= 4) {
      // Like CoapServer: a representation without Content-Format counts as text/plain (0).
      if (decodeUint(acceptValue) !== (res.contentFormat ?? ContentFormat.TextPlain)) {
        return text(
          ResponseCode.NotAcceptable,
          `${p} is available as Content-Format ${res.contentFormat ?? '(none)'} only`,
        );
      }
    }
    const out: StoreResponse = { code: ResponseCode.Content, etag: res.etag, maxAge: this.maxAge };
    if (res.contentFormat !== undefined) out.contentFormat = res.contentFormat;
    // §5.10.6.2: a matching ETag in the request validates the client's cached copy.
    if (hasEtag) {
      for (const tag of getOptions(options, OptionNumber.ETag)) {
        if (tag.equals(res.etag)) {
          out.code = ResponseCode.Valid;
          return out;
        }
      }
    }
    out.payload = res.payload;
    return out;
  }

  private acceptable(options: readonly CoapOption[], contentFormat: number | undefined): boolean {
    const accept = getUintOption(options, OptionNumber.Accept);
    // Like CoapServer: a representation without Content-Format counts as text/plain (0).
    return accept === undefined || accept === (contentFormat ?? ContentFormat.TextPlain);
  }

  private children(path: string): StoredResource[] {
    const prefix = path === '/' ? '/' : `${path}/`;
    return this.sortedList().filter((r) => r.path.startsWith(prefix));
  }

  /** §5.10.8: If-Match / If-None-Match. Returns a 4.12 response when a precondition fails. */
  private preconditions(path: string, options: readonly CoapOption[]): StoreResponse | undefined {
    const res = this.resources.get(path);
    if (hasOption(options, OptionNumber.IfNoneMatch) && res) {
      return text(ResponseCode.PreconditionFailed, `${path} already exists (If-None-Match)`);
    }
    const ifMatch = getOptions(options, OptionNumber.IfMatch);
    if (ifMatch.length > 0) {
      if (!res) return text(ResponseCode.PreconditionFailed, `${path} does not exist (If-Match)`);
      const ok = ifMatch.some((v) => v.length === 0 || v.equals(res.etag));
      if (!ok) return text(ResponseCode.PreconditionFailed, `ETag of ${path} does not match (If-Match)`);
    }
    return undefined;
  }

  private tooLarge(payload: Buffer): StoreResponse | undefined {
    if (payload.length <= this.maxSize) return undefined;
    return {
      ...text(
        ResponseCode.RequestEntityTooLarge,
        `payload of ${payload.length} bytes exceeds the limit of ${this.maxSize} bytes${this.maxSizeName !== undefined ? ` (${this.maxSizeName})` : ''}`,
      ),
      // RFC 7959 §4: Size1 in a 4.13 tells the client the largest acceptable size.
      options: [{ number: OptionNumber.Size1, value: encodeUint(this.maxSize) }],
    };
  }

  private full(): StoreResponse {
    return text(
      ResponseCode.ServiceUnavailable,
      `resource limit reached (${this.maxResources} resources); delete some first`,
    );
  }

  /** 5.03 when storing `payloadLength` bytes at `path` (replacing `old`, adding `extra`) exceeds maxBytes. */
  private overBudget(
    path: string,
    payloadLength: number,
    old: StoredResource | undefined,
    extra = 0,
  ): StoreResponse | undefined {
    const next =
      this.usedBytes -
      (old ? resourceCost(path, old.payload.length) : 0) +
      resourceCost(path, payloadLength) +
      extra;
    if (next <= this.maxBytes) return undefined;
    return text(
      ResponseCode.ServiceUnavailable,
      `store limit reached (${this.maxBytes} bytes of paths and payloads); delete some first`,
    );
  }

  private put(path: string, req: StoreRequest): StoreResponse {
    if (path === '/') return text(ResponseCode.MethodNotAllowed, 'PUT needs a path below /');
    const failed = this.preconditions(path, req.options);
    if (failed) return failed;
    const big = this.tooLarge(req.payload);
    if (big) return big;
    const old = this.resources.get(path);
    if (!old && this.resources.size >= this.maxResources) return this.full();
    const over = this.overBudget(path, req.payload.length, old);
    if (over) return over;
    const { created } = this.set(path, req.payload, getUintOption(req.options, OptionNumber.ContentFormat));
    const res = this.resources.get(path)!;
    return { code: created ? ResponseCode.Created : ResponseCode.Changed, etag: res.etag };
  }

  private post(path: string, req: StoreRequest): StoreResponse {
    const big = this.tooLarge(req.payload);
    if (big) return big;
    if (this.resources.size >= this.maxResources) return this.full();
    const had = this.counters.get(path);
    let n = had ?? 0;
    let entry: string;
    do {
      n++;
      entry = path === '/' ? `/${n}` : `${path}/${n}`;
    } while (this.resources.has(entry) || this.isBuiltin(entry));
    const over = this.overBudget(
      entry,
      req.payload.length,
      undefined,
      had === undefined ? counterCost(path) : 0,
    );
    if (over) return over;
    if (had === undefined) this.usedBytes += counterCost(path);
    this.counters.set(path, n);
    this.journal?.enqueue({ op: 'putCounter', path, next: n }, () => this.restoreCounter(path, had));
    this.postEntry = true;
    try {
      this.set(entry, req.payload, getUintOption(req.options, OptionNumber.ContentFormat));
    } finally {
      this.postEntry = false;
    }
    const res = this.resources.get(entry)!;
    return { code: ResponseCode.Created, locationPath: segments(entry), etag: res.etag };
  }

  private remove(path: string, options: readonly CoapOption[]): StoreResponse {
    const failed = this.preconditions(path, options);
    if (failed) return failed;
    if (path === '/') return text(ResponseCode.MethodNotAllowed, 'the root cannot be deleted');
    this.delete(path);
    // A collection counter without resources below it (none were deleted) goes too.
    if (this.counters.has(path) && !this.hasBelow(path)) this.dropCounter(path);
    // §5.8.4: 2.02 also when the resource did not exist.
    return { code: ResponseCode.Deleted };
  }

  private wellKnown(req: StoreRequest): StoreResponse {
    if (req.method !== 'GET') return text(ResponseCode.MethodNotAllowed, `${WELL_KNOWN} only supports GET`);
    const accept = getUintOption(req.options, OptionNumber.Accept);
    if (accept !== undefined && accept !== ContentFormat.LinkFormat) {
      return text(
        ResponseCode.NotAcceptable,
        `${WELL_KNOWN} is available as application/link-format (40) only`,
      );
    }
    let links = this.links();
    const queries =
      req.query ?? getOptions(req.options, OptionNumber.UriQuery).map((q) => q.toString('utf8'));
    // RFC 6690 §4.1 filtering; several filters must all match.
    for (const q of queries) links = filterLinks(links, q);
    return {
      code: ResponseCode.Content,
      payload: serializeLinkFormat(links),
      contentFormat: ContentFormat.LinkFormat,
    };
  }

  private addBuiltins(banner?: string): void {
    const about =
      banner ??
      [
        'coapkit serve: a CoAP server with dynamic resources.',
        'PUT /any/path creates or replaces a resource, GET reads it, DELETE removes it,',
        'POST /collection appends an entry (see Location-Path). GET /.well-known/core lists them.',
        'Built in: /time (current time), /echo (POST/PUT: echoes the payload).',
      ].join('\n');
    this.builtins.set('/', {
      title: 'About this server',
      ct: ContentFormat.TextPlain,
      methods: ['GET'],
      handle: () => ({ code: ResponseCode.Content, payload: about, contentFormat: ContentFormat.TextPlain }),
    });
    this.builtins.set('/time', {
      title: 'Current time',
      obs: this.observable,
      ct: ContentFormat.TextPlain,
      methods: ['GET'],
      handle: () => ({
        code: ResponseCode.Content,
        payload: this.now().toISOString(),
        contentFormat: ContentFormat.TextPlain,
        maxAge: 1,
      }),
    });
    this.builtins.set('/echo', {
      title: 'Echo (POST or PUT a payload)',
      ct: ContentFormat.TextPlain,
      methods: ['GET', 'POST', 'PUT'],
      handle: (req) => {
        if (req.method === 'GET') {
          return text(ResponseCode.Content, 'POST or PUT a payload here and it comes back.');
        }
        const big = this.tooLarge(req.payload);
        if (big) return big;
        const cf = getUintOption(req.options, OptionNumber.ContentFormat);
        // RFC 7252 §5.9.1.5 keeps 2.05 Content for GET (and FETCH). A POST that
        // creates nothing answers 2.04 Changed (§5.8.2); a PUT to a resource that
        // exists (/echo always does) 2.04 Changed too (§5.8.3). A 2.04 may carry
        // the result of the action as its payload (§5.5.1): the echoed body.
        const res: StoreResponse = { code: ResponseCode.Changed, payload: req.payload };
        if (cf !== undefined) res.contentFormat = cf;
        return res;
      },
    });
  }

  // ---- server integration ----------------------------------------------------

  /**
   * Registers the store on a CoapServer: the built-ins as routes (listed by
   * the server's /.well-known/core), a link provider for the dynamic
   * resources, and a catch-all route for everything else.
   */
  mount(server: MountTarget): this {
    const handler = (req: StoreRequest): StoreResponse => this.handle(req);
    for (const [path, b] of this.builtins) {
      for (const method of b.methods) {
        server.route(
          method,
          path,
          handler,
          b.obs ? { ct: b.ct, title: b.title, obs: true } : { ct: b.ct, title: b.title },
        );
      }
    }
    // The server caches its /.well-known/core document until the store changes.
    server.addLinkProvider(
      () => this.dynamicLinks(),
      (invalidate) => this.on('change', invalidate),
    );
    server.route('GET', '/*', handler);
    const write = (req: StoreRequest): StoreResponse | Promise<StoreResponse> => this.handleDurably(req);
    for (const method of ['PUT', 'POST', 'DELETE'] as const) server.route(method, '/*', write);
    return this;
  }

  // ---- durable store (write path) ---------------------------------------------

  /**
   * Makes the resources durable: every change from now on goes to
   * `committer`'s store, and a PUT/POST/DELETE through `mount()` is answered
   * only once its change is committed (5.03 when the store cannot take it: the
   * change is undone). Reads are served from memory and never wait.
   */
  attachStore(committer: GroupCommitter): this {
    this.journal = committer;
    for (const path of this.resources.keys()) {
      if (!this.orders.has(path)) this.orders.set(path, this.nextOrder++);
    }
    return this;
  }

  /**
   * Loads what a durable store holds (at start, before serving): no change
   * events, no limits checked (what was accepted once is never dropped).
   */
  loadSnapshot(snapshot: Pick<StoreSnapshot, 'resources' | 'counters'>): void {
    for (const r of snapshot.resources) {
      const p = normalizePath(r.path);
      const old = this.resources.get(p);
      if (old) this.usedBytes -= resourceCost(p, old.payload.length);
      this.resources.set(p, {
        path: p,
        payload: r.payload,
        contentFormat: r.contentFormat,
        etag: r.etag,
        created: new Date(r.created),
        modified: new Date(r.modified),
      });
      this.usedBytes += resourceCost(p, r.payload.length);
      this.orders.set(p, r.order);
      if (r.order >= this.nextOrder) this.nextOrder = r.order + 1;
    }
    for (const [path, n] of snapshot.counters) {
      if (!this.counters.has(path)) this.usedBytes += counterCost(path);
      this.counters.set(path, n);
    }
    this.sorted = undefined;
    this.linkCache = undefined;
  }

  /**
   * Reloads one resource changed by another server sharing the store (fleet):
   * the memory copy follows, and observers are notified (a `change` event).
   */
  applyRemote(path: string, record: ResourceRecord | undefined): void {
    const p = normalizePath(path);
    const old = this.resources.get(p);
    if (old) this.usedBytes -= resourceCost(p, old.payload.length);
    if (record === undefined) {
      if (!old) return;
      this.resources.delete(p);
      this.orders.delete(p);
      this.emitChange({ kind: 'deleted', path: p, resource: undefined });
      return;
    }
    if (old?.etag.equals(record.etag)) {
      this.usedBytes += resourceCost(p, old.payload.length);
      return;
    }
    const res: StoredResource = {
      path: p,
      payload: record.payload,
      contentFormat: record.contentFormat,
      etag: record.etag,
      created: new Date(record.created),
      modified: new Date(record.modified),
    };
    this.resources.set(p, res);
    this.orders.set(p, record.order);
    this.usedBytes += resourceCost(p, record.payload.length);
    this.emitChange({ kind: old ? 'updated' : 'created', path: p, resource: res });
  }

  /** A write request, answered once its changes are committed (see attachStore). */
  handleDurably(req: StoreRequest): StoreResponse | Promise<StoreResponse> {
    const j = this.journal;
    if (j === undefined) return this.handle(req);
    // A store slower than the writes: refuse more until it catches up (memory stays bounded).
    if (j.busy) return text(ResponseCode.ServiceUnavailable, 'the store is behind; try again later');
    const before = j.enqueued;
    const res = this.handle(req);
    if (j.enqueued === before) return res;
    return j.flush().then(
      () => res,
      (err: unknown) =>
        text(
          ResponseCode.ServiceUnavailable,
          `not stored, try again later: ${err instanceof Error ? err.message : String(err)}`,
        ),
    );
  }

  private record(res: StoredResource): ResourceRecord {
    let order = this.orders.get(res.path);
    if (order === undefined) {
      order = this.nextOrder++;
      this.orders.set(res.path, order);
    }
    return {
      path: res.path,
      payload: res.payload,
      contentFormat: res.contentFormat,
      etag: res.etag,
      maxAge: undefined,
      created: res.created.getTime(),
      modified: res.modified.getTime(),
      order,
    };
  }

  private journalPut(res: StoredResource, old: StoredResource | undefined): void {
    const order = this.orders.get(res.path);
    const change: StoreChange = { op: 'putResource', resource: this.record(res) };
    if (this.postEntry && old === undefined) change.create = true;
    this.journal!.enqueue(change, () => this.restoreResource(res.path, old, order));
  }

  /** Set while post() creates an entry (its store row must be new: see StoreChange.create). */
  private postEntry = false;

  private journalDelete(path: string, old: StoredResource): void {
    const order = this.orders.get(path);
    this.orders.delete(path);
    this.journal!.enqueue({ op: 'deleteResource', path }, () => this.restoreResource(path, old, order));
  }

  /** Undo of a change the store could not commit: `path` is `prev` again. */
  private restoreResource(path: string, prev: StoredResource | undefined, order: number | undefined): void {
    const cur = this.resources.get(path);
    if (cur) this.usedBytes -= resourceCost(path, cur.payload.length);
    if (prev) {
      this.resources.set(path, prev);
      this.usedBytes += resourceCost(path, prev.payload.length);
      if (order !== undefined) this.orders.set(path, order);
    } else {
      this.resources.delete(path);
      this.orders.delete(path);
    }
    if (cur === prev) return;
    this.emitChange({
      kind: prev === undefined ? 'deleted' : cur === undefined ? 'created' : 'updated',
      path,
      resource: prev,
    });
  }

  private restoreCounter(path: string, prev: number | undefined): void {
    const had = this.counters.has(path);
    if (prev === undefined) {
      if (had) {
        this.counters.delete(path);
        this.usedBytes -= counterCost(path);
      }
      return;
    }
    if (!had) this.usedBytes += counterCost(path);
    this.counters.set(path, prev);
  }
}
