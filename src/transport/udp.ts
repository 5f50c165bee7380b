/**
 * Plain UDP transport (coap://). One socket, IPv4 or IPv6 (an IPv6 socket
 * bound to '::' is dual-stack unless `ipv6Only`).
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { InvalidArgumentError, NetworkError } from '../errors.js';
import { formatAddress } from './address.js';
import { literalLookup } from './literal-lookup.js';
import type { AddressFamily, Peer, Transport, TransportHandlers } from './transport.js';
import { peerKey } from './transport.js';

export interface UdpTransportOptions {
  /** Address to bind (default '::' falling back to '0.0.0.0', or '0.0.0.0' for type udp4). */
  host?: string;
  /** Port to bind (default 0 = ephemeral). */
  port?: number;
  /** 'udp4' or 'udp6'; derived from host when omitted. */
  type?: 'udp4' | 'udp6';
  ipv6Only?: boolean;
  reuseAddr?: boolean;
  /**
   * SO_REUSEPORT: several processes bind the same address and port and the kernel
   * spreads the peers over them by source address and port (Linux: one peer always
   * reaches the same socket while the set of sockets stays the same). Needs Node
   * 22.12 or later ({@link reusePortSupported}); an InvalidArgumentError says so
   * on older versions. `coapkit serve --workers N` uses it.
   */
  reusePort?: boolean;
  /** Socket buffer sizes in bytes (server under load benefits from larger ones). */
  recvBufferSize?: number;
  sendBufferSize?: number;
  /** Multicast groups to join (e.g. '224.0.1.187', 'ff02::fd'). */
  multicastGroups?: string[];
  /** Interface address for multicast membership. */
  multicastInterface?: string;
  /** Largest message (default 1152 bytes, RFC 7252 §4.6). */
  maxMessageSize?: number;
  /** Do not keep the process alive just for this socket. */
  unref?: boolean;
  /**
   * Connect the socket to one peer (a client talking to one server): ICMP
   * errors such as port unreachable then surface as `peerError`.
   */
  connect?: { address: string; port: number };
  /**
   * With `connect`: when the peer has sent nothing this many ms after the
   * first datagram, send it one DTLS ClientHello (which a CoAP server ignores,
   * RFC 7252 §3: unknown version). A DTLS server answers it with a
   * HelloVerifyRequest, and the pending requests then fail at once with
   * "that port speaks DTLS: use coaps://" instead of timing out. Any
   * datagram that looks like a DTLS record fails them the same way.
   * Default: off (0); `CoapClient` sets 1000.
   */
  dtlsProbeMs?: number;
  /**
   * Peer objects are interned (one object per address and port) in a cache
   * of two generations of at most this many peers each (default 8192): when
   * the young one is full, or every `peerCacheMs`, it becomes the old one
   * and the old one is dropped. A flood of source addresses therefore holds
   * at most 2 x peerCacheSize peers here, given back within 2 x peerCacheMs.
   */
  peerCacheSize?: number;
  /** Generation length of the peer cache in ms (default 30000). */
  peerCacheMs?: number;
}

export class UdpTransport implements Transport {
  readonly scheme = 'coap';
  readonly reliable = false;
  readonly maxMessageSize: number;
  private handlers: TransportHandlers | undefined;
  private closed = false;
  /** Peer objects interned per key (young generation; see `peerCacheSize`). */
  private peers = new Map<string, Peer>();
  /** The previous generation: looked up on a miss, promoted on a hit. */
  private oldPeers = new Map<string, Peer>();
  /** The peer most recently seen per source port (at most 65536 entries; cleared with each generation). */
  private readonly byPort = new Map<number, Peer>();
  private readonly peerCacheSize: number;
  private readonly rotateTimer: NodeJS.Timeout;

  /** The peer a connected socket talks to. */
  private readonly connectedPeer: Peer | undefined;

  private constructor(
    private readonly socket: dgram.Socket,
    maxMessageSize: number,
    connectedTo?: { address: string; port: number },
    cache: { size?: number; ms?: number } = {},
  ) {
    this.maxMessageSize = maxMessageSize;
    this.peerCacheSize = Math.max(1, cache.size ?? 8192);
    this.rotateTimer = setInterval(() => this.rotatePeers(), Math.max(10, cache.ms ?? 30_000));
    this.rotateTimer.unref();
    if (connectedTo) {
      const family: AddressFamily = connectedTo.address.includes(':') ? 'IPv6' : 'IPv4';
      const key = peerKey(connectedTo.address, connectedTo.port);
      this.connectedPeer = { address: connectedTo.address, port: connectedTo.port, family, key };
      this.peers.set(key, this.connectedPeer);
    }
    socket.on('message', (data, rinfo) => {
      const h = this.handlers;
      if (h === undefined) return;
      this.heard = true;
      // A CoAP message starts with version 1 (0x40-0x7f): below is not CoAP (cheap gate).
      if (data[0]! < 0x40 && this.connectedPeer !== undefined && looksLikeDtls(data)) {
        this.dtlsAnswer(this.connectedPeer);
        return;
      }
      // Fast path: the peer last seen on this source port, if the address matches
      // (no key string to build and hash for every datagram).
      let peer = this.byPort.get(rinfo.port);
      if (peer === undefined || peer.address !== rinfo.address) peer = this.intern(rinfo);
      h.message(data, peer);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const peer = this.connectedPeer;
      if (
        peer &&
        (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH')
      ) {
        const refused = err.code === 'ECONNREFUSED';
        const what = refused ? 'connection refused (ICMP port unreachable)' : 'host unreachable';
        this.handlers?.peerError?.(
          peer,
          new NetworkError(`${what} from ${formatAddress(peer.address, peer.port)}`, {
            cause: err,
            hint: refused
              ? 'nothing listens on that UDP port: is a CoAP server running there (coap:// default port 5683)?'
              : 'check the address and the route to it',
          }),
        );
        return;
      }
      this.handlers?.error?.(new NetworkError(`UDP socket error: ${err.message}`, { cause: err }));
    });
  }

  /** The interned peer for a source address (slow path: byPort missed). */
  private intern(rinfo: dgram.RemoteInfo): Peer {
    const key = peerKey(rinfo.address, rinfo.port);
    let peer = this.peers.get(key);
    if (peer === undefined) {
      peer = this.oldPeers.get(key);
      if (peer === undefined) {
        peer = { address: rinfo.address, port: rinfo.port, family: rinfo.family as AddressFamily, key };
      }
      if (this.peers.size >= this.peerCacheSize) this.rotatePeers();
      this.peers.set(key, peer);
    }
    this.byPort.set(rinfo.port, peer);
    return peer;
  }

  /** Starts a new generation of the peer cache; the oldest one is given back. */
  private rotatePeers(): void {
    if (this.peers.size === 0 && this.oldPeers.size === 0 && this.byPort.size === 0) return;
    this.oldPeers = this.peers;
    this.peers = new Map();
    this.byPort.clear();
  }

  /** Peers currently interned (both generations), for tests and monitoring. */
  get cachedPeers(): number {
    return this.peers.size + this.oldPeers.size;
  }

  static async create(options: UdpTransportOptions = {}): Promise<UdpTransport> {
    const reuse = reusePortOption(options.reusePort);
    const tryBind = (type: 'udp4' | 'udp6', host: string) =>
      new Promise<dgram.Socket>((resolve, reject) => {
        const socket = dgram.createSocket({
          type,
          ...reuse,
          reuseAddr: options.reuseAddr ?? false,
          ipv6Only: options.ipv6Only ?? false,
          lookup: literalLookup,
          ...(options.recvBufferSize ? { recvBufferSize: options.recvBufferSize } : {}),
          ...(options.sendBufferSize ? { sendBufferSize: options.sendBufferSize } : {}),
        });
        const onError = (err: Error) => {
          socket.close();
          reject(err);
        };
        socket.once('error', onError);
        socket.bind(options.port ?? 0, host, () => {
          socket.off('error', onError);
          resolve(socket);
        });
      });
    const explicitType = options.type;
    let host = options.host;
    let socket: dgram.Socket;
    try {
      if (host === undefined) {
        if (explicitType === 'udp4') socket = await tryBind('udp4', '0.0.0.0');
        else {
          try {
            socket = await tryBind('udp6', '::');
            host = '::';
          } catch (err) {
            if (explicitType === 'udp6') throw err;
            socket = await tryBind('udp4', '0.0.0.0');
          }
        }
      } else {
        const bare = host.replace(/^\[|\]$/g, '');
        const type = explicitType ?? (bare.includes(':') ? 'udp6' : 'udp4');
        socket = await tryBind(type, bare);
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const hint =
        e.code === 'EADDRINUSE'
          ? 'another process is using that port; choose another with --port'
          : e.code === 'EACCES'
            ? 'binding to ports below 1024 needs privileges'
            : e.code === 'EADDRNOTAVAIL'
              ? 'that address is not configured on this machine'
              : undefined;
      throw new NetworkError(
        `cannot bind UDP ${formatAddress(host ?? '', options.port ?? 0)}: ${e.message}`,
        {
          cause: err,
          ...(hint ? { hint } : {}),
        },
      );
    }
    if (options.multicastGroups) {
      for (const g of options.multicastGroups) {
        try {
          socket.addMembership(g, options.multicastInterface);
        } catch (err) {
          socket.close();
          throw new NetworkError(`cannot join multicast group ${g}: ${(err as Error).message}`, {
            cause: err,
          });
        }
      }
    }
    if (options.connect) {
      const { address, port } = options.connect;
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('error', reject);
          socket.connect(port, address, () => {
            socket.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        socket.close();
        throw new NetworkError(`cannot reach ${formatAddress(address, port)}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    if (options.unref) socket.unref();
    const t = new UdpTransport(socket, options.maxMessageSize ?? 1152, options.connect, {
      ...(options.peerCacheSize !== undefined ? { size: options.peerCacheSize } : {}),
      ...(options.peerCacheMs !== undefined ? { ms: options.peerCacheMs } : {}),
    });
    if (options.connect && (options.dtlsProbeMs ?? 0) > 0) t.dtlsProbeMs = options.dtlsProbeMs!;
    return t;
  }

  /** Anything received from the peer yet (connected sockets: drives the DTLS probe). */
  private heard = false;
  /** 0: no probe; else ms after the first send without an answer to send it. */
  private dtlsProbeMs = 0;
  private probeTimer: NodeJS.Timeout | undefined;

  /** Arms the one DTLS probe of a connected socket (first send with nothing heard yet). */
  private armProbe(): void {
    const ms = this.dtlsProbeMs;
    this.dtlsProbeMs = 0;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      if (this.heard || this.closed) return;
      this.socket.send(dtlsProbe(), () => {});
    }, ms);
    this.probeTimer.unref();
  }

  /** The connected peer answered with a DTLS record: every pending request to it fails now. */
  private dtlsAnswer(peer: Peer): void {
    const where = formatAddress(peer.address, peer.port);
    this.handlers?.peerError?.(
      peer,
      new NetworkError(`${where} answered with DTLS: that port speaks coaps://, not plain CoAP`, {
        hint: `use coaps://${where}/... with a pre-shared key (--identity ID --psk SECRET)`,
      }),
    );
  }

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  send(data: Uint8Array, peer: Peer, reportErrors = true): void {
    if (this.closed) return;
    if (this.connectedPeer !== undefined) {
      if (this.dtlsProbeMs > 0 && !this.heard) this.armProbe();
      const cb = (err: Error | null) => {
        if (err) {
          this.handlers?.peerError?.(
            peer,
            new NetworkError(`send to ${formatAddress(peer.address, peer.port)} failed: ${err.message}`),
          );
        }
      };
      if (peer.key === this.connectedPeer.key) this.socket.send(data, cb);
      else cb(new Error('this socket is connected to another peer'));
      return;
    }
    if (!reportErrors) {
      this.socket.send(data, peer.port, peer.address);
      return;
    }
    this.socket.send(data, peer.port, peer.address, (err) => {
      if (err) {
        this.handlers?.peerError?.(
          peer,
          new NetworkError(`send to ${formatAddress(peer.address, peer.port)} failed: ${err.message}`),
        );
      }
    });
  }

  localAddress(): { address: string; port: number; family: AddressFamily } {
    const a = this.socket.address();
    return { address: a.address, port: a.port, family: a.family as AddressFamily };
  }

  /** The underlying socket (for multicast settings and tests). */
  get rawSocket(): dgram.Socket {
    return this.socket;
  }

  ref(): void {
    this.socket.ref();
  }

  unref(): void {
    this.socket.unref();
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    clearInterval(this.rotateTimer);
    if (this.probeTimer !== undefined) clearTimeout(this.probeTimer);
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/**
 * A datagram that looks like a DTLS record (RFC 6347 §4.1): content type
 * 20-25 (change_cipher_spec, alert, handshake, application_data, heartbeat,
 * tls12_cid), version 0xfefd (DTLS 1.2) or 0xfeff (1.0, used in
 * HelloVerifyRequest and alerts), and at least a record header (13 bytes).
 * A CoAP message never matches: its first byte is 0x40-0x7f.
 */
export function looksLikeDtls(data: Uint8Array): boolean {
  return (
    data.length >= 13 &&
    data[0]! >= 20 &&
    data[0]! <= 25 &&
    data[1] === 0xfe &&
    (data[2] === 0xfd || data[2] === 0xff)
  );
}

/**
 * A DTLS 1.2 ClientHello record without cookie, offering the PSK suites of
 * RFC 7252 §9.1.3.1 and common ones: a DTLS server answers it with a
 * HelloVerifyRequest (stateless, RFC 6347 §4.2.1); a CoAP server ignores it.
 */
export function dtlsProbe(): Buffer {
  const suites = [0xc0a8, 0xc0a4, 0x00a8, 0x00ae, 0xc037, 0xc0ae, 0xc02b];
  const groups = [0x0017, 0x001d];
  const ext = Buffer.from([
    ...[0x00, 0x0a, 0x00, 2 + groups.length * 2, 0x00, groups.length * 2],
    ...groups.flatMap((g) => [g >> 8, g & 0xff]),
    ...[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00], // ec_point_formats: uncompressed
    ...[0x00, 0x17, 0x00, 0x00], // extended_master_secret
    ...[0xff, 0x01, 0x00, 0x01, 0x00], // renegotiation_info
  ]);
  const body = Buffer.concat([
    Buffer.from([0xfe, 0xfd]),
    randomBytes(32),
    Buffer.from([0x00, 0x00]), // session_id, cookie: empty
    Buffer.from([0x00, suites.length * 2, ...suites.flatMap((c) => [c >> 8, c & 0xff])]),
    Buffer.from([0x01, 0x00]), // compression: null
    Buffer.from([ext.length >> 8, ext.length & 0xff]),
    ext,
  ]);
  const n = body.length;
  const hs = Buffer.concat([
    Buffer.from([0x01, 0, n >> 8, n & 0xff, 0, 0, 0, 0, 0, 0, n >> 8, n & 0xff]),
    body,
  ]);
  const m = hs.length;
  return Buffer.concat([Buffer.from([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, m >> 8, m & 0xff]), hs]);
}

/** The Node version from which dgram sockets take `reusePort` (also 23.1 and later). */
export const REUSE_PORT_NODE_VERSION = '22.12.0';

/** Whether this Node's dgram sockets take `reusePort` (22.12+ and 23.1+). */
export function reusePortSupported(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * The `dgram.createSocket` option for `reusePort` (empty when not asked for); an
 * InvalidArgumentError naming the Node version needed when this Node lacks it.
 */
export function reusePortOption(reusePort: boolean | undefined): { reusePort?: true } {
  if (reusePort !== true) return {};
  if (!reusePortSupported()) {
    throw new InvalidArgumentError(
      `reusePort needs Node ${REUSE_PORT_NODE_VERSION} or later (dgram reusePort); this is Node ${process.versions.node}`,
    );
  }
  return { reusePort: true };
}
