/**
 * coapkit serve — a ready CoAP server with dynamic resources (DynamicStore),
 * on coap:// and, when keys are configured, coaps:// (DTLS 1.2 PSK).
 */

import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { accessSync, constants as fsConstants } from 'node:fs';
import { isIP } from 'node:net';
import { basename, delimiter, isAbsolute, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BlockwiseServer } from '../../blockwise/server.js';
import { ClusterNode, type ClusterOptions } from '../../cluster/forward.js';
import { describeCode } from '../../constants/codes.js';
import { type ChannelPayloads, channels, type ServerRequestEvent } from '../../diagnostics.js';
import { HANDSHAKE_RATE_DEFAULTS } from '../../dtls/handshake-rate.js';
import { DTLS_SERVER_DEFAULTS } from '../../dtls/server.js';
import { type CoapError, NetworkError, UsageError } from '../../errors.js';
import { ObserveServer } from '../../observe/server.js';
import { type ChangeEvent, DynamicStore } from '../../server/dynamic-store.js';
import { enableOscore } from '../../server/oscore.js';
import { CoapServer } from '../../server/server.js';
import { formatAddress } from '../../transport/address.js';
import { DtlsServerTransport } from '../../transport/dtls.js';
import { DtlsSessionStateError } from '../../transport/dtls-sessions.js';
import { ACL_FLAGS, type ServeAccess, serveAccess } from '../acl.js';
import { bool, type FlagSpecs, num, parseFlags, positionals, str, strs } from '../args.js';
import { CLUSTER_FLAGS, clusterArgs } from '../cluster-flags.js';
import { SERVE_CERT_FLAGS, type ServeCredentials, serveCertOptions } from '../credentials.js';
import { escapeText, peerText } from '../escape.js';
import { ExitCode } from '../exit.js';
import { SERVE_HELP } from '../help.js';
import { type Io, lineSink, writeAll } from '../io.js';
import {
  OSCORE_SERVE_FLAGS,
  oscoreBanner,
  oscoreTryArgs,
  readyOscore,
  type ServeOscore,
  serveOscoreArgs,
} from '../oscore.js';
import { PSK_FLAGS, readInputFile, serverKeys } from '../psk.js';
import {
  parseReliableServe,
  RELIABLE_SERVE_FLAGS,
  type ReliableServeOptions,
  startReliableServe,
} from '../serve-reliable.js';
import { type DurableServe, openServeStore } from '../serve-store.js';
import { localAddresses, type ServeMulticast, serveMulticast } from './multicast.js';
import {
  announceWorker,
  isWorker,
  parseWorkers,
  runSupervisor,
  WORKER_KEY_ENV,
  withoutWorkersFlag,
} from './workers.js';

export const SERVE_FLAGS: FlagSpecs = {
  host: { type: 'string' },
  port: { type: 'string' },
  'secure-port': { type: 'string' },
  'max-resources': { type: 'string' },
  'max-size': { type: 'string' },
  'max-store-bytes': { type: 'string' },
  'max-age': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  verbose: { type: 'boolean', short: 'v' },
  'generate-psk': { type: 'boolean' },
  multicast: { type: 'boolean' },
  'multicast-interface': { type: 'string' },
  'multicast-group': { type: 'string', multiple: true },
  'multicast-port': { type: 'string' },
  leisure: { type: 'string' },
  // Durable store (src/cli/serve-store.ts): SQLite in --data DIR, or PostgreSQL.
  data: { type: 'string' },
  store: { type: 'string' },
  'state-key': { type: 'string' },
  'handshake-rate': { type: 'string' },
  workers: { type: 'string' },
  // --trace (message tracing) plugs in here and in startServe() below.
  ...PSK_FLAGS,
  ...ACL_FLAGS,
  // RFC 8323 (coap+tcp, coaps+tcp, coap+ws, coaps+ws): serve-reliable.ts.
  ...RELIABLE_SERVE_FLAGS,
  ...SERVE_CERT_FLAGS,
  // Cluster node (issue 15, docs/cluster.md): --node-id, --cluster-listen, --peer.
  ...CLUSTER_FLAGS,
  ...OSCORE_SERVE_FLAGS,
};

/** Default --max-size: a firmware image (100-200 KB and more) fits. */
export const DEFAULT_SERVE_MAX_SIZE = 4 * 1024 * 1024;
/** Default --max-store-bytes (the DynamicStore default). */
export const DEFAULT_SERVE_MAX_STORE_BYTES = 64 * 1024 * 1024;

export interface ServeOptions {
  /**
   * Bind address; undefined = '::' (dual-stack) falling back to 0.0.0.0. A
   * name (localhost) binds every address it resolves to.
   */
  host?: string;
  /** Name lookup for a --host name (tests); default dns.lookup with all: true. */
  lookupHost?: (name: string) => Promise<string[]>;
  port: number;
  securePort: number;
  /** identity -> key; coaps:// is only started when non-empty (or with `credentials`). */
  keys: Map<string, Buffer>;
  /** Certificate / raw public key mode (--cert/--key/--ca, --rpk, --generate-cert). */
  credentials?: ServeCredentials;
  maxResources: number;
  maxSize: number;
  /** Bytes of paths and payloads the store may hold (DynamicStore maxBytes; default 64 MiB). */
  maxStoreBytes?: number;
  maxAge: number;
  /** No banner. */
  quiet?: boolean;
  /** One log line per request on stdout. */
  verbose?: boolean;
  /** The key was generated for this run (--generate-psk): print it in the banner. */
  generatedKey?: { identity: string; key: Buffer };
  /** --multicast: join the All CoAP Nodes groups (RFC 7252 §8). */
  multicast?: ServeMulticast;
  /** Who may do what (--acl, --anonymous-writes, the default with keys); undefined: open. */
  access?: ServeAccess;
  /** RFC 8323 listeners (--tcp-port, --tls-port, --ws-port, --wss-port). */
  reliable?: ReliableServeOptions;
  /** --node-id/--cluster-listen/--peer: a node of several behind a load balancer (docs/cluster.md). */
  cluster?: ClusterOptions;
  /** --data DIR: resources and observers kept in DIR/coapkit.db (SQLite). */
  data?: string;
  /** --store postgres://...: kept in PostgreSQL. */
  storeUrl?: string;
  /**
   * --state-key FILE (or env COAPKIT_STATE_KEY): seals the DTLS sessions written to the
   * store on SIGTERM and read back at start, so clients go on without a new handshake.
   */
  stateKey?: Buffer;
  /**
   * --handshake-rate N|off: DTLS handshake units a second per client address (burst 6 N);
   * off: no per-address share (of the rate and of the half-open handshakes); the global bounds hold.
   */
  handshakeRate?: number | 'off';
  /** --oscore FILE... and --oscore-required PATH...: OSCORE (RFC 8613) contexts and protected paths. */
  oscore?: ServeOscore;
  /** --workers: processes sharing the ports (1 = this one; see workers.ts). */
  workers?: number;
  /** Bind with SO_REUSEPORT (a worker of --workers). */
  reusePort?: boolean;
}

export interface Listener {
  scheme: 'coap' | 'coaps' | 'coap+tcp' | 'coaps+tcp' | 'coap+ws' | 'coaps+ws';
  /** A multicast group this server answers on. */
  group?: boolean;
  address: string;
  port: number;
  /** URL a client on this machine can use. */
  url: string;
}

export interface RunningServe {
  store: DynamicStore;
  observe: ObserveServer;
  servers: CoapServer[];
  listeners: Listener[];
  /** The durable store (--data, --store), when one is configured. */
  durable?: DurableServe;
  /** --state-key: DTLS sessions taken over from the previous run. */
  restoredSessions?: number;
  close(): Promise<void>;
}

function urlFor(scheme: string, address: string, port: number): string {
  const host = isIP(address) === 6 ? `[${address.replace('%', '%25')}]` : address;
  return `${scheme}://${host}:${port}`;
}

/** Where a local client should connect for a wildcard bind. */
function reachable(address: string): string {
  if (address === '::' || address === '::ffff:0.0.0.0') return '[::1]';
  if (address === '0.0.0.0') return '127.0.0.1';
  return isIP(address) === 6 ? `[${address}]` : address;
}

function isFamilyUnavailable(err: unknown): boolean {
  const codes = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT', 'EINVAL']);
  let e: unknown = err;
  for (let i = 0; i < 4 && e instanceof Error; i++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== undefined && codes.has(code)) return true;
    if (/EAFNOSUPPORT|EADDRNOTAVAIL|EPROTONOSUPPORT/.test(e.message)) return true;
    e = e.cause;
  }
  return false;
}

/** Binds with the default host '::', retrying on 0.0.0.0 when IPv6 is unavailable. */
async function bindDefault<T>(host: string | undefined, bind: (host: string) => Promise<T>): Promise<T> {
  if (host !== undefined) return bind(host);
  try {
    return await bind('::');
  } catch (err) {
    if (!isFamilyUnavailable(err)) throw err;
    return bind('0.0.0.0');
  }
}

/** Every address a --host name resolves to (IPv4 and IPv6), without duplicates. */
async function resolveAll(
  name: string,
  lookupHost: ((name: string) => Promise<string[]>) | undefined,
): Promise<string[]> {
  let addresses: string[];
  try {
    addresses = lookupHost
      ? await lookupHost(name)
      : (await lookup(name, { all: true, verbatim: true })).map((a) => a.address);
  } catch (err) {
    throw new UsageError(`--host ${name}: cannot resolve it: ${(err as Error).message}`, {
      cause: err,
      hint: 'give an address of this machine, e.g. 127.0.0.1 or ::1',
    });
  }
  const unique = [...new Set(addresses)];
  if (unique.length === 0) throw new UsageError(`--host ${name} resolves to no address`);
  return unique;
}

/**
 * Binds each address; an address whose family is not available here (::1 on a
 * host without IPv6) is skipped as long as one address binds.
 */
async function bindEach(hosts: (string | undefined)[], bind: (host: string | undefined) => Promise<void>) {
  let bound = 0;
  let firstErr: unknown;
  for (const host of hosts) {
    try {
      await bind(host);
      bound++;
    } catch (err) {
      if (hosts.length === 1 || !isFamilyUnavailable(err)) throw err;
      firstErr ??= err;
    }
  }
  if (bound === 0) throw firstErr;
}

function bindError(scheme: string, host: string | undefined, port: number, err: unknown): CoapError {
  const msg = err instanceof Error ? err.message : String(err);
  const inUse = /EADDRINUSE/.test(msg) || (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
  return new NetworkError(`cannot listen for ${scheme}:// on ${formatAddress(host ?? '::', port)}: ${msg}`, {
    cause: err,
    hint: inUse
      ? `another program uses that port; pick another with --${scheme === 'coap' ? 'port' : 'secure-port'} N (0 = any)`
      : 'check --host (an address of this machine) and the port',
  });
}

/** Starts the listeners; the caller prints the banner and handles signals. */
export async function startServe(opts: ServeOptions): Promise<RunningServe> {
  // Every dynamic resource (and /time) is observable (RFC 7641).
  const store = new DynamicStore({
    maxResources: opts.maxResources,
    maxSize: opts.maxSize,
    maxSizeName: '--max-size',
    maxAge: opts.maxAge,
    ...(opts.maxStoreBytes !== undefined ? { maxBytes: opts.maxStoreBytes } : {}),
    observable: true,
  });
  // One block-wise and one observe layer shared by the coap:// and coaps:// servers.
  const blockwise = new BlockwiseServer({ maxBodySize: opts.maxSize, maxBodySizeName: '--max-size' });
  const observe = new ObserveServer({
    blockwise,
    isObservable: (req) => req.route?.attrs.obs === true || store.has(req.path),
  });
  store.on('change', (ev: ChangeEvent) => {
    if (ev.kind === 'deleted') observe.deleted(ev.path);
    else observe.notify(ev.path);
  });
  // --data / --store: load what the store holds; writes are answered once committed.
  const durable = await openServeStore(opts, store, observe);
  // /time needs no timer: its Max-Age is 1 s and the observe layer refreshes
  // observers before Max-Age runs out, so they get the time every second.
  // Both servers are created with these two layers (block-wise first, so the store sees
  // whole bodies up to --max-size, then observe): `{ blockwise, observe }` below.
  const setup = (server: CoapServer) => {
    store.mount(server);
    // Access control first in the pipeline, and /.well-known/core filtered per peer.
    opts.access?.acl?.install(server);
    if (opts.oscore) enableOscore(server, opts.oscore);
  };
  const servers: CoapServer[] = [];
  const listeners: Listener[] = [];
  // A cluster node forwards other nodes' CID records and relays their answers (docs/cluster.md).
  const cluster =
    opts.cluster === undefined
      ? undefined
      : await ClusterNode.create(opts.cluster).catch(async (err: unknown) => {
          await durable?.close();
          throw err;
        });
  // --state-key: the DTLS sessions of each coaps:// listener, sealed, saved on a graceful stop.
  const sessionState: { name: string; transport: DtlsServerTransport }[] = [];
  let restoredSessions = 0;
  const closeAll = async () => {
    if (durable !== undefined && opts.stateKey !== undefined) {
      for (const { name, transport } of sessionState) {
        // Best effort: a session not saved only costs its client a new handshake.
        await durable.store.saveState(name, transport.exportSessions(opts.stateKey)).catch(() => {});
      }
    }
    observe.close();
    await Promise.allSettled(servers.map((s) => s.close()));
    await cluster?.close();
    await durable?.close();
  };
  // A host name binds every address it resolves to (localhost: 127.0.0.1 and ::1,
  // since clients try ::1 first where both are mapped).
  const hosts =
    opts.host === undefined || isIP(opts.host) !== 0
      ? [opts.host]
      : await resolveAll(opts.host, opts.lookupHost);
  try {
    // OSCORE: a reserved range of sender sequence numbers (from the store with --data/--store) first.
    if (opts.oscore) await readyOscore(opts.oscore, durable?.store);
    // A payload in one datagram is checked by the store, whose 4.13 names --max-size.
    const maxPayloadSize = Math.max(opts.maxSize, 2048);
    const plain = new CoapServer({ maxPayloadSize, blockwise, observe });
    setup(plain);
    servers.push(plain);
    const mc = opts.multicast;
    const wildcard = opts.host === undefined || opts.host === '::' || opts.host === '0.0.0.0';
    if (mc !== undefined && wildcard && opts.port === mc.port) {
      // Linux delivers a group's datagrams to every socket bound to the wildcard address on
      // that port too (IP_MULTICAST_ALL), and Node cannot tell the destination address: a
      // wildcard socket would treat each multicast request as unicast (ACK a CON, answer
      // errors) next to the group socket. So bind the unicast side to each local address.
      if (opts.host !== undefined) {
        throw new UsageError(`--multicast with --host ${opts.host} on the group port ${mc.port}`, {
          hint: 'a wildcard socket on the group port also receives the multicast requests; omit --host (binds every local address), name one address, or use another --port',
        });
      }
      const failures: string[] = [];
      for (const host of localAddresses()) {
        try {
          await plain.listen({ host, port: opts.port });
        } catch (err) {
          failures.push(`${host}: ${(err as Error).message}`);
        }
      }
      if (plain.endpoints.length === 0) {
        throw bindError('coap', 'every local address', opts.port, new Error(failures.join('; ')));
      }
    } else {
      // With several addresses (a name), the first one's port (0 = any) is used for the others.
      let port = opts.port;
      await bindEach(hosts, async (host) => {
        try {
          const ep = await bindDefault(host, (h) =>
            plain.listen({ host: h, port, ...(opts.reusePort ? { reusePort: true } : {}) }),
          );
          port = ep.transport.localAddress().port;
        } catch (err) {
          throw bindError('coap', host, port, err);
        }
      });
    }
    const unicastEndpoints = plain.endpoints.length;
    durable?.restoreObservers(plain);
    if (mc !== undefined) {
      try {
        await plain.listenMulticast({
          groups: mc.groups,
          port: mc.port,
          leisureMs: mc.leisureMs,
          ...(mc.interface !== undefined ? { interface: mc.interface } : {}),
          ...(mc.interface6 !== undefined ? { interface6: mc.interface6 } : {}),
        });
      } catch (err) {
        throw new NetworkError(`cannot join the multicast groups: ${(err as Error).message}`, {
          cause: err,
          hint: 'check --multicast-interface (and that the interface has multicast enabled)',
        });
      }
    }
    for (const [i, a] of plain.addresses().entries()) {
      const group = i >= unicastEndpoints;
      listeners.push({
        scheme: 'coap',
        address: a.address,
        port: a.port,
        url: urlFor('coap', a.address, a.port),
        ...(group ? { group } : {}),
      });
    }
    if (opts.keys.size > 0 || opts.credentials?.certs !== undefined) {
      const keys = opts.keys;
      const psk = keys.size > 0 ? (identity: string) => keys.get(identity) : undefined;
      const secure = new CoapServer({ maxPayloadSize, blockwise, observe });
      setup(secure);
      servers.push(secure);
      let port = opts.securePort;
      await bindEach(hosts, async (host) => {
        let transport: DtlsServerTransport;
        try {
          transport = await bindDefault(host, (h) =>
            DtlsServerTransport.create({
              host: h,
              port,
              ...(psk !== undefined ? { psk } : {}),
              ...opts.credentials?.certs,
              ...cluster?.transportOptions(),
              ...(opts.reusePort ? { reusePort: true } : {}),
              ...handshakeRateOptions(opts.handshakeRate),
            }),
          );
        } catch (err) {
          throw bindError('coaps', host, port, err);
        }
        if (durable !== undefined && opts.stateKey !== undefined) {
          const name = `dtls.sessions/${host ?? '*'}:${opts.securePort}`;
          sessionState.push({ name, transport });
          const sealed = await durable.store.loadState(name);
          if (sealed !== undefined) {
            // Imported once: the same state twice would reuse its sequence numbers (nonces).
            await durable.store.deleteState(name);
            try {
              restoredSessions += (await transport.importSessions(sealed, opts.stateKey)).imported;
            } catch (err) {
              // Another key or damaged state: its clients handshake again.
              if (!(err instanceof DtlsSessionStateError)) throw err;
            }
          }
        }
        await secure.listen(transport);
        cluster?.attach(transport);
        const a = transport.localAddress();
        port = a.port;
        listeners.push({
          scheme: 'coaps',
          address: a.address,
          port: a.port,
          url: urlFor('coaps', a.address, a.port),
        });
      });
      // Their DTLS sessions are back (or their first notification fails and drops them).
      if (opts.stateKey !== undefined) durable?.restoreObservers(secure, 'coaps');
    }
    if (opts.stateKey === undefined || (opts.keys.size === 0 && opts.credentials?.certs === undefined))
      durable?.forgetObservers('coaps');
    if (opts.reliable !== undefined) {
      // RFC 8323: one more server on the same store, block-wise and observe layers.
      const rel = new CoapServer({ maxPayloadSize, blockwise, observe });
      setup(rel);
      servers.push(rel);
      for (const l of await startReliableServe(opts.reliable, rel, hosts, bindDefault)) {
        listeners.push({ ...l, url: urlFor(l.scheme, l.address, l.port) });
      }
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  return {
    store,
    observe,
    servers,
    listeners,
    ...(durable ? { durable } : {}),
    ...(restoredSessions > 0 ? { restoredSessions } : {}),
    close: closeAll,
  };
}

/** The DtlsServerTransport options of --handshake-rate N|off. */
export function handshakeRateOptions(rate: number | 'off' | undefined) {
  if (rate === undefined) return {};
  // off: every device may share one address (a load balancer's), so the per-address shares
  // of the rate and of the half-open handshakes go; the global bounds stay.
  if (rate === 'off') {
    const n = HANDSHAKE_RATE_DEFAULTS.global;
    return {
      handshakeRate: { perAddress: n, burst: 6 * n },
      maxHandshakesPerAddress: DTLS_SERVER_DEFAULTS.maxHandshakes,
    };
  }
  return { handshakeRate: { perAddress: rate, burst: 6 * rate } };
}

export function parseServeArgs(args: string[], env: NodeJS.ProcessEnv): ServeOptions | 'help' {
  const p = parseFlags('serve', args, SERVE_FLAGS);
  if (bool(p, 'help')) return 'help';
  positionals('serve', p, []);
  const host = str(p, 'host');
  if (host !== undefined && isIP(host) === 0 && !/^[a-z0-9]([a-z0-9.-]{0,252})$/i.test(host)) {
    throw new UsageError(`--host expects an IP address or a host name, got "${escapeText(host)}"`);
  }
  const opts: ServeOptions = {
    port: num(p, 'port', { integer: true, max: 65535 }) ?? 5683,
    securePort: num(p, 'secure-port', { integer: true, max: 65535 }) ?? 5684,
    keys: serverKeys(p, env),
    maxResources: num(p, 'max-resources', { integer: true }) ?? 1000,
    maxSize: num(p, 'max-size', { integer: true }) ?? DEFAULT_SERVE_MAX_SIZE,
    maxAge: num(p, 'max-age', { integer: true, max: 0xffffffff }) ?? 60,
  };
  const maxStoreBytes = num(p, 'max-store-bytes', { integer: true });
  if (maxStoreBytes !== undefined) opts.maxStoreBytes = maxStoreBytes;
  if (opts.maxSize > (maxStoreBytes ?? DEFAULT_SERVE_MAX_STORE_BYTES)) {
    throw new UsageError(
      `--max-size ${opts.maxSize} is larger than the whole store (--max-store-bytes ${maxStoreBytes ?? DEFAULT_SERVE_MAX_STORE_BYTES})`,
      { hint: 'raise --max-store-bytes or lower --max-size' },
    );
  }
  const credentials = serveCertOptions(p);
  if (credentials.certs !== undefined) opts.credentials = credentials;
  const data = str(p, 'data');
  const storeUrl = str(p, 'store');
  if (data !== undefined && storeUrl !== undefined) {
    throw new UsageError('--data and --store exclude each other', {
      hint: '--data DIR keeps the state in SQLite, --store postgres://... in PostgreSQL',
    });
  }
  if (data === '') throw new UsageError('--data expects a directory');
  if (storeUrl !== undefined && !/^postgres(ql)?:\/\/./i.test(storeUrl)) {
    throw new UsageError('--store expects a postgres://user:password@host:port/database URL');
  }
  if (data !== undefined) opts.data = data;
  if (storeUrl !== undefined) opts.storeUrl = storeUrl;
  // Behind a load balancer that hides client addresses every device has the balancer's
  // address: "off" leaves only the global bound.
  if (str(p, 'handshake-rate') === 'off') opts.handshakeRate = 'off';
  else {
    const n = num(p, 'handshake-rate', {
      min: 1,
      max: 1_000_000,
      hint: 'a number of handshakes a second, or off',
    });
    if (n !== undefined) opts.handshakeRate = n;
  }
  const stateKeyFile = str(p, 'state-key');
  const stateKey =
    stateKeyFile !== undefined
      ? readInputFile(stateKeyFile, '--state-key file')
      : env.COAPKIT_STATE_KEY !== undefined && env.COAPKIT_STATE_KEY !== ''
        ? Buffer.from(env.COAPKIT_STATE_KEY, 'utf8')
        : undefined;
  if (stateKey !== undefined) {
    if (data === undefined && storeUrl === undefined) {
      throw new UsageError('--state-key needs --data DIR or --store URL', {
        hint: 'the DTLS sessions are kept in the durable store, sealed with this key',
      });
    }
    if (stateKey.length < 16) {
      throw new UsageError(`the state key is ${stateKey.length} bytes; it needs at least 16`, {
        hint: 'make one with: head -c 32 /dev/urandom > state.key',
      });
    }
    opts.stateKey = stateKey;
  }
  if (bool(p, 'quiet')) opts.quiet = true;
  if (bool(p, 'verbose')) opts.verbose = true;
  // Keys given (flags or environment), not generated: anonymous peers only read unless --acl / --anonymous-writes.
  opts.access = serveAccess(p, opts.keys.size > 0);
  if (bool(p, 'generate-psk') && opts.keys.size === 0) {
    // A fresh random key for this run only, so coaps:// works out of the box
    // without a well-known default secret.
    const identity = str(p, 'identity') ?? 'coapkit';
    // A worker of --workers uses the key its supervisor made, like every other worker.
    const given = isWorker(env) ? env[WORKER_KEY_ENV] : undefined;
    const key =
      given !== undefined && /^[0-9a-f]{32}$/.test(given) ? Buffer.from(given, 'hex') : randomBytes(16);
    opts.keys.set(identity, key);
    opts.generatedKey = { identity, key };
  }
  if (host !== undefined) opts.host = host;
  const gen = credentials.generated !== undefined ? credentials.certs : undefined;
  const reliable = parseReliableServe(
    p,
    opts.keys,
    gen !== undefined ? { cert: gen.cert as Buffer, key: gen.key as Buffer } : undefined,
    Buffer.isBuffer(credentials.certs?.ca) ? credentials.certs.ca : undefined,
  );
  if (reliable !== undefined) opts.reliable = reliable;
  const cluster = clusterArgs(p);
  if (cluster !== undefined) opts.cluster = cluster;
  const oscore = serveOscoreArgs(p);
  if (oscore) opts.oscore = oscore;
  opts.workers = parseWorkers(str(p, 'workers'));
  if (isWorker(env)) opts.reusePort = true;
  if (opts.workers > 1 && bool(p, 'multicast'))
    throw new UsageError('--multicast with --workers above 1', {
      hint: 'multicast is answered by one process: use --workers 1',
    });
  if (opts.workers > 1 && opts.oscore !== undefined && opts.storeUrl === undefined)
    throw new UsageError('--oscore with --workers above 1 needs --store postgres://...', {
      hint: 'processes sharing FILE.seq would send the same Partial IV; with --store they reserve disjoint ranges',
    });
  if (opts.workers > 1 && opts.data !== undefined)
    throw new UsageError('--data with --workers above 1', {
      hint: 'a SQLite directory belongs to one process: share state between workers with --store postgres://..., or use --workers 1',
    });
  if (opts.workers > 1 && opts.reliable !== undefined)
    throw new UsageError('--tcp-port/--tls-port/--ws-port/--wss-port with --workers above 1', {
      hint: 'the RFC 8323 listeners run in one process: use --workers 1',
    });
  const mcFlags = ['multicast-interface', 'multicast-group', 'multicast-port', 'leisure'];
  if (bool(p, 'multicast')) {
    const leisure = str(p, 'leisure');
    const leisureS = leisure === undefined ? 5 : Number(leisure);
    if (leisure !== undefined && (leisure.trim() === '' || !Number.isFinite(leisureS) || leisureS < 0))
      throw new UsageError(`--leisure expects seconds >= 0, got "${leisure}"`);
    opts.multicast = serveMulticast(
      str(p, 'multicast-interface'),
      strs(p, 'multicast-group'),
      num(p, 'multicast-port', { integer: true, min: 1, max: 65535 }) ?? 5683,
      Math.round(leisureS * 1000),
    );
  } else {
    const stray = mcFlags.find((f) => p.values[f] !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray} needs --multicast`);
  }
  return opts;
}

export async function runServe(args: string[], io: Io): Promise<number> {
  const opts = parseServeArgs(args, io.env);
  if (opts === 'help') {
    await writeAll(io.stdout, SERVE_HELP);
    return ExitCode.OK;
  }
  const quiet = opts.quiet === true;
  if ((opts.workers ?? 1) > 1 && !isWorker(io.env)) {
    return runSupervisor(
      {
        args: withoutWorkersFlag(args),
        workers: opts.workers ?? 1,
        quiet,
        ...(opts.generatedKey ? { generatedKeyHex: opts.generatedKey.key.toString('hex') } : {}),
      },
      io,
    );
  }
  const running = await startServe(opts);
  const self = selfCommand(io.env);
  const lines = ['coapkit serve: listening on'];
  for (const l of running.listeners) {
    const modes = [
      ...(opts.keys.size > 0 ? [`PSK, ${opts.keys.size} identit${opts.keys.size === 1 ? 'y' : 'ies'}`] : []),
      ...(opts.credentials?.note !== undefined ? [opts.credentials.note] : []),
    ];
    const note = l.scheme === 'coaps' ? `  (DTLS ${modes.join('; ')})` : '';
    lines.push(
      `  ${l.url}${note}${l.group ? `  (multicast group, leisure ${(opts.multicast?.leisureMs ?? 0) / 1000} s)` : ''}`,
    );
  }
  if (opts.keys.size === 0 && opts.credentials === undefined)
    lines.push(
      '  (coaps:// not started: no PSK configured and no certificate; see --identity/--psk, --psk-file, --generate-psk, --cert, --generate-cert)',
    );
  if (opts.oscore) lines.push(oscoreBanner(opts.oscore));
  // OSCORE required on "/": every Try line needs the client's context (--oscore FILE).
  const tryOscore = opts.oscore ? oscoreTryArgs(opts.oscore) : { args: '' };
  const secureListener = running.listeners.find((l) => l.scheme === 'coaps');
  if (opts.generatedKey && secureListener) {
    const { identity, key } = opts.generatedKey;
    lines.push(
      `PSK generated for this run: identity "${identity}", key (hex) ${key.toString('hex')}`,
      `Try: ${self} get coaps://${reachable(secureListener.address)}:${secureListener.port}/ --identity ${identity} --psk-hex ${key.toString('hex')}${tryOscore.args}`,
    );
  }
  const gen = opts.credentials?.generated;
  if (gen !== undefined && secureListener) {
    lines.push(
      `Certificates ${gen.reused ? 'reused from' : 'generated in'} ${gen.dir} (throwaway CA, server and client)`,
      `Try: ${self} get coaps://${reachable(secureListener.address)}:${secureListener.port}/ ${opts.credentials?.clientArgs}${tryOscore.args}`,
    );
  }
  if (opts.access) lines.push(opts.access.banner);
  if (opts.cluster !== undefined) {
    const c = opts.cluster;
    const peers = [...c.peers].map(([n, a]) => `${n}=${a.address}:${a.port}`).join(', ');
    lines.push(
      `Cluster node ${c.nodeId}: node-to-node on ${c.listen.host}:${c.listen.port}; peers ${peers || '(none)'}`,
    );
  }
  const first = running.listeners.find((l) => !l.group) ?? running.listeners[0]!;
  lines.push(
    `Try: ${self} get ${first.scheme}://${reachable(first.address)}:${first.port}/${tryOscore.args}`,
    ...(tryOscore.note === undefined ? [] : [tryOscore.note]),
    `Limits: ${opts.maxResources} resources, ${sizeText(opts.maxSize)} each (--max-resources, --max-size). Stop with Ctrl-C.`,
  );
  if (running.durable) lines.splice(lines.length - 1, 0, `Data: ${running.durable.description}`);
  if (running.restoredSessions !== undefined)
    lines.splice(lines.length - 1, 0, `DTLS sessions restored: ${running.restoredSessions}`);
  // Handlers first, banner second: whoever waits for the banner may signal right away.
  let failServe: (err: unknown) => void = () => {};
  let stopServe: (signal: string) => void = () => {};
  const done = new Promise<number>((resolve, reject) => {
    failServe = (err) => {
      void Promise.race([running.close(), sleep(3000)]).then(() => reject(err));
    };
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        // A second signal: stop now.
        resolve(130);
        return;
      }
      stopping = true;
      // close() sends DTLS close_notify; do not wait for it forever.
      const closed = Promise.race([running.close(), sleep(3000)]);
      const finish = () => resolve(ExitCode.OK);
      (quiet ? Promise.resolve() : writeAll(io.stdout, `coapkit serve: ${signal}, shutting down\n`))
        .then(() => closed)
        .then(finish, finish);
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    stopServe = stop;
  });
  if (!quiet) await writeAll(io.stdout, `${lines.join('\n')}\n`);
  if (isWorker(io.env)) {
    // A worker of --workers: the supervisor learns the ports; the worker stops when it goes away.
    const coaps = running.listeners.find((l) => l.scheme === 'coaps');
    announceWorker({ port: first.port, ...(coaps ? { securePort: coaps.port } : {}) }, () =>
      stopServe('supervisor gone'),
    );
  }
  // -v: request and failed-handshake logs on stdout; a stdout that cannot be written
  // (closed pipe, full disk) stops the server with exit 74 like any other command.
  let stopLog: (() => void) | undefined;
  if (opts.verbose) {
    const sink = lineSink(io.stdout, { onError: (err) => failServe(err) });
    // Workers name themselves on each line: which process answered which peer.
    const stopRequests = logRequests(sink.line, isWorker(io.env) ? ` [worker ${process.pid}]` : '');
    const stopHandshakes = logHandshakeFailures(sink.line);
    stopLog = () => {
      stopRequests();
      stopHandshakes();
    };
  }
  try {
    return await done;
  } finally {
    stopLog?.();
  }
}

/** "4 MiB", "65536 bytes": a byte count as the banner shows it. */
export function sizeText(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} byte${n === 1 ? '' : 's'}`;
}

function executableOnPath(name: string, env: NodeJS.ProcessEnv): boolean {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, name), fsConstants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

/**
 * How the user who started this server runs the CLI from where they stand, for
 * the banner's "Try:" lines: `npx coapkit` under npm (npm start, npm run, npx:
 * the package's bin is only on npm's PATH), `coapkit` when that is what was
 * run and it is on PATH, else `node <path of this script>` (relative to the
 * working directory when it is below it).
 */
export function selfCommand(
  env: NodeJS.ProcessEnv,
  script: string | undefined = process.argv[1],
  cwd: string = process.cwd(),
  onPath: (name: string) => boolean = (name) => executableOnPath(name, env),
): string {
  if (env.npm_lifecycle_event !== undefined || env.npm_command !== undefined) return 'npx coapkit';
  if (script === undefined) return 'coapkit';
  const name = basename(script);
  if ((name === 'coapkit' || name === 'coapkit.cmd') && onPath('coapkit')) return 'coapkit';
  const rel = relative(cwd, script);
  const shown = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : script;
  return `node ${/[\s'"$`\\]/.test(shown) ? JSON.stringify(shown) : shown}`;
}

/** -v: one line per request ("GET /time from 127.0.0.1:40000 -> 2.05 Content (0.2 ms)"). */
export function logRequests(write: (line: string) => void, suffix = ''): () => void {
  const pending = new Map<string, ServerRequestEvent>();
  const onRequest = (ev: ServerRequestEvent) => {
    pending.set(`${ev.peer.key}|${ev.token.toString('hex')}`, ev);
    if (pending.size > 10_000) pending.delete(pending.keys().next().value as string);
  };
  const onResponse = (ev: ChannelPayloads['coapkit:server:response']) => {
    const key = `${ev.peer.key}|${ev.token.toString('hex')}`;
    const req = pending.get(key);
    if (!req) return;
    pending.delete(key);
    // Path and identity come from the peer: escaped, so a "\n" cannot forge a log line.
    const who = `${peerText(req.peer.address, req.peer.port)}${req.peer.identity !== undefined ? ` (${escapeText(req.peer.identity)})` : ''}`;
    const result = ev.code === undefined ? 'no response' : describeCode(ev.code);
    write(
      `${new Date().toISOString()} ${escapeText(req.method)} ${escapeText(req.path)} from ${who} -> ${result} (${ev.durationMs.toFixed(1)} ms)${suffix}`,
    );
  };
  channels.request.subscribe(onRequest);
  channels.response.subscribe(onResponse);
  return () => {
    channels.request.unsubscribe(onRequest);
    channels.response.unsubscribe(onResponse);
  };
}

/** Rate limit of the failed-handshake log (serve -v). */
export const HANDSHAKE_LOG_LIMITS = {
  /** Lines per second for all peers together. */
  perSecond: 10,
  /** Lines per second for one peer address. */
  perPeerPerSecond: 3,
} as const;

/** "127.0.0.1:40000" from the DTLS event's peer label ("address%port"), escaped. */
function dtlsPeer(label: string): { text: string; address: string } {
  const m = /^(.*)%(\d+)$/.exec(label);
  if (m) return { text: peerText(m[1]!, Number(m[2])), address: m[1]! };
  return { text: escapeText(label === '' ? '(unknown peer)' : label), address: label };
}

/**
 * -v: one line per failed DTLS handshake ("... DTLS handshake failed from
 * 127.0.0.1:40000 (alice): alert decrypt_error (51): <message>"), at most
 * HANDSHAKE_LOG_LIMITS lines per second (overall and per peer address), then
 * one "suppressed K similar lines" summary per second. Memory: a map of at most
 * `perSecond` addresses, cleared every second.
 */
export function logHandshakeFailures(
  write: (line: string) => void,
  limits: { perSecond: number; perPeerPerSecond: number } = HANDSHAKE_LOG_LIMITS,
  now: () => number = Date.now,
): () => void {
  let windowStart = 0;
  let logged = 0;
  let suppressed = 0;
  const perPeer = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  const summary = (): void => {
    timer = undefined;
    if (suppressed === 0) return;
    write(
      `${new Date().toISOString()} DTLS handshake failures: suppressed ${suppressed} similar line${suppressed === 1 ? '' : 's'} (more than ${limits.perSecond}/s, or ${limits.perPeerPerSecond}/s from one address)`,
    );
    suppressed = 0;
  };
  const onError = (ev: ChannelPayloads['coapkit:dtls:handshake:error']): void => {
    if (ev.role === 'client') return;
    const t = now();
    if (t - windowStart >= 1000) {
      if (timer !== undefined) clearTimeout(timer);
      summary();
      windowStart = t;
      logged = 0;
      perPeer.clear();
    }
    const peer = dtlsPeer(ev.peer);
    const n = perPeer.get(peer.address) ?? 0;
    if (logged >= limits.perSecond || n >= limits.perPeerPerSecond) {
      suppressed++;
      // The summary comes at the end of the window even when no later failure arrives.
      if (timer === undefined) {
        timer = setTimeout(summary, Math.max(1, windowStart + 1000 - t));
        timer.unref();
      }
      return;
    }
    logged++;
    perPeer.set(peer.address, n + 1);
    const who = ev.identity !== undefined ? ` (${escapeText(ev.identity)})` : '';
    const alert = ev.alert ? `alert ${ev.alert.name} (${ev.alert.description})` : undefined;
    const reason = ev.error.message;
    write(
      `${new Date().toISOString()} DTLS handshake failed from ${peer.text}${who}${alert ? `: ${alert}` : ''}${reason ? `: ${escapeText(reason)}` : ''}`,
    );
  };
  channels.dtlsHandshakeError.subscribe(onError);
  return () => {
    channels.dtlsHandshakeError.unsubscribe(onError);
    if (timer !== undefined) clearTimeout(timer);
    summary();
  };
}
