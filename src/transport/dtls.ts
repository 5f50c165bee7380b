/**
 * DTLS 1.2 PSK transports ('coaps', RFC 7252 §9) implementing `Transport`.
 *
 * - `DtlsClientTransport`: one UDP socket (per address family), one DTLS
 *   session per server peer. `send()` starts a handshake when needed and queues
 *   (bounded) until the session is up; a failed handshake reports
 *   `peerError(peer, DtlsError)` and drops the queue.
 * - `DtlsServerTransport`: stateless cookie exchange, bounded sessions and
 *   half-open handshakes, idle eviction; delivers decrypted datagrams with
 *   `peer.identity` set to the authenticated PSK identity.
 *
 * PSK keys given as strings are used as their UTF-8 bytes (like libcoap's `-k`).
 * `SSLKEYLOGFILE` (or `keyLogFile`) enables NSS key logging for Wireshark.
 */
import { Buffer } from 'node:buffer';
import { randomInt } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { DtlsClientConnection } from '../dtls/client.js';
import {
  buildCertOptions,
  type CertOptions,
  type DtlsCertificateOptions,
  type PemInput,
} from '../dtls/crypto/certs.js';
import {
  CIPHER_SUITES,
  DEFAULT_CERT_CIPHER_SUITES,
  DEFAULT_CIPHER_SUITES,
  recordOverhead,
} from '../dtls/crypto/suites.js';
import type { HandshakeRateOptions } from '../dtls/handshake-rate.js';
import { createKeyLogger, type KeyLogSink } from '../dtls/keylog.js';
import { RECORD_HEADER_LENGTH } from '../dtls/record/record.js';
import { DtlsServer, type DtlsServerConnection, type PskLookup } from '../dtls/server.js';
import {
  ClosedError,
  DnsError,
  DtlsAlertError,
  DtlsError,
  DtlsHandshakeTimeoutError,
  InvalidArgumentError,
  NetworkError,
} from '../errors.js';
import { type Clock, realClock, type TimerHandle } from '../util/clock.js';
import { unmapAddress } from '../util/ip-prefix.js';
import { formatAddress } from './address.js';
import {
  DEFAULT_WRITE_SEQUENCE_MARGIN,
  DtlsSessionStateError,
  openSessions,
  type SessionEntry,
  type SessionExportOptions,
  type SessionImportResult,
  sealSessions,
  stillTrusted,
  trustAnchorsDigest,
} from './dtls-sessions.js';
import { literalLookup } from './literal-lookup.js';
import {
  type AddressFamily,
  makePeer,
  type Peer,
  type PeerAuth,
  type Transport,
  type TransportHandlers,
} from './transport.js';
import { reusePortOption } from './udp.js';

export interface PskCredentials {
  identity: string | Uint8Array;
  /** The pre-shared key; a string is used as its UTF-8 bytes. */
  key: Uint8Array | string;
}

const toBytes = (v: string | Uint8Array): Buffer =>
  typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);

function bindSocket(
  type: 'udp4' | 'udp6',
  address: string | undefined,
  port: number,
  reusePort?: boolean,
): Promise<Socket> {
  const reuse = reusePortOption(reusePort);
  return new Promise((resolve, reject) => {
    const s = createSocket({ type, ipv6Only: false, lookup: literalLookup, ...reuse });
    const onError = (err: Error) => {
      s.close();
      reject(new NetworkError(`cannot bind DTLS socket: ${err.message}`, { cause: err }));
    };
    s.once('error', onError);
    s.bind({ port, ...(address !== undefined ? { address } : {}), exclusive: true }, () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

export type { DtlsCertificateOptions, PemInput };

const QUEUE_LIMIT = 32;

/** What a certificate-mode alert from the server most likely means. */
function certificateAlertHint(alert: number | undefined): string | undefined {
  switch (alert) {
    case 40:
      return 'the server refused the handshake: does it want a client certificate (--cert FILE --key FILE) and support ECDHE_ECDSA with P-256?';
    case 42:
    case 43:
      return 'the server refused our certificate: it must be an ECDSA P-256 certificate allowed for client authentication';
    case 45:
      return 'the server says our certificate expired (or is not valid yet): check its dates (openssl x509 -noout -dates -in FILE)';
    case 48:
      return "the server does not trust our certificate's issuer: use a certificate from a CA the server has in its --ca";
    case 51:
      return 'the server could not verify our signature: does --key belong to --cert?';
    default:
      return undefined;
  }
}

/**
 * A server that sends its hello flight (up to ServerHelloDone) this many more
 * times after our Finished flight answered it did not accept our Finished
 * (a wrong key; OpenSSL and libcoap servers drop such a handshake without an
 * alert): the handshake fails then (about 7 s with OpenSSL's 1 s timer doubling),
 * not at handshakeTimeoutMs. Three repeats: one lost flight is not mistaken for it.
 */
const FINISHED_IGNORED_REPEATS = 3;

/** Largest application payload that fits one datagram with the worst-case overhead of the configured suites. */
function maxPayload(mtu: number, family: 4 | 6, suites: readonly number[] | undefined): number {
  let overhead = 0;
  for (const id of suites ?? DEFAULT_CIPHER_SUITES) {
    const s = CIPHER_SUITES.get(id);
    if (s !== undefined) overhead = Math.max(overhead, recordOverhead(s));
  }
  return Math.min(16384, mtu - (family === 6 ? 48 : 28) - RECORD_HEADER_LENGTH - overhead);
}

/** Counts in-flight socket sends so close() can let close_notify leave before closing the socket. */
class PendingSends {
  private n = 0;
  private waiters: (() => void)[] = [];
  add(): void {
    this.n++;
  }
  done(): void {
    if (--this.n === 0) for (const w of this.waiters.splice(0)) w();
  }
  drained(): Promise<void> {
    if (this.n === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, 1000);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

export interface DtlsClientOptions extends DtlsCertificateOptions {
  /** PSK credentials (PSK suites); a client needs psk, or cert/key/ca/rpk (ECDHE_ECDSA suites), or both. */
  psk?: PskCredentials;
  cipherSuites?: number[];
  bind?: { address?: string; port?: number };
  family?: 4 | 6;
  handshakeTimeoutMs?: number;
  retransmitInitialMs?: number;
  mtu?: number;
  /**
   * The server's name: sent as server_name (SNI) when it is a host name, and in
   * certificate mode the name the server's certificate must carry (default the
   * host or address of the URI; checked unless `verifyPeer` is false).
   */
  serverName?: string;
  keyLogFile?: KeyLogSink;
  idleTimeoutMs?: number;
  /**
   * The source of time for handshake retransmission and timeouts, the
   * plain-CoAP probe and idle expiry (default the real clock; tests pass a
   * VirtualClock).
   */
  clock?: Clock;
  /** Don't keep the process alive just for this transport's sockets. */
  unref?: boolean;
  /**
   * Sessions that get a UDP socket of their own, connected to the server (when
   * `bind.port` is not set; default 64, 0 = always share one socket). An ICMP
   * port unreachable then fails the handshake at once ("nothing listens on
   * that port") instead of after `handshakeTimeoutMs`. Further sessions share
   * one socket per address family.
   */
  maxConnectedSockets?: number;
  /**
   * When the server has sent nothing `retransmitInitialMs` after the
   * ClientHello, send it one CoAP ping (4 bytes, RFC 7252 §4.3; a DTLS server
   * drops it as an invalid record). A plain CoAP server answers it with a
   * Reset, and the handshake then fails at once with "that port speaks plain
   * CoAP: use coap://". Default true.
   */
  probePlainCoap?: boolean;
  /**
   * Offer a DTLS Connection ID (RFC 9146; default false). With it, a server
   * that supports CIDs recognises our session after a NAT gives us a new
   * address or port, without a new handshake. We offer an empty CID of our own
   * (we receive on our socket, which does not move); the server's CID then
   * travels in every record we send. Off by default: the CID is sent in the
   * clear, so it makes our traffic linkable across address changes (RFC 9146
   * §8), and it is of use only to devices behind NATs that rebind.
   */
  cid?: boolean;
}

interface ClientSession {
  peer: Peer;
  conn?: DtlsClientConnection;
  queue: Uint8Array[];
  waiters: { resolve: () => void; reject: (e: Error) => void }[];
  resolving: boolean;
  /** Its own connected socket (see maxConnectedSockets). */
  socket?: Socket;
  /** What the server sent before the handshake completed (for the error's diagnosis). */
  seen: HandshakeSeen;
  /** The failure to report instead of the connection's own error (ICMP, plain CoAP). */
  failure?: Error;
  probeTimer?: TimerHandle | undefined;
  established?: boolean;
}

/** What a client saw of the server during a handshake. */
interface HandshakeSeen {
  /** Datagrams received from the server. */
  datagrams: number;
  helloVerify: boolean;
  serverHello: boolean;
  /** ServerHelloDone records seen, each with a higher record sequence number than the last. */
  serverHelloDone: number;
  /** Record sequence number of the last ServerHelloDone counted (-1: none). */
  helloDoneSeq: number;
}

export interface DtlsSessionInfo {
  suite: string;
  suiteId: number;
  extendedMasterSecret: boolean;
  established: boolean;
  /** Certificate and raw-public-key modes: who the server proved to be (when it was verified). */
  server?: PeerAuth;
}

/** Why a DTLS handshake did not complete, as `DtlsClientTransport.describeStall` tells it. */
export interface StallDiagnosis {
  /** What happened, e.g. "stalled after the server's hello". */
  message: string;
  /** The likely cause and what to try. */
  hint: string;
}

export class DtlsClientTransport implements Transport {
  readonly scheme = 'coaps';
  readonly reliable = false;
  readonly maxMessageSize: number;
  private handlers?: TransportHandlers;
  private readonly sessions = new Map<string, ClientSession>();
  private readonly sockets = new Map<4 | 6, Socket>();
  private closed = false;
  private readonly keyLog;
  private readonly pending = new PendingSends();
  private idleTimer?: TimerHandle | undefined;
  private readonly time: Clock;
  /** The session of the last datagram received and its rinfo address/port (skips the key string). */
  private lastRecv?: ClientSession;
  private lastRecvAddress = '';
  private lastRecvPort = -1;
  /** Set while send() runs with reportErrors false: the datagram goes out without a completion callback. */
  private quietSend = false;
  /** Sessions holding a connected socket of their own. */
  private connectedSockets = 0;

  private constructor(
    private readonly options: DtlsClientOptions,
    socket: Socket,
    family: 4 | 6,
    /** Certificate credentials and trust, parsed by create(). */
    private readonly certs: CertOptions | undefined,
  ) {
    this.time = options.clock ?? realClock;
    this.sockets.set(family, socket);
    this.wire(socket);
    this.keyLog = createKeyLogger(options.keyLogFile);
    const mtu = options.mtu ?? (family === 6 ? 1280 : 576);
    // With a CID, each record carries the server's CID and the real content type: room for a 16-byte CID.
    this.maxMessageSize = maxPayload(mtu, family, options.cipherSuites) - (options.cid === true ? 17 : 0);
    const idle = options.idleTimeoutMs;
    if (idle !== undefined && idle > 0) {
      const every = Math.max(50, Math.min(idle / 2, 30_000));
      const tick = () => {
        if (this.closed) return;
        this.sweepIdle(idle);
        this.idleTimer = this.time.setTimer(tick, every, true);
      };
      this.idleTimer = this.time.setTimer(tick, every, true);
    }
  }

  static async create(options: DtlsClientOptions): Promise<DtlsClientTransport> {
    // Credentials are checked before a socket is bound (typed errors for unusable files).
    const certs = buildCertOptions(options, 'client');
    if (options.psk === undefined && certs === undefined)
      throw new InvalidArgumentError('DTLS client needs psk credentials or a certificate / ca / rpk');

    const bindAddr = options.bind?.address;
    const family: 4 | 6 = options.family ?? (bindAddr !== undefined && isIP(bindAddr) === 6 ? 6 : 4);
    const socket = await bindSocket(family === 6 ? 'udp6' : 'udp4', bindAddr, options.bind?.port ?? 0);
    return new DtlsClientTransport(options, socket, family, certs);
  }

  private wire(socket: Socket): void {
    if (this.options.unref) socket.unref();
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => this.onDatagram(msg, rinfo));
    socket.on('error', (err) => {
      if (!this.closed)
        this.handlers?.error?.(new NetworkError(`DTLS socket error: ${err.message}`, { cause: err }));
    });
  }

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  localAddress(): { address: string; port: number; family: AddressFamily } {
    const s = this.sockets.get(4) ?? this.sockets.get(6)!;
    const a = s.address();
    return { address: a.address, port: a.port, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4' };
  }

  private async socketFor(family: 4 | 6): Promise<Socket> {
    const s = this.sockets.get(family);
    if (s !== undefined) return s;
    const created = await bindSocket(family === 6 ? 'udp6' : 'udp4', undefined, 0);
    if (this.closed) {
      created.close();
      throw new ClosedError('transport closed');
    }
    const again = this.sockets.get(family);
    if (again !== undefined) {
      created.close();
      return again;
    }
    this.sockets.set(family, created);
    this.wire(created);
    return created;
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    let s = this.lastRecv;
    if (s === undefined || rinfo.port !== this.lastRecvPort || rinfo.address !== this.lastRecvAddress) {
      s = this.sessions.get(`${unmapAddress(rinfo.address)}%${rinfo.port}`);
      if (s === undefined) return;
      this.lastRecv = s;
      this.lastRecvAddress = rinfo.address;
      this.lastRecvPort = rinfo.port;
    }
    this.receive(s, msg);
  }

  private receive(s: ClientSession, msg: Buffer): void {
    const c = s.conn;
    if (c === undefined) return;
    if (c.state === 'handshaking' && this.inspect(s, c, msg)) return;
    c.handleDatagram(msg);
  }

  /**
   * Notes what the server sends during the handshake (for the diagnosis of a
   * failure); true when the datagram was consumed: a plain CoAP message
   * (first byte 0x40-0x7f, never a DTLS record) fails the handshake at once.
   */
  private inspect(s: ClientSession, c: DtlsClientConnection, msg: Buffer): boolean {
    const seen = s.seen;
    seen.datagrams++;
    if (msg.length >= 4 && (msg[0]! & 0xc0) === 0x40) {
      const where = formatAddress(s.peer.address, s.peer.port);
      s.failure = new NetworkError(
        `${where} answered in plain CoAP, not DTLS: that port speaks coap://, not coaps://`,
        { hint: `use coap://${where}/... (coaps:// needs a DTLS server; its default port is 5684)` },
      );
      c.fail(new DtlsError('the server answered in plain CoAP'), false);
      return true;
    }
    // Plaintext (epoch 0) handshake records: which messages came.
    let off = 0;
    while (off + 13 <= msg.length) {
      const len = (msg[off + 11]! << 8) | msg[off + 12]!;
      if (msg[off] === 22 && msg[off + 3] === 0 && msg[off + 4] === 0 && len >= 12 && off + 13 < msg.length) {
        const type = msg[off + 13];
        if (type === 3) seen.helloVerify = true;
        else if (type === 2) seen.serverHello = true;
        else if (type === 14) {
          // A retransmission carries a new record sequence number; a copy made by the
          // network (duplication) or a late one (reordering) does not count as a repeat.
          const seq = msg.readUIntBE(off + 5, 6);
          if (seq > seen.helloDoneSeq) {
            seen.helloDoneSeq = seq;
            seen.serverHelloDone++;
          }
        }
      }
      off += 13 + len;
    }
    // Each ServerHelloDone was answered with our Finished flight; a server that keeps
    // repeating its hello instead of answering did not accept that Finished.
    if (seen.serverHelloDone > FINISHED_IGNORED_REPEATS) {
      const d = diagnose(s.peer, seen);
      s.failure = new DtlsError(d.message, { hint: d.hint });
      c.fail(new DtlsError(d.message), false);
      return true;
    }
    return false;
  }

  /**
   * Why a handshake with `peer` is not complete, from what the server sent:
   * for an error message after a timeout (the handshake's own or the
   * request's). Undefined when no handshake with `peer` is in progress.
   */
  describeStall(peer: Peer): StallDiagnosis | undefined {
    const s = this.sessions.get(peer.key);
    if (s === undefined || s.conn?.state === 'established') return undefined;
    return diagnose(s.peer, s.seen);
  }

  /** The error a session failure is reported with. */
  private sessionError(s: ClientSession, error: DtlsError | undefined): Error {
    if (s.failure !== undefined) return s.failure;
    const where = formatAddress(s.peer.address, s.peer.port);
    if (error === undefined) return new DtlsError(`DTLS session with ${where} closed`);
    if (error instanceof DtlsHandshakeTimeoutError) {
      const d = diagnose(s.peer, s.seen);
      const e = new DtlsHandshakeTimeoutError(d.message, { cause: error, hint: d.hint });
      if (error.alert !== undefined) e.alert = error.alert;
      return e;
    }
    if (
      this.certs !== undefined &&
      !(error instanceof DtlsAlertError) &&
      error.hint === undefined &&
      (error.alert === 42 || error.alert === 43 || error.alert === 45 || error.alert === 48)
    ) {
      // We refused the server's certificate or key.
      error.hint =
        error.alert === 48
          ? "pass the CA that issued the server's certificate with --ca (library: the ca option)"
          : error.alert === 45
            ? "the server's certificate is out of its validity period (or this machine's clock is wrong)"
            : "the server's certificate or key is not acceptable: --trace shows what it sent";
    }
    if (error instanceof DtlsAlertError && error.hint === undefined && s.established !== true) {
      const a = error.alert;
      const certHint = this.certs !== undefined ? certificateAlertHint(a) : undefined;
      if (certHint !== undefined) error.hint = certHint;
      else if (a === 20 || a === 51 || a === 115 || a === 40) {
        error.hint =
          a === 40
            ? 'the server refused the handshake: check the PSK identity and key (--identity, --psk/--psk-hex/--psk-file) and that it supports a PSK cipher suite we offer'
            : 'the server did not accept our key: check the PSK identity and key (--identity, --psk/--psk-hex/--psk-file)';
      }
    }
    return error;
  }

  /** Forgets the receive cache (call whenever `sessions` changes). */
  private sessionsChanged(): void {
    this.lastRecv = undefined;
  }

  send(data: Uint8Array, peer: Peer, reportErrors = true): void {
    if (this.closed) {
      this.handlers?.peerError?.(peer, new ClosedError('DTLS transport closed'));
      return;
    }
    const s = this.session(peer);
    if (s.conn?.state === 'established') {
      this.quietSend = !reportErrors;
      try {
        s.conn.sendApplicationData(data);
      } catch (e) {
        this.handlers?.peerError?.(peer, e as Error);
      }
      this.quietSend = false;
      return;
    }
    if (s.queue.length >= QUEUE_LIMIT) s.queue.shift();
    s.queue.push(Buffer.from(data));
  }

  /** Resolves once a DTLS session with `peer` is established (starting a handshake if needed). */
  connect(peer: Peer): Promise<void> {
    if (this.closed) return Promise.reject(new ClosedError('DTLS transport closed'));
    const s = this.session(peer);
    if (s.conn?.state === 'established') return Promise.resolve();
    return new Promise((resolve, reject) => s.waiters.push({ resolve, reject }));
  }

  /** Negotiated parameters of the session with `peer`, if any. */
  sessionInfo(peer: Peer): DtlsSessionInfo | undefined {
    const c = this.sessions.get(peer.key)?.conn;
    if (c?.suite === undefined) return undefined;
    return {
      suite: c.suite.name,
      suiteId: c.suite.id,
      extendedMasterSecret: c.extendedMasterSecret,
      established: c.state === 'established',
      ...(c.auth !== undefined ? { server: c.auth } : {}),
    };
  }

  private session(peer: Peer): ClientSession {
    let s = this.sessions.get(peer.key);
    if (s === undefined || s.conn?.state === 'closed') {
      s = {
        peer,
        queue: [],
        waiters: [],
        resolving: true,
        seen: { datagrams: 0, helloVerify: false, serverHello: false, serverHelloDone: 0, helloDoneSeq: -1 },
      };
      this.sessions.set(peer.key, s);
      this.sessionsChanged();
      void this.startHandshake(s);
    }
    return s;
  }

  private async startHandshake(s: ClientSession): Promise<void> {
    const { peer } = s;
    let address = peer.address;
    let family: 4 | 6;
    try {
      if (isIP(address) === 0) {
        const r = await lookup(address).catch((e: Error) => {
          throw new DnsError(`cannot resolve ${address}: ${e.message}`, { cause: e });
        });
        address = r.address;
      }
      family = isIP(address) === 6 ? 6 : 4;
    } catch (e) {
      this.failSession(s, e as Error);
      return;
    }
    const port = peer.port;
    let socket: Socket;
    const own =
      this.options.bind?.port === undefined &&
      this.connectedSockets < (this.options.maxConnectedSockets ?? 64);
    try {
      if (own) {
        this.connectedSockets++;
        try {
          socket = await this.connectedSocket(family, address, port);
        } catch (e) {
          this.connectedSockets--;
          throw e;
        }
        if (this.sessions.get(peer.key) !== s || this.closed) {
          this.connectedSockets--;
          socket.close();
          return;
        }
        s.socket = socket;
        const ownSocket = socket;
        socket.on('message', (msg: Buffer) => this.receive(s, msg));
        socket.on('error', (err: NodeJS.ErrnoException) => this.onSessionSocketError(s, ownSocket, err));
      } else socket = await this.socketFor(family);
    } catch (e) {
      this.failSession(s, e as Error);
      return;
    }
    if (this.sessions.get(peer.key) !== s || this.closed) return;
    const mtu = this.options.mtu ?? (family === 6 ? 1280 : 576);
    const recvKey = `${address}%${port}`;
    // One completion callback per session (not a closure per datagram).
    const onSent = (err: Error | null) => {
      this.pending.done();
      if (err && !this.closed)
        this.handlers?.peerError?.(peer, new NetworkError(err.message, { cause: err }));
    };
    let conn: DtlsClientConnection;
    try {
      conn = new DtlsClientConnection(
        {
          mtu,
          ipOverhead: family === 6 ? 48 : 28,
          retransmitInitialMs: this.options.retransmitInitialMs ?? 1000,
          retransmitMaxMs: 60_000,
          clock: this.time,
          handshakeTimeoutMs: this.options.handshakeTimeoutMs ?? 30_000,
          keyLog: this.keyLog,
          peerLabel: recvKey,
          identity: this.options.psk !== undefined ? toBytes(this.options.psk.identity) : undefined,
          psk: this.options.psk !== undefined ? toBytes(this.options.psk.key) : undefined,
          certs: this.certs,
          cipherSuites: this.options.cipherSuites ?? [
            ...(this.certs !== undefined ? DEFAULT_CERT_CIPHER_SUITES : []),
            ...(this.options.psk !== undefined ? DEFAULT_CIPHER_SUITES : []),
          ],
          serverName: this.options.serverName ?? (isIP(peer.address) === 0 ? peer.address : undefined),
          expectedHost: this.options.serverName ?? peer.address,
          cid: this.options.cid === true ? Buffer.alloc(0) : undefined,
        },
        {
          sendDatagram: own
            ? (d) => {
                if (this.quietSend) {
                  socket.send(d);
                  return;
                }
                this.pending.add();
                socket.send(d, onSent);
              }
            : (d) => {
                if (this.quietSend) {
                  socket.send(d, port, address);
                  return;
                }
                this.pending.add();
                socket.send(d, port, address, onSent);
              },
          established: () => {
            if (s.probeTimer !== undefined) this.time.clearTimer(s.probeTimer);
            s.established = true;
            const queued = s.queue;
            s.queue = [];
            for (const d of queued) conn.sendApplicationData(d);
            for (const w of s.waiters.splice(0)) w.resolve();
          },
          data: (d) => this.handlers?.message(d, peer),
          closed: (error) => {
            if (this.sessions.get(peer.key) === s) this.sessions.delete(peer.key);
            if (recvKey !== peer.key && this.sessions.get(recvKey) === s) this.sessions.delete(recvKey);
            this.sessionsChanged();
            s.queue = [];
            this.releaseSocket(s);
            const report = !this.closed && this.handlers?.peerError !== undefined;
            if (s.waiters.length === 0 && !report) return; // clean close nobody waits for: no Error to build
            const err = this.sessionError(s, error);
            for (const w of s.waiters.splice(0)) w.reject(err);
            if (report) this.handlers?.peerError?.(peer, err);
          },
        },
      );
    } catch (e) {
      this.failSession(s, e as Error);
      return;
    }
    s.conn = conn;
    s.resolving = false;
    // Received datagrams are keyed by the numeric address.
    if (recvKey !== peer.key) this.sessions.set(recvKey, s);
    this.sessionsChanged();
    conn.start();
    if (this.options.probePlainCoap !== false) {
      // No answer to the ClientHello by its first retransmission: ask in plain CoAP.
      const probe = Buffer.from([0x40, 0x00, 0, 0]);
      s.probeTimer = this.time.setTimer(
        () => {
          s.probeTimer = undefined;
          if (s.seen.datagrams > 0 || conn.state !== 'handshaking' || this.closed) return;
          probe.writeUInt16BE(randomInt(0x10000), 2);
          if (own) socket.send(probe, () => {});
          else socket.send(probe, port, address, () => {});
        },
        this.options.retransmitInitialMs ?? 1000,
        true,
      );
    }
  }

  private connectedSocket(family: 4 | 6, address: string, port: number): Promise<Socket> {
    const bindAddr = this.options.bind?.address;
    const sameFamily = bindAddr !== undefined && (isIP(bindAddr) === 6 ? 6 : 4) === family;
    return bindSocket(family === 6 ? 'udp6' : 'udp4', sameFamily ? bindAddr : undefined, 0).then(
      (socket) =>
        new Promise<Socket>((resolve, reject) => {
          const onError = (err: Error) => {
            socket.close();
            reject(
              new NetworkError(`cannot reach ${formatAddress(address, port)}: ${err.message}`, {
                cause: err,
              }),
            );
          };
          socket.once('error', onError);
          socket.connect(port, address, () => {
            socket.off('error', onError);
            if (this.options.unref) socket.unref();
            resolve(socket);
          });
        }),
    );
  }

  /** ICMP errors on a session's connected socket fail that session at once. */
  private onSessionSocketError(s: ClientSession, socket: Socket, err: NodeJS.ErrnoException): void {
    if (this.closed || s.socket !== socket) return;
    const where = formatAddress(s.peer.address, s.peer.port);
    const refused = err.code === 'ECONNREFUSED';
    const unreachable = refused || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH';
    s.failure = new NetworkError(
      refused
        ? `connection refused (ICMP port unreachable) from ${where}: nothing listens on that port`
        : unreachable
          ? `host unreachable: ${where}`
          : `DTLS socket error with ${where}: ${err.message}`,
      {
        cause: err,
        hint: refused
          ? `is a coaps:// (DTLS) server running on that port?${s.peer.port === 5683 ? ' 5683 is the plain CoAP port; coaps:// uses 5684 by default' : ''}`
          : 'check the address and the route to it',
      },
    );
    const c = s.conn;
    if (c !== undefined && c.state !== 'closed') c.fail(new DtlsError(err.message), false);
  }

  /** Closes a session's own socket (once its last datagram, e.g. close_notify, has left). */
  private releaseSocket(s: ClientSession): void {
    if (s.probeTimer !== undefined) this.time.clearTimer(s.probeTimer);
    const socket = s.socket;
    if (socket === undefined) return;
    s.socket = undefined;
    this.connectedSockets--;
    setImmediate(() => {
      try {
        socket.close();
      } catch {
        // already closed
      }
    });
  }

  private failSession(s: ClientSession, err: Error): void {
    if (this.sessions.get(s.peer.key) === s) this.sessions.delete(s.peer.key);
    this.sessionsChanged();
    s.queue = [];
    for (const w of s.waiters.splice(0)) w.reject(err);
    if (!this.closed) this.handlers?.peerError?.(s.peer, err);
  }

  private sweepIdle(idleMs: number): void {
    const now = this.time.now();
    for (const s of new Set(this.sessions.values())) {
      if (s.conn?.state === 'established' && now - s.conn.lastActivity > idleMs) s.conn.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.time.clearTimer(this.idleTimer);
    this.idleTimer = undefined;
    for (const s of new Set(this.sessions.values())) {
      s.conn?.close();
      this.releaseSocket(s);
      for (const w of s.waiters.splice(0)) w.reject(new ClosedError('DTLS transport closed'));
    }
    this.sessions.clear();
    this.sessionsChanged();
    await this.pending.drained();
    await new Promise((r) => setImmediate(r));
    await Promise.all([...this.sockets.values()].map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets.clear();
  }
}

export interface DtlsServerTransportOptions extends DtlsCertificateOptions {
  host?: string;
  port?: number;
  /**
   * SO_REUSEPORT, as for UDP (`UdpTransportOptions.reusePort`): processes share the
   * port, each peer's datagrams reach one of them, whose DTLS sessions it holds.
   * Needs Node 22.12 or later.
   */
  reusePort?: boolean;
  /** PSK keys (PSK suites); a server needs psk, or cert + key / rpk (ECDHE_ECDSA suites), or both. */
  psk?:
    | PskCredentials
    | ((identity: string) => Uint8Array | string | undefined | Promise<Uint8Array | string | undefined>);
  identityHint?: string;
  cipherSuites?: number[];
  /**
   * Sessions held at once, established or handshaking. Default 10,000. When
   * full, a new handshake takes the slot of the oldest half-open one, or is
   * dropped if there is none.
   */
  maxSessions?: number;
  /**
   * Half-open handshakes (cookie verified, not finished) in all. Default 1000.
   * When full, a new verified ClientHello evicts the oldest half-open
   * handshake of the address that holds the most (dropped silently; its client
   * retransmits), so a flood of handshakes that never finish cannot lock
   * legitimate clients out: one with a single handshake in progress is only
   * evicted once every address is down to one.
   */
  maxHandshakes?: number;
  /**
   * Half-open handshakes per source address. Default 16. A verified
   * ClientHello from an address that has this many is dropped (reported on
   * `coapkit:dtls:handshake:error` with reason 'address-share'); other
   * addresses keep being served.
   */
  maxHandshakesPerAddress?: number;
  /**
   * A handshake that makes no progress (no complete handshake message from the
   * client, no new flight from us) for this long is dropped. Default 10,000 ms;
   * `handshakeTimeoutMs` still bounds the whole handshake.
   */
  halfOpenTimeoutMs?: number;
  /**
   * Largest handshake message accepted (its claimed length). Default 4096
   * bytes: PSK handshake messages are well under 1 KB. A longer one fails the
   * handshake with an illegal_parameter alert; a longer ClientHello is ignored.
   * Raise it only for certificate-based handshakes.
   */
  maxHandshakeMessageBytes?: number;
  /**
   * Bytes one handshake may hold for reassembly (fragments received out of
   * order or in pieces, counted as received plus 96 bytes per piece) and early
   * records. Default 8192. Over it the handshake fails with illegal_parameter.
   */
  maxHandshakeBufferBytes?: number;
  /**
   * Reassembly bytes all handshakes together may hold. Default 1 MiB. Over it
   * new fragments are dropped (a live peer retransmits them).
   */
  maxTotalHandshakeBufferBytes?: number;
  /**
   * Handshake rate limit. Each ClientHello that comes back with a valid
   * cookie and starts a handshake is charged by what the handshake costs the
   * server, in PSK handshakes (HANDSHAKE_WEIGHTS: PSK 1, ECDHE_PSK 1.5,
   * certificate or raw public key 2, 4 when the client's is verified too), to
   * a token bucket of its source address (IPv6: its /64) and to a global one.
   * Defaults: 10 a second per address with a burst of 60, 1500 a second in
   * all, 10,000 addresses tracked. Over either bucket the ClientHello is
   * dropped (its client retransmits), counted in `server.stats.rateLimited`
   * and reported on `coapkit:dtls:handshake:error` with reason 'rate-limited'.
   * `false`: no limit.
   */
  handshakeRate?: HandshakeRateOptions | false;
  /** Established sessions idle this long are closed (close_notify). Default 10 minutes. */
  idleTimeoutMs?: number;
  mtu?: number;
  keyLogFile?: KeyLogSink;
  /** Upper bound of a whole handshake. Default 30,000 ms. */
  handshakeTimeoutMs?: number;
  retransmitInitialMs?: number;
  /**
   * DTLS Connection ID (RFC 9146). A client that offers one gets a random
   * 8-byte CID (default); its session then survives the client's address or
   * port changing (a NAT rebinding): a record with its CID that authenticates
   * and is newer than any seen moves the session to the new address, and
   * until that address is verified we send it at most three times the bytes
   * it sent us. `{ length, prefix }`: CID length 0..255 (0: we send the
   * client's CID but want none back) and fixed leading bytes (a node id).
   * `false`: ignore offers.
   */
  cid?:
    | {
        /** Bytes of the CIDs handed out, 0..255 (default 8). */
        length?: number;
        /** Their fixed first bytes (a cluster node id); at least 4 random bytes must remain. */
        prefix?: Uint8Array;
      }
    | false;
  /** A tls12_cid record whose CID is none of ours (a cluster node forwards it to its owner). */
  foreignCid?: (datagram: Buffer, address: string, port: number) => void;
  /**
   * Sends a datagram of a session whose records reach us through another
   * cluster node (`via`, as given to `server.handleDatagram`): back through it.
   */
  sendVia?: (datagram: Buffer, address: string, port: number, via: unknown) => void;
  /**
   * The source of time for handshake retransmission and timeouts, the
   * plain-CoAP probe and idle expiry (default the real clock; tests pass a
   * VirtualClock).
   */
  clock?: Clock;
}

export class DtlsServerTransport implements Transport {
  readonly scheme = 'coaps';
  readonly reliable = false;
  readonly maxMessageSize: number;
  private handlers?: TransportHandlers;
  private closed = false;
  /** The DTLS endpoint (sessions, stats); exposed for tests and diagnostics. */
  readonly server: DtlsServer;

  private constructor(
    private readonly socket: Socket,
    options: DtlsServerTransportOptions,
    /** Certificate credentials and trust, parsed by create(). */
    private readonly certs: CertOptions | undefined,
  ) {
    const psk = options.psk;
    const pskLookup: PskLookup | undefined =
      psk === undefined
        ? undefined
        : typeof psk === 'function'
          ? (identity) => {
              const r = psk(identity);
              const conv = (v: Uint8Array | string | undefined) => (v === undefined ? undefined : toBytes(v));
              return r instanceof Promise ? r.then(conv) : conv(r);
            }
          : (identity) =>
              identity === toBytes(psk.identity).toString('utf8') ? toBytes(psk.key) : undefined;
    this.pskLookup = pskLookup;
    this.trustAnchors = trustAnchorsDigest(certs);
    const family = socket.address().family === 'IPv6' ? 6 : 4;
    const sent = () => this.pending.done();
    let lastV4 = '';
    let lastMapped = '';
    const v6 = family === 6;
    this.v6 = v6;
    const mtu = options.mtu ?? (family === 6 ? 1280 : 576);
    this.maxMessageSize = maxPayload(mtu, family, options.cipherSuites);
    this.server = new DtlsServer(
      {
        pskLookup,
        certs,
        identityHint:
          options.identityHint !== undefined ? Buffer.from(options.identityHint, 'utf8') : undefined,
        cipherSuites: options.cipherSuites,
        maxSessions: options.maxSessions,
        maxHandshakes: options.maxHandshakes,
        maxHandshakesPerAddress: options.maxHandshakesPerAddress,
        halfOpenTimeoutMs: options.halfOpenTimeoutMs,
        maxHandshakeMessageBytes: options.maxHandshakeMessageBytes,
        maxHandshakeBufferBytes: options.maxHandshakeBufferBytes,
        maxTotalHandshakeBufferBytes: options.maxTotalHandshakeBufferBytes,
        handshakeRate: options.handshakeRate,
        cid: options.cid,
        foreignCid: options.foreignCid,
        idleTimeoutMs: options.idleTimeoutMs,
        mtu: options.mtu,
        handshakeTimeoutMs: options.handshakeTimeoutMs,
        clock: options.clock,
        retransmitInitialMs: options.retransmitInitialMs,
        keyLog: createKeyLogger(options.keyLogFile),
      },
      {
        send: (d, address, port, via) => {
          if (this.closed && !this.closing) return;
          if (via !== undefined) {
            options.sendVia?.(d, address, port, via);
            return;
          }
          // A dual-stack (udp6) socket reaches IPv4 peers through their v4-mapped address.
          let to = address;
          if (v6 && isIP(address) === 4) {
            if (address !== lastV4) {
              lastV4 = address;
              lastMapped = `::ffff:${address}`;
            }
            to = lastMapped;
          }
          // Sends are synchronous (literal lookup): only close() waits for its close_notify alerts.
          if (!this.closing) {
            socket.send(d, port, to);
            return;
          }
          this.pending.add();
          socket.send(d, port, to, sent);
        },
        // The Peer of a session is created on its first datagram and kept on the
        // connection (no map lookups per datagram; idle sessions stay small).
        established: () => {},
        data: (d, conn, address, port) => {
          let peer = conn.tag as Peer | undefined;
          if (peer === undefined) {
            peer = makePeer(address, port, conn.auth ?? conn.identity);
            conn.tag = peer;
          }
          this.lastConn = conn;
          this.handlers?.message(d, peer);
        },
        closed: (conn, address, port, error) => {
          if (error === undefined || this.closed) return;
          const peer = (conn.tag as Peer | undefined) ?? makePeer(address, port, conn.auth ?? conn.identity);
          this.handlers?.peerError?.(peer, error);
        },
      },
    );
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) =>
      this.server.handleDatagram(msg, unmapAddress(rinfo.address), rinfo.port),
    );
    socket.on('error', (err) => {
      if (!this.closed)
        this.handlers?.error?.(new NetworkError(`DTLS socket error: ${err.message}`, { cause: err }));
    });
  }

  private closing = false;
  private readonly pending = new PendingSends();
  /** The session that delivered the last datagram: a response to it needs no session lookup. */
  private lastConn?: DtlsServerConnection;
  /** The socket is udp6 (dual stack): IPv4 peers are reached through their v4-mapped address. */
  private readonly v6: boolean;

  static async create(options: DtlsServerTransportOptions): Promise<DtlsServerTransport> {
    // Credentials are checked before a socket is bound (typed errors for unusable files).
    const certs = buildCertOptions(options, 'server');
    if (options.psk === undefined && certs === undefined)
      throw new InvalidArgumentError('DTLS server needs psk keys or cert + key / rpk');
    const host = options.host ?? '::';
    const type = isIP(host) === 4 ? 'udp4' : 'udp6';
    const socket = await bindSocket(type, host, options.port ?? 5684, options.reusePort);
    try {
      return new DtlsServerTransport(socket, options, certs);
    } catch (e) {
      socket.close(); // bad options: do not leak the bound socket
      throw e;
    }
  }

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  /** Sends a datagram as it is from this transport's socket (a cluster node relaying another node's answer). */
  sendRaw(data: Uint8Array, address: string, port: number): void {
    if (this.closed) return;
    this.socket.send(data, port, this.v6 && isIP(address) === 4 ? `::ffff:${address}` : address);
  }

  localAddress(): { address: string; port: number; family: AddressFamily } {
    const a = this.socket.address();
    return { address: a.address, port: a.port, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4' };
  }

  send(data: Uint8Array, peer: Peer): void {
    if (this.closed) return;
    const c = this.lastConn;
    // Its Peer identifies the session; an established session is the one the server holds for peer.key.
    if (c !== undefined && c.tag === peer && c.state === 'established') {
      try {
        c.sendApplicationData(data);
      } catch (e) {
        this.handlers?.peerError?.(peer, e as Error);
      }
      return;
    }
    let sent: boolean;
    try {
      sent = this.server.send(peer.key, data);
    } catch (e) {
      this.handlers?.peerError?.(peer, e as Error);
      return;
    }
    if (!sent) {
      this.handlers?.peerError?.(
        peer,
        new DtlsError(`no DTLS session with ${formatAddress(peer.address, peer.port)}`),
      );
    }
  }

  private readonly pskLookup: PskLookup | undefined;
  /** `trustAnchorsDigest(certs)`: what certificate sessions are exported with and checked against on import. */
  private readonly trustAnchors: string | undefined;

  /**
   * The established sessions, sealed with `key` (AES-256-GCM under a key
   * derived from it, at least 16 bytes; nothing in the clear), for
   * `importSessions` in the next process: a graceful restart during which
   * clients keep their sessions. Each session's write sequence number goes
   * out with `writeSequenceMargin` (default 65536) added, so the importer
   * never reuses a nonce of records sent after the export. The exported
   * sessions leave this transport without close_notify, so that `close()`
   * does not end them for the clients (`keep: true` keeps serving them: then
   * fewer than the margin records may be sent to each before the importer
   * takes over). A session whose client has not yet sent a record after the
   * handshake (it may still need the server's Finished) is not exported.
   */
  exportSessions(key: Uint8Array | string, options: SessionExportOptions = {}): Buffer {
    const margin = options.writeSequenceMargin ?? DEFAULT_WRITE_SEQUENCE_MARGIN;
    if (!Number.isSafeInteger(margin) || margin < 0)
      throw new InvalidArgumentError('writeSequenceMargin must be an integer >= 0');
    const exported: DtlsServerConnection[] = [];
    const entries: SessionEntry[] = [];
    for (const c of this.server.establishedSessions()) {
      const snapshot = c.snapshotSession(margin);
      if (snapshot === undefined) continue;
      exported.push(c);
      const auth =
        (c.tag as Peer | undefined)?.auth ??
        (c.identity !== undefined ? { mode: 'psk' as const, identity: c.identity } : undefined);
      entries.push({
        address: c.address,
        port: c.port,
        auth,
        snapshot,
        ...(auth?.mode === 'x509' ? { trust: this.trustAnchors } : {}),
      });
    }
    let sealed: Buffer;
    try {
      sealed = sealSessions(entries, key);
    } finally {
      for (const e of entries) e.snapshot.keys.fill(0);
    }
    if (options.keep !== true) {
      this.lastConn = undefined;
      for (const c of exported) this.server.detach(c);
    }
    return sealed;
  }

  /**
   * Takes over the sessions `exportSessions` sealed: their clients go on
   * sending records with the same keys and are answered without a handshake.
   * All or nothing: a wrong key, damaged or foreign data, or more sessions
   * than `maxSessions` allows throw DtlsSessionStateError and import none. A
   * peer that has a session here already keeps it, and a PSK session whose
   * identity has no key any more (`psk` lookup) is dropped: both are counted
   * in `skipped`. Import a sealed state once (delete it after importing): a
   * second process taking over the same sessions would reuse the sequence
   * numbers, and with them the nonces, of the first.
   */
  async importSessions(buf: Uint8Array, key: Uint8Array | string): Promise<SessionImportResult> {
    if (this.closed) throw new ClosedError('DTLS transport is closed');
    const entries = openSessions(buf, key, this.server.maxSessions);
    const keep: SessionEntry[] = [];
    let revoked = 0;
    try {
      for (const e of entries) {
        // A certificate or raw-public-key session is kept only while this configuration still
        // trusts its peer (the same trust anchors; its key still in the rpk trust list).
        if (e.auth !== undefined && e.auth.mode !== 'psk') {
          if (stillTrusted(e, this.certs, this.trustAnchors)) keep.push(e);
          else revoked++;
          continue;
        }
        const identity = e.auth === undefined ? e.snapshot.identity : e.auth.identity;
        // A synchronous lookup (the usual case) costs no microtask per session.
        // A PSK session is kept only while its identity still has a key (none when PSK is off).
        const found =
          identity === undefined ? true : this.pskLookup === undefined ? undefined : this.pskLookup(identity);
        if ((found instanceof Promise ? await found : found) === undefined) {
          revoked++;
          continue;
        }
        keep.push(e);
      }
      if (this.closed) throw new ClosedError('DTLS transport is closed');
      let added: DtlsServerConnection[];
      let skipped: number;
      try {
        ({ added, skipped } = this.server.adopt(keep));
      } catch (err) {
        if (!(err instanceof DtlsError)) throw err;
        const full = /maxSessions/.test(err.message);
        throw new DtlsSessionStateError(full ? 'full' : 'corrupt', `DTLS session state: ${err.message}`, {
          cause: err,
        });
      }
      const auth = new Map(keep.map((e) => [`${e.address}%${e.port}`, e.auth]));
      for (const conn of added)
        conn.tag = makePeer(conn.address, conn.port, auth.get(conn.peerLabel) ?? conn.identity);
      return { imported: added.length, skipped: skipped + revoked };
    } finally {
      for (const e of entries) e.snapshot.keys.fill(0);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    this.closed = true;
    this.lastConn = undefined;
    this.server.close();
    this.closing = false;
    await this.pending.drained();
    await new Promise<void>((r) => this.socket.close(() => r()));
  }
}

/** The likely cause of a handshake that did not complete, from what the server sent. */
function diagnose(peer: Peer, seen: HandshakeSeen): { message: string; hint: string } {
  const where = formatAddress(peer.address, peer.port);
  if (seen.serverHello) {
    const repeats = seen.serverHelloDone - 1;
    return {
      message: `DTLS handshake with ${where} stalled after the server's hello: the server never sent its Finished${repeats > 0 ? ` (it repeated its hello ${repeats} time${repeats === 1 ? '' : 's'} instead)` : ''}`,
      hint: 'the server did not accept our Finished, which happens when the key does not match: check the PSK identity and key (--identity, --psk/--psk-hex/--psk-file). Some servers (libcoap) drop such a handshake without an alert',
    };
  }
  if (seen.helloVerify) {
    return {
      message: `DTLS handshake with ${where} stalled after the server's cookie (HelloVerifyRequest): no ServerHello`,
      hint: 'the server answers but does not go on: it may support none of the offered cipher suites, or be at its handshake limit',
    };
  }
  if (seen.datagrams > 0) {
    return {
      message: `DTLS handshake with ${where} failed: the server sent ${seen.datagrams} datagram${seen.datagrams === 1 ? '' : 's'} that are not DTLS handshake messages`,
      hint: 'is a coaps:// (DTLS) server running on that port?',
    };
  }
  return {
    message: `no answer from ${where} to the DTLS handshake`,
    hint:
      peer.port === 5683
        ? `5683 is the plain CoAP port: use coap://${where}/... (coaps:// uses 5684 by default)`
        : 'is a coaps:// (DTLS) server running on that port? (a plain CoAP server ignores DTLS: then use coap://)',
  };
}
