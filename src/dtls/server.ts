/**
 * DTLS 1.2 PSK server: the per-peer handshake (`DtlsServerConnection`) and the
 * endpoint logic (`DtlsServer`) that demultiplexes datagrams by peer, answers
 * ClientHellos statelessly with a HelloVerifyRequest carrying an HMAC cookie
 * (RFC 6347 §4.2.1: no per-peer state before a valid cookie; the cookie secret
 * rotates), enforces session / half-open handshake limits, evicts idle
 * sessions, and lets a client that lost its session restart from epoch 0.
 *
 * Half-open handshakes (cookie verified, not finished) are bounded globally
 * (maxHandshakes) and per source address (maxHandshakesPerAddress), expire
 * when they make no progress (halfOpenTimeoutMs), and hold reassembly memory
 * by the bytes received, within a per-handshake and a global byte budget.
 * When the table is full, a new verified ClientHello evicts the oldest
 * half-open handshake. At most one ClientHello per datagram is looked at.
 * A verified ClientHello is also charged to the handshake rate limit
 * (handshake-rate.ts: token buckets per address and global, weighted by the
 * handshake's cost) before it touches anything; over it, it is dropped.
 */
import { Buffer } from 'node:buffer';
import { createHmac, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Clock, realClock, type TimerHandle } from '../util/clock.js';
import { InvalidArgumentError } from '../util/errors.js';
import { Groups } from '../util/keyed.js';
import {
  AlertDescription,
  type ConnectionOptions,
  type ConnectionSink,
  DtlsConnection,
  type FlightItem,
  type SessionSnapshot,
} from './connection.js';
import {
  CERT_TYPE_ECDSA_SIGN,
  type CertOptions,
  type DtlsPeerAuth,
  ecdsaSign,
  ecdsaVerify,
  peerPublicKey,
  SIG_ECDSA_SHA256,
  verifyRawPublicKey,
  verifyX509Chain,
} from './crypto/certs.js';
import { type EphemeralKey, generateEphemeral, SUPPORTED_GROUPS } from './crypto/ecdhe.js';
import { keyBlockBytes, masterSecret, pskPremasterSecret } from './crypto/keys.js';
import {
  CIPHER_SUITES,
  type CipherSuiteInfo,
  DEFAULT_CERT_CIPHER_SUITES,
  DEFAULT_CIPHER_SUITES,
} from './crypto/suites.js';
import {
  type HandshakeRefusal,
  handshakeErrorChannel,
  handshakeErrorEvent,
  handshakeStartChannel,
  recordEvent,
  recordReceivedChannel,
  recordSentChannel,
} from './diag.js';
import { alertError, DtlsError } from './errors.js';
import { type CertMode, certServerHelloExtensions, negotiateCertMode } from './handshake/cert-extensions.js';
import { answerCid, CONNECTION_ID_EXTENSION, type ServerCidPolicy } from './handshake/cid-ext.js';
import { type HandshakeMessage, parseHandshakeFragments, ReassemblyBudget } from './handshake/fragment.js';
import {
  type ClientHello,
  decodeCertificate,
  decodeCertificateVerify,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeEcdhClientKeyExchange,
  decodeEcPointFormats,
  decodeFinished,
  decodeSupportedGroups,
  EMPTY_RENEGOTIATION_INFO_SCSV,
  type Extension,
  ExtensionType,
  encodeCertificate,
  encodeCertificateRequest,
  encodeEcdhParams,
  encodeEcdsaServerKeyExchange,
  encodeServerHello,
  encodeServerKeyExchange,
  findExtension,
  HandshakeType,
} from './handshake/messages.js';
import { HANDSHAKE_WEIGHTS, HandshakeRateLimiter, type HandshakeRateOptions } from './handshake-rate.js';
import type { KeyLogger } from './keylog.js';
import { cidRecordAt, cidRecordEnd } from './record/cid.js';
import { ContentType, type DtlsRecord, RECORD_HEADER_LENGTH, recordAt, recordEnd } from './record/record.js';

export type PskLookup = (identity: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

export interface ServerConnectionOptions extends ConnectionOptions {
  /** PSK suites are chosen only with a lookup. */
  pskLookup?: PskLookup | undefined;
  /** Certificate / raw public key credentials and trust (ECDHE_ECDSA suites). */
  certs?: CertOptions | undefined;
  identityHint?: Buffer | undefined;
  cipherSuites: readonly number[];
  /** RFC 9146: answer a client's connection_id offer with CIDs made this way (undefined: ignore offers). */
  cid?: ServerCidPolicy | undefined;
}

type ServerState = 'wait_cert' | 'wait_cke' | 'wait_cv' | 'wait_finished' | 'done';

/** Server connections report to their DtlsServer directly (no per-connection sink object). */
const NO_SINK: ConnectionSink = { sendDatagram() {}, established() {}, data() {}, closed() {} };

/** Bytes kept after the key block: the client random (32) and our Finished verify_data (12). */
const KEPT_EXTRA = 32 + 12;

export class DtlsServerConnection extends DtlsConnection {
  readonly role = 'server' as const;
  private hsState: ServerState = 'wait_cke';
  private ephemeral?: EphemeralKey;
  private master?: Buffer;
  /** Certificate mode: the type the client's Certificate has, and its verified public key. */
  // Certificate-mode handshake state, declared (no slot) so that PSK sessions do not carry it.
  declare private clientCertType?: 'x509' | 'rpk';
  declare private peerKey?: KeyObject;
  /**
   * message_seq of our Finished while we still answer a retransmitted client
   * flight by resending ChangeCipherSpec + Finished (RFC 6347 §4.2.4); -1 once the
   * client proved it got them (it sent application data). The flight is rebuilt
   * from the verify_data kept after the key block, so nothing else is retained.
   */
  private finishedSeq = -1;
  /** Free slot for the transport (coapkit's transport keeps the session's Peer object here). */
  tag: unknown;
  /**
   * RFC 9146 §6: bytes we may still send to the address the session moved to
   * before that path counts as verified (3x what authenticated records brought
   * from it); -1 once verified (and for a session that never moved).
   */
  pathCredit = -1;
  /** A datagram went to the new address since the move (see `onAuthenticated`). */
  pathSent = false;
  /** Former keys ("address%port") the session is still reachable by through `DtlsServer.send`. */
  aliases?: string[];
  /** The cluster node its records come through (forwarded, RFC 9146 CID routing); undefined: directly. */
  via: unknown;

  constructor(
    private readonly endpoint: DtlsServer,
    private readonly sopts: ServerConnectionOptions,
    public address: string,
    public port: number,
    key: string,
  ) {
    super(sopts, NO_SINK, key);
  }

  protected override onPathChange(address: string, port: number, via: unknown): void {
    this.endpoint.connMoved(this, address, port, via);
    this.pathCredit = 0;
    this.pathSent = false;
  }

  protected override onAuthenticated(length: number): void {
    if (this.pathCredit < 0) return;
    // The peer answered from the new address after we sent there: the path counts as verified.
    if (this.pathSent) this.pathCredit = -1;
    else this.pathCredit += 3 * (length + RECORD_HEADER_LENGTH + (this.cidReceive?.length ?? 0));
  }

  protected override output(datagram: Buffer): void {
    this.endpoint.connOutput(this, datagram);
  }
  protected override notifyEstablished(): void {
    this.endpoint.connEstablished(this);
  }
  protected override notifyData(data: Buffer): void {
    this.endpoint.connData(this, data);
  }
  protected override notifyClosed(error?: DtlsError): void {
    this.endpoint.connClosed(this, error);
  }

  /**
   * Starts the handshake from a cookie-verified ClientHello. The server mirrors
   * the ClientHello's message_seq and continues the client's record sequence
   * number in epoch 0 (as OpenSSL does after a stateless cookie exchange).
   * `negotiation`: `negotiate(ch, …)` of this connection's options, done by the
   * server before the rate limit (undefined: nothing in common).
   */
  start(
    ch: ClientHello,
    chBody: Buffer,
    messageSeq: number,
    recordSeq: number,
    negotiation: Negotiation | undefined,
  ): void {
    if (handshakeStartChannel.hasSubscribers) {
      handshakeStartChannel.publish({ peer: this.peerLabel, role: this.role });
    }
    this.setInitialWriteSeq(recordSeq + 1);
    this.nextSendSeq = messageSeq;
    this.reassembler.reset(messageSeq + 1);
    this.clientRandom = Buffer.from(ch.random);
    this.transcript.add(HandshakeType.clientHello, messageSeq, chBody);

    // DTLS versions count down (0xFEFF = 1.0, 0xFEFD = 1.2); a higher number means only DTLS 1.0.
    if (ch.version > 0xfefd)
      throw alertError(AlertDescription.protocolVersion, 'client does not support DTLS 1.2');
    if (!ch.compressionMethods.includes(0))
      throw alertError(AlertDescription.handshakeFailure, 'no null compression');

    if (negotiation === undefined)
      throw alertError(AlertDescription.handshakeFailure, 'no common cipher suite');
    const { suite, group, pointFormats, certMode } = negotiation;
    this.suite = suite;

    const reneg = findExtension(ch.extensions, ExtensionType.renegotiationInfo);
    if (reneg !== undefined && !(reneg.data.length === 1 && reneg.data[0] === 0)) {
      throw alertError(AlertDescription.handshakeFailure, 'bad renegotiation_info');
    }
    const secureReneg = reneg !== undefined || ch.cipherSuites.includes(EMPTY_RENEGOTIATION_INFO_SCSV);
    const emsExt = findExtension(ch.extensions, ExtensionType.extendedMasterSecret);
    this.extendedMasterSecret = emsExt !== undefined;

    const exts: Extension[] = [];
    if (secureReneg) exts.push({ type: ExtensionType.renegotiationInfo, data: Buffer.from([0]) });
    if (this.extendedMasterSecret)
      exts.push({ type: ExtensionType.extendedMasterSecret, data: Buffer.alloc(0) });
    if (suite.keyExchange !== 'psk' && pointFormats !== undefined) {
      exts.push({ type: ExtensionType.ecPointFormats, data: Buffer.from([1, 0]) });
    }
    const cert = suite.keyExchange === 'ecdhe_ecdsa' ? certMode : undefined;
    if (cert !== undefined) exts.push(...certServerHelloExtensions(cert));
    const policy = this.sopts.cid;
    if (policy !== undefined) {
      const cid = answerCid(findExtension(ch.extensions, CONNECTION_ID_EXTENSION), policy, (c) =>
        this.endpoint.cidTaken(c),
      );
      if (cid !== undefined) {
        exts.push(cid.extension);
        this.useCid(cid.agreement);
        this.endpoint.connCid(this);
      }
    }
    this.serverRandom = randomBytes(32);
    const flight = [
      this.message(
        HandshakeType.serverHello,
        encodeServerHello({
          version: 0xfefd,
          random: this.serverRandom,
          sessionId: Buffer.alloc(0),
          cipherSuite: suite.id,
          compressionMethod: 0,
          extensions: exts,
        }),
      ),
    ];
    const hint = this.sopts.identityHint ?? Buffer.alloc(0);
    if (cert !== undefined) {
      const own = cert.own;
      flight.push(this.message(HandshakeType.certificate, encodeCertificate(own.type, own.chain, own.spki)));
      this.ephemeral = generateEphemeral(group!);
      const params = encodeEcdhParams(group!, this.ephemeral.publicKey);
      const signature = ecdsaSign(own.key, Buffer.concat([this.clientRandom, this.serverRandom, params]));
      flight.push(
        this.message(
          HandshakeType.serverKeyExchange,
          encodeEcdsaServerKeyExchange(params, SIG_ECDSA_SHA256, signature),
        ),
      );
      if (cert.clientType !== undefined) {
        this.clientCertType = cert.clientType;
        flight.push(
          this.message(
            HandshakeType.certificateRequest,
            encodeCertificateRequest({
              certificateTypes: [CERT_TYPE_ECDSA_SIGN],
              signatureSchemes: [SIG_ECDSA_SHA256],
              // RFC 5246 §7.4.4: the CAs we accept, so a client with several certificates can choose.
              authorities: cert.clientType === 'x509' ? (this.sopts.certs?.trust.caNames ?? []) : [],
            }),
          ),
        );
        this.hsState = 'wait_cert';
      }
    } else if (suite.keyExchange === 'ecdhe_psk') {
      this.ephemeral = generateEphemeral(group!);
      flight.push(
        this.message(
          HandshakeType.serverKeyExchange,
          encodeServerKeyExchange({
            identityHint: hint,
            ecdhe: { group: group!, publicKey: this.ephemeral.publicKey },
          }),
        ),
      );
    } else if (hint.length > 0) {
      flight.push(
        this.message(HandshakeType.serverKeyExchange, encodeServerKeyExchange({ identityHint: hint })),
      );
    }
    flight.push(this.message(HandshakeType.serverHelloDone, Buffer.alloc(0)));
    this.sendFlight(flight);
  }

  protected handleMessage(m: HandshakeMessage): void | Promise<void> {
    if (this.hsState === 'wait_cert' && m.msgType === HandshakeType.certificate) return this.onCertificate(m);
    if (this.hsState === 'wait_cke' && m.msgType === HandshakeType.clientKeyExchange)
      return this.suite!.keyExchange === 'ecdhe_ecdsa'
        ? this.onEcdhClientKeyExchange(m)
        : this.onClientKeyExchange(m);
    if (this.hsState === 'wait_cv' && m.msgType === HandshakeType.certificateVerify)
      return this.onCertificateVerify(m);
    if (this.hsState === 'wait_finished' && m.msgType === HandshakeType.finished) return this.onFinished(m);
    throw this.unexpected(m);
  }

  /** The client's Certificate (we sent a CertificateRequest): verify it now, its signature comes in CertificateVerify. */
  private onCertificate(m: HandshakeMessage): void {
    const certs = this.sopts.certs!;
    const list = decodeCertificate(m.body, this.clientCertType ?? 'x509');
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.hsState = 'wait_cke';
    if (list.length === 0) {
      if (certs.trust.verifyPeer)
        throw alertError(
          AlertDescription.handshakeFailure,
          'the client sent no certificate (one is required)',
        );
      return;
    }
    // We only ask for a type we can verify: a certificate that is sent must be valid.
    const auth =
      this.clientCertType === 'rpk'
        ? verifyRawPublicKey(list[0]!, certs.trust, 'client')
        : verifyX509Chain(list, certs.trust, 'client');
    this.offeredIdentity = auth?.identity;
    this.pendingAuth = auth;
    try {
      this.peerKey = peerPublicKey(this.clientCertType ?? 'x509', list[0]!);
    } catch (cause) {
      throw alertError(
        AlertDescription.badCertificate,
        `bad client certificate: ${(cause as Error).message}`,
      );
    }
  }

  declare private pendingAuth?: DtlsPeerAuth | undefined;

  /** ECDHE_ECDSA ClientKeyExchange: the client's ephemeral point; premaster = the ECDH shared secret (RFC 8422 §5.10). */
  private onEcdhClientKeyExchange(m: HandshakeMessage): void {
    const suite = this.suite!;
    const point = decodeEcdhClientKeyExchange(m.body);
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    const sessionHash = this.extendedMasterSecret ? this.transcript.digest(suite.prfHash) : undefined;
    const premaster = this.ephemeral!.computeSecret(point);
    const master = masterSecret(suite, premaster, this.clientRandom!, this.serverRandom!, sessionHash);
    premaster.fill(0);
    this.master = master;
    this.logKeys(master);
    this.hsState = this.peerKey !== undefined ? 'wait_cv' : 'wait_finished';
    if (this.peerKey === undefined) this.authenticated(undefined);
    const keys = keyBlockBytes(suite, master, this.clientRandom!, this.serverRandom!, KEPT_EXTRA);
    keys.set(this.clientRandom!, keys.length - KEPT_EXTRA);
    this.installKeys(suite, keys);
  }

  /** CertificateVerify: the client signs every handshake message before it (RFC 5246 §7.4.8). */
  private onCertificateVerify(m: HandshakeMessage): void {
    const cv = decodeCertificateVerify(m.body);
    if (cv.scheme !== SIG_ECDSA_SHA256)
      throw alertError(
        AlertDescription.illegalParameter,
        `unsupported CertificateVerify algorithm 0x${cv.scheme.toString(16)}`,
      );
    if (!ecdsaVerify(this.peerKey!, this.transcript.bytes(), cv.signature))
      throw alertError(
        AlertDescription.decryptError,
        'client CertificateVerify signature does not verify (key does not match its certificate?)',
      );
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.authenticated(this.pendingAuth);
    this.hsState = 'wait_finished';
  }

  /** Certificate mode: records who the client proved to be (none: no client authentication). */
  private authenticated(auth: DtlsPeerAuth | undefined): void {
    if (auth === undefined) return;
    this.auth = auth;
    this.identity = auth.identity;
  }

  private onClientKeyExchange(m: HandshakeMessage): void | Promise<void> {
    const suite = this.suite!;
    const cke = decodeClientKeyExchange(m.body, suite.keyExchange === 'ecdhe_psk');
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    // Session hash for RFC 7627 covers the transcript up to and including ClientKeyExchange.
    const sessionHash = this.extendedMasterSecret ? this.transcript.digest(suite.prfHash) : undefined;
    const identity = cke.identity.toString('utf8');
    this.offeredIdentity = identity;
    const otherSecret = this.ephemeral ? this.ephemeral.computeSecret(cke.ecdhePublic!) : undefined;
    const finishKeys = (psk: Uint8Array | undefined): void => {
      if (psk === undefined || psk.length === 0) {
        throw alertError(AlertDescription.unknownPskIdentity, `unknown PSK identity "${identity}"`);
      }
      this.identity = identity;
      const master = masterSecret(
        suite,
        pskPremasterSecret(psk, otherSecret),
        this.clientRandom!,
        this.serverRandom!,
        sessionHash,
      );
      this.master = master;
      this.logKeys(master);
      this.hsState = 'wait_finished';
      const keys = keyBlockBytes(suite, master, this.clientRandom!, this.serverRandom!, KEPT_EXTRA);
      keys.set(this.clientRandom!, keys.length - KEPT_EXTRA);
      this.installKeys(suite, keys);
    };
    let psk: ReturnType<PskLookup>;
    try {
      psk = this.sopts.pskLookup!(identity);
    } catch (cause) {
      throw alertError(AlertDescription.internalError, `PSK lookup failed: ${(cause as Error).message}`);
    }
    if (psk instanceof Promise) return psk.then(finishKeys);
    finishKeys(psk);
  }

  private onFinished(m: HandshakeMessage): void {
    const master = this.master!;
    if (!this.peerCcsReceived) throw this.unexpected(m);
    const got = decodeFinished(m.body);
    const expected = this.verifyData(master, 'client finished');
    if (!timingSafeEqual(got, expected))
      throw alertError(AlertDescription.decryptError, 'client Finished verify_data mismatch');
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    const ccs = this.ccs();
    this.activateWrite();
    const verify = this.verifyData(master, 'server finished');
    const fin = this.message(HandshakeType.finished, verify, 1);
    this.hsState = 'done';
    this.sendFlight([ccs, fin], false);
    const keys = this.keys!;
    verify.copy(keys, keys.length - 12);
    if (fin.kind === 'hs') this.finishedSeq = fin.messageSeq;
    this.complete(false);
  }

  protected override releaseHandshakeState(): void {
    this.ephemeral = undefined;
    // Declared fields: cleared only where a certificate handshake set them (no slot otherwise).
    if (this.peerKey !== undefined) this.peerKey = undefined;
    if (this.pendingAuth !== undefined) this.pendingAuth = undefined;
    this.master = undefined;
    // The client random lives on after the key block (see isSameClientHello).
    this.clientRandom = undefined;
    this.serverRandom = undefined;
  }

  protected override retransmittableFlight(): FlightItem[] | undefined {
    const keys = this.keys;
    if (this.finishedSeq < 0 || this.state !== 'established' || keys === undefined)
      return super.retransmittableFlight();
    return [
      { kind: 'ccs' },
      {
        kind: 'hs',
        epoch: 1,
        msgType: HandshakeType.finished,
        messageSeq: this.finishedSeq,
        body: keys.subarray(keys.length - 12),
      },
    ];
  }

  protected override onApplicationData(): void {
    // The client got our Finished (it sends application data only after it).
    this.finishedSeq = -1;
  }

  /** True if this ClientHello random is the one this connection was started with. */
  isSameClientHello(random: Buffer): boolean {
    if (this.clientRandom !== undefined) return this.clientRandom.equals(random);
    const keys = this.keys;
    if (keys === undefined) return false;
    const o = keys.length - KEPT_EXTRA;
    return random.length === 32 && keys.compare(random, 0, 32, o, o + 32) === 0;
  }
}

/** What a ClientHello settles before any expensive work: the suite, the ECDHE group, the certificate mode. */
export interface Negotiation {
  suite: CipherSuiteInfo;
  /** The ECDHE group (ECDHE suites). */
  group: number | undefined;
  /** The client's ec_point_formats extension, if it sent one. */
  pointFormats: Extension | undefined;
  certMode: CertMode | undefined;
}

/** The server's choice for a ClientHello (its order of suites wins); undefined: nothing in common. */
function negotiate(ch: ClientHello, sopts: ServerConnectionOptions): Negotiation | undefined {
  const groupsExt = findExtension(ch.extensions, ExtensionType.supportedGroups);
  const clientGroups = groupsExt === undefined ? [GROUP_DEFAULT] : decodeSupportedGroups(groupsExt.data);
  const group = SUPPORTED_GROUPS.find((g) => clientGroups.includes(g));
  const pointFormats = findExtension(ch.extensions, ExtensionType.ecPointFormats);
  const uncompressedOk = pointFormats === undefined || decodeEcPointFormats(pointFormats.data).includes(0);
  const certMode = negotiateCertMode(ch, sopts.certs, clientGroups);
  for (const id of sopts.cipherSuites) {
    if (!ch.cipherSuites.includes(id)) continue;
    const s = CIPHER_SUITES.get(id);
    if (s === undefined) continue;
    if (s.keyExchange !== 'psk' && (group === undefined || !uncompressedOk)) continue;
    if (s.keyExchange === 'ecdhe_ecdsa' ? certMode === undefined : sopts.pskLookup === undefined) continue;
    return { suite: s, group, pointFormats, certMode };
  }
  return undefined;
}

/** What the handshake will cost the server, in PSK handshakes (HANDSHAKE_WEIGHTS). */
function handshakeWeight(n: Negotiation): number {
  const kx = n.suite.keyExchange;
  if (kx === 'psk') return HANDSHAKE_WEIGHTS.psk;
  if (kx === 'ecdhe_psk') return HANDSHAKE_WEIGHTS.ecdhePsk;
  return n.certMode?.clientType !== undefined
    ? HANDSHAKE_WEIGHTS.certificateMutual
    : HANDSHAKE_WEIGHTS.certificate;
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!(v > 0)) throw new InvalidArgumentError(`${name} must be a positive number (got ${v})`);
  return v;
}

const GROUP_DEFAULT = 23; // RFC 4492 §4: absent supported_groups means "any"; pick secp256r1.

// ------------------------------------------------------------------ endpoint

/** Defaults of the server's handshake bounds (see DtlsServerOptions). */
export const DTLS_SERVER_DEFAULTS = {
  maxSessions: 10_000,
  maxHandshakes: 1000,
  maxHandshakesPerAddress: 16,
  halfOpenTimeoutMs: 10_000,
  handshakeTimeoutMs: 30_000,
  maxHandshakeMessageBytes: 4096,
  maxHandshakeBufferBytes: 8192,
  maxTotalHandshakeBufferBytes: 1 << 20,
} as const;

export interface DtlsServerOptions {
  /** PSK keys by identity (PSK suites); at least one of pskLookup and certs. */
  pskLookup?: PskLookup | undefined;
  /** Certificate / raw public key credentials and trust (ECDHE_ECDSA suites). */
  certs?: CertOptions | undefined;
  identityHint?: Buffer | undefined;
  cipherSuites?: readonly number[] | undefined;
  /** Sessions, established or handshaking (default 10,000). */
  maxSessions?: number | undefined;
  /**
   * Half-open handshakes in all (default 1000); when full, a new verified ClientHello
   * evicts the oldest of the address holding the most.
   */
  maxHandshakes?: number | undefined;
  /** Half-open handshakes per source address (default 16); over it a verified ClientHello is dropped. */
  maxHandshakesPerAddress?: number | undefined;
  /** A handshake without progress for this long is dropped (default 10 s). */
  halfOpenTimeoutMs?: number | undefined;
  /** Largest handshake message accepted, its claimed length (default 4096; PSK needs well under 1 KB). */
  maxHandshakeMessageBytes?: number | undefined;
  /** Reassembly bytes one handshake may hold (default 8192); over it the handshake fails (illegal_parameter). */
  maxHandshakeBufferBytes?: number | undefined;
  /** Reassembly bytes all handshakes together may hold (default 1 MiB); over it fragments are dropped. */
  maxTotalHandshakeBufferBytes?: number | undefined;
  /**
   * DTLS Connection ID (RFC 9146). By default a client's offer is answered
   * with a random 8-byte CID; `{ length, prefix }` sets the length (0..255; 0:
   * we send the client's CID but want none) and fixed leading bytes (a node
   * id, at most length - 4 bytes); `false` ignores offers (no CID).
   */
  cid?: { length?: number | undefined; prefix?: Uint8Array | undefined } | false | undefined;
  /**
   * A tls12_cid record whose CID is not one of ours (cluster forwarding: its
   * prefix names another node). Default: dropped.
   */
  foreignCid?: ((datagram: Buffer, address: string, port: number) => void) | undefined;
  idleTimeoutMs?: number | undefined;
  mtu?: number | undefined;
  handshakeTimeoutMs?: number | undefined;
  retransmitInitialMs?: number | undefined;
  cookieRotateMs?: number | undefined;
  keyLog?: KeyLogger | undefined;
  /**
   * Handshake rate limit: token buckets per source address (IPv6: per /64)
   * and for all, charged by each verified ClientHello that starts a handshake,
   * weighted by its cost (HANDSHAKE_WEIGHTS). Over it the ClientHello is
   * dropped (its client retransmits). Default HANDSHAKE_RATE_DEFAULTS; `false`: off.
   */
  handshakeRate?: HandshakeRateOptions | false | undefined;
  /**
   * The source of time for handshake retransmission and timeouts, the
   * half-open stall, idle expiry, cookie rotation and the handshake rate
   * (default the real clock).
   */
  clock?: Clock | undefined;
}

export interface DtlsServerEvents {
  /** `via`: the session's records come through this cluster node (see `handleDatagram`); send it back that way. */
  send(datagram: Buffer, address: string, port: number, via?: unknown): void;
  established(conn: DtlsServerConnection, address: string, port: number): void;
  data(data: Buffer, conn: DtlsServerConnection, address: string, port: number): void;
  /** A session or handshake ended; `error` undefined for a clean close / eviction. */
  closed(conn: DtlsServerConnection, address: string, port: number, error?: DtlsError): void;
}

/** Default length of the CIDs the server hands out (RFC 9146; room for a node prefix). */
export const DEFAULT_CID_LENGTH = 8;

function cidPolicy(o: DtlsServerOptions['cid']): ServerCidPolicy | undefined {
  if (o === false) return undefined;
  const length = o?.length ?? DEFAULT_CID_LENGTH;
  if (!Number.isInteger(length) || length < 0 || length > 255)
    throw new InvalidArgumentError(`cid.length must be 0..255 (got ${length})`);
  const prefix = o?.prefix === undefined ? undefined : Buffer.from(o.prefix);
  if (prefix !== undefined && length > 0 && prefix.length > length - 4)
    throw new InvalidArgumentError(
      `cid.prefix (${prefix.length} bytes) leaves fewer than 4 random bytes in a ${length}-byte CID`,
    );
  return { length, prefix: length === 0 ? undefined : prefix };
}

export class DtlsServer {
  private readonly conns = new Map<string, DtlsServerConnection>();
  /** Sessions by the CID their client puts on records (latin1 string of the CID). */
  private readonly byCid = new Map<string, DtlsServerConnection>();
  /** Former keys of sessions that moved (RFC 9146 §6), for `send(key)`. */
  private readonly aliases = new Map<string, DtlsServerConnection>();
  /** Length of the CIDs we hand out; 0 when none (then no tls12_cid record is ours). */
  private readonly cidLength: number;
  private readonly foreignCid: DtlsServerOptions['foreignCid'];
  /** The same sessions by port (the address is checked): the per-datagram lookup. */
  private readonly byPort = new Map<number, DtlsServerConnection>();
  /** Connection options shared by all connections of one address family ([IPv4, IPv6]). */
  private readonly connOptions: [ServerConnectionOptions, ServerConnectionOptions];
  /** Connections still handshaking (bounded by maxHandshakes), oldest first. */
  private readonly halfOpen = new Set<DtlsServerConnection>();
  /** Half-open handshakes per source address, oldest first (bounded by maxHandshakesPerAddress). */
  private readonly halfOpenByAddress = new Groups<string, DtlsServerConnection>();
  /** Addresses by their number of half-open handshakes (index = count), to find the heaviest. */
  private readonly addressesByCount: (Set<string> | undefined)[] = [];
  /** No address has more half-open handshakes than this (may be stale high; see heaviestAddress). */
  private topCount = 0;
  /** Reassembly bytes held by all handshakes. */
  private readonly budget: ReassemblyBudget;
  private readonly maxHandshakesPerAddress: number;
  private readonly maxHandshakeMessageBytes: number;
  private secrets: [Buffer, Buffer] = [randomBytes(32), randomBytes(32)];
  private secretRotatedAt: number;
  /** The source of time (DtlsServerOptions.clock). */
  private readonly time: Clock;
  private readonly cookieRotateMs: number;
  /** The established-session bound (DtlsServerOptions.maxSessions, validated). */
  readonly maxSessions: number;
  private readonly maxHandshakes: number;
  private readonly idleTimeoutMs: number;
  private readonly cipherSuites: readonly number[];
  private sweepTimer?: TimerHandle | undefined;
  private readonly sweepEvery: number;
  private closed = false;
  /** The handshake rate limit (undefined: off). */
  readonly handshakeRate: HandshakeRateLimiter | undefined;
  /** Counters for tests and diagnostics. */
  readonly stats = {
    helloVerifySent: 0,
    badCookies: 0,
    /** Verified ClientHellos refused: maxSessions (or maxHandshakes with nothing to evict). */
    rejectedFull: 0,
    /** Verified ClientHellos refused: the address had maxHandshakesPerAddress half-open. */
    rejectedAddress: 0,
    /** Verified ClientHellos dropped by the handshake rate limit (the address's or the global bucket). */
    rateLimited: 0,
    /** Half-open handshakes evicted for a new verified ClientHello (table full). */
    evictedHalfOpen: 0,
    /** ClientHello records ignored because an earlier one in the same datagram was answered. */
    extraHellos: 0,
    /** tls12_cid records whose CID is none of ours (RFC 9146). */
    unknownCid: 0,
    /** Sessions that moved to a new address (RFC 9146 §6). */
    moved: 0,
    /** Datagrams not sent to an unverified new address (amplification limit, RFC 9146 §6). */
    amplificationDropped: 0,
    evictedIdle: 0,
    replaced: 0,
  };

  constructor(
    options: DtlsServerOptions,
    private readonly events: DtlsServerEvents,
  ) {
    this.time = options.clock ?? realClock;
    this.secretRotatedAt = this.time.now();
    this.cookieRotateMs = options.cookieRotateMs ?? 5 * 60_000;
    const D = DTLS_SERVER_DEFAULTS;
    this.maxSessions = positive(options.maxSessions, D.maxSessions, 'maxSessions');
    this.maxHandshakes = positive(options.maxHandshakes, D.maxHandshakes, 'maxHandshakes');
    this.maxHandshakesPerAddress = positive(
      options.maxHandshakesPerAddress,
      D.maxHandshakesPerAddress,
      'maxHandshakesPerAddress',
    );
    this.maxHandshakeMessageBytes = positive(
      options.maxHandshakeMessageBytes,
      D.maxHandshakeMessageBytes,
      'maxHandshakeMessageBytes',
    );
    this.budget = new ReassemblyBudget(
      positive(
        options.maxTotalHandshakeBufferBytes,
        D.maxTotalHandshakeBufferBytes,
        'maxTotalHandshakeBufferBytes',
      ),
    );
    this.idleTimeoutMs = options.idleTimeoutMs ?? 10 * 60_000;
    const policy = cidPolicy(options.cid);
    this.cidLength = policy?.length ?? 0;
    this.foreignCid = options.foreignCid;
    if (options.pskLookup === undefined && options.certs === undefined)
      throw new DtlsError('a DTLS server needs PSK keys or a certificate / raw public key');
    const defaults = [
      ...(options.certs !== undefined ? DEFAULT_CERT_CIPHER_SUITES : []),
      ...(options.pskLookup !== undefined ? DEFAULT_CIPHER_SUITES : []),
    ];
    this.cipherSuites = (options.cipherSuites ?? defaults).filter((s) => CIPHER_SUITES.has(s));
    if (this.cipherSuites.length === 0) throw new DtlsError('no supported cipher suite configured');
    const common = {
      clock: this.time,
      retransmitInitialMs: options.retransmitInitialMs ?? 1000,
      retransmitMaxMs: 60_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? D.handshakeTimeoutMs,
      stallTimeoutMs: positive(options.halfOpenTimeoutMs, D.halfOpenTimeoutMs, 'halfOpenTimeoutMs'),
      reassembly: {
        maxMessageBytes: this.maxHandshakeMessageBytes,
        maxBufferedBytes: positive(
          options.maxHandshakeBufferBytes,
          D.maxHandshakeBufferBytes,
          'maxHandshakeBufferBytes',
        ),
        shared: this.budget,
      },
      keyLog: options.keyLog,
      cid: policy,
      pskLookup: options.pskLookup,
      certs: options.certs,
      identityHint: options.identityHint,
      cipherSuites: this.cipherSuites,
    };
    this.connOptions = [
      { ...common, mtu: options.mtu ?? 576, ipOverhead: 28 },
      { ...common, mtu: options.mtu ?? 1280, ipOverhead: 48 },
    ];
    this.handshakeRate =
      options.handshakeRate === false
        ? undefined
        : new HandshakeRateLimiter(options.handshakeRate ?? {}, this.time);
    this.sweepEvery = Math.max(50, Math.min(this.idleTimeoutMs / 2, 30_000));
    this.sweepTimer = this.time.setTimer(this.sweepTick, this.sweepEvery, true);
  }

  private readonly sweepTick = (): void => {
    if (this.closed) return;
    this.sweep();
    this.sweepTimer = this.time.setTimer(this.sweepTick, this.sweepEvery, true);
  };

  get sessionCount(): number {
    return this.conns.size;
  }

  get handshakeCount(): number {
    return this.halfOpen.size;
  }

  /** Half-open handshakes of one source address. */
  handshakeCountOf(address: string): number {
    return this.halfOpenByAddress.sizeOf(address);
  }

  /** Reassembly bytes held by all handshakes now (charged as received bytes plus per-piece overhead). */
  get handshakeBufferBytes(): number {
    return this.budget.used;
  }

  private addHalfOpen(conn: DtlsServerConnection): void {
    this.halfOpen.add(conn);
    const n = this.halfOpenByAddress.add(conn.address, conn);
    this.moveAddress(conn.address, n - 1, n);
    if (n > this.topCount) this.topCount = n;
  }

  private moveAddress(address: string, from: number, to: number): void {
    if (from > 0) this.addressesByCount[from]?.delete(address);
    if (to > 0) {
      let b = this.addressesByCount[to];
      if (b === undefined) {
        b = new Set();
        this.addressesByCount[to] = b;
      }
      b.add(address);
    }
  }

  /** The address with the most half-open handshakes (of those, the one that got there first). */
  private heaviestAddress(): string | undefined {
    while (this.topCount > 0) {
      const b = this.addressesByCount[this.topCount];
      if (b !== undefined && b.size > 0) return b.values().next().value;
      this.topCount--;
    }
    return undefined;
  }

  private removeHalfOpen(conn: DtlsServerConnection): void {
    if (!this.halfOpen.delete(conn)) return;
    if (!this.halfOpenByAddress.delete(conn.address, conn)) return;
    const n = this.halfOpenByAddress.sizeOf(conn.address);
    this.moveAddress(conn.address, n + 1, n);
  }

  /** Reports a verified ClientHello that a bound refused (no state was created). */
  private refuse(key: string, reason: HandshakeRefusal, message: string): void {
    if (handshakeErrorChannel.hasSubscribers) {
      handshakeErrorChannel.publish(
        handshakeErrorEvent(key, 'server', new DtlsError(message), undefined, undefined, reason),
      );
    }
  }

  /**
   * Drops the oldest half-open handshake of the address that holds the most
   * (silently: its client retransmits and may start again). A client with one
   * handshake in progress is only evicted once every address is down to one.
   */
  private evictOldest(why: string): boolean {
    const address = this.heaviestAddress();
    const oldest =
      address === undefined
        ? undefined
        : (this.halfOpenByAddress.get(address)?.values().next().value as DtlsServerConnection | undefined);
    if (oldest === undefined) return false;
    this.stats.evictedHalfOpen++;
    oldest.fail(new DtlsError(`half-open handshake evicted: ${why}`), false, undefined, 'evicted');
    return true;
  }

  connection(key: string): DtlsServerConnection | undefined {
    return this.conns.get(key);
  }

  // Called by the connections (instead of per-connection callbacks).
  /** @internal */
  connOutput(conn: DtlsServerConnection, datagram: Buffer): void {
    if (conn.pathCredit >= 0) {
      // RFC 9146 §6: no amplification towards an address not yet verified.
      if (datagram.length > conn.pathCredit) {
        this.stats.amplificationDropped++;
        return;
      }
      conn.pathCredit -= datagram.length;
      conn.pathSent = true;
    }
    this.events.send(datagram, conn.address, conn.port, conn.via);
  }
  /** @internal A CID is in use (ours, handed out to a client). */
  cidTaken(cid: Buffer): boolean {
    return this.byCid.has(cid.toString('latin1'));
  }
  /** @internal The connection agreed on a CID: its client's records are found by it. */
  connCid(conn: DtlsServerConnection): void {
    const cid = conn.cidReceive;
    if (cid !== undefined) this.byCid.set(cid.toString('latin1'), conn);
  }
  /**
   * @internal RFC 9146 §6: an authenticated record newer than any seen came from
   * `address`:`port`; the session answers there from now on.
   */
  connMoved(conn: DtlsServerConnection, address: string, port: number, via: unknown): void {
    conn.via = via;
    if (conn.address === address && conn.port === port) {
      this.stats.moved++;
      return;
    }
    const oldKey = conn.peerLabel;
    const key = `${address}%${port}`;
    if (this.conns.get(oldKey) === conn) this.removeConn(oldKey, conn);
    const other = this.conns.get(key);
    if (other !== undefined && other !== conn) {
      // A stale session of whoever had this address before: the address is this peer's now.
      this.removeConn(key, other);
      other.destroy();
    }
    this.aliases.delete(key);
    conn.address = address;
    conn.port = port;
    conn.peerLabel = key;
    conn.tag = undefined;
    if (conn.aliases === undefined) conn.aliases = [];
    const aliases = conn.aliases;
    aliases.push(oldKey);
    this.aliases.set(oldKey, conn);
    if (aliases.length > 4) this.aliases.delete(aliases.shift()!);
    this.addConn(key, conn);
    this.stats.moved++;
  }
  /** @internal */
  connEstablished(conn: DtlsServerConnection): void {
    this.removeHalfOpen(conn);
    this.events.established(conn, conn.address, conn.port);
  }
  /** @internal */
  connData(conn: DtlsServerConnection, data: Buffer): void {
    this.events.data(data, conn, conn.address, conn.port);
  }
  /** @internal */
  connClosed(conn: DtlsServerConnection, error?: DtlsError): void {
    this.removeHalfOpen(conn);
    if (this.conns.get(conn.peerLabel) === conn) this.removeConn(conn.peerLabel, conn);
    const cid = conn.cidReceive;
    if (cid !== undefined) {
      const k = cid.toString('latin1');
      if (this.byCid.get(k) === conn) this.byCid.delete(k);
    }
    for (const a of conn.aliases ?? []) if (this.aliases.get(a) === conn) this.aliases.delete(a);
    this.events.closed(conn, conn.address, conn.port, error);
  }

  /** Cookies stay valid for one to two rotation periods (current + previous secret). */
  private rotateSecrets(): void {
    const elapsed = this.time.now() - this.secretRotatedAt;
    if (elapsed < this.cookieRotateMs) return;
    // After a long quiet time both secrets are stale: replace both.
    this.secrets = [randomBytes(32), elapsed >= 2 * this.cookieRotateMs ? randomBytes(32) : this.secrets[0]];
    this.secretRotatedAt = this.time.now();
  }

  /** Forces a cookie secret rotation (tests). */
  rotateCookieSecret(): void {
    this.secretRotatedAt = this.time.now() - this.cookieRotateMs;
    this.rotateSecrets();
  }

  /**
   * Cookie = HMAC-SHA256(secret, peer address | port | ClientHello without its cookie).
   * Binding everything in the ClientHello (including the random) means a cookie
   * can only be replayed together with the exact same ClientHello from the same address.
   */
  private cookieFor(
    secret: Buffer,
    address: string,
    port: number,
    chBody: Buffer,
    sessionIdLen: number,
    cookieLen: number,
  ): Buffer {
    const prefixLen = 2 + 32 + 1 + sessionIdLen;
    return createHmac('sha256', secret)
      .update(`${address}%${port}|`)
      .update(chBody.subarray(0, prefixLen))
      .update(chBody.subarray(prefixLen + 1 + cookieLen))
      .digest();
  }

  private cookieValid(address: string, port: number, ch: ClientHello, chBody: Buffer): boolean {
    if (ch.cookie.length !== 32) return false;
    // The previous secret is only tried when the current one does not match
    // (which secret matched is no secret: both rotate on a public schedule).
    for (const secret of this.secrets) {
      const expected = this.cookieFor(secret, address, port, chBody, ch.sessionId.length, ch.cookie.length);
      if (timingSafeEqual(expected, ch.cookie)) return true;
    }
    return false;
  }

  /** The session with address/port: by port first (no key string), then by key. */
  private lookup(address: string, port: number): DtlsServerConnection | undefined {
    const c = this.byPort.get(port);
    if (c !== undefined && c.address === address) return c;
    const found = this.conns.get(`${address}%${port}`);
    if (found !== undefined) this.byPort.set(port, found);
    return found;
  }

  private addConn(key: string, conn: DtlsServerConnection): void {
    this.conns.set(key, conn);
    if (this.aliases.size > 0) this.aliases.delete(key);
    this.byPort.set(conn.port, conn);
  }

  private removeConn(key: string, conn: DtlsServerConnection): void {
    this.conns.delete(key);
    if (this.byPort.get(conn.port) === conn) this.byPort.delete(conn.port);
  }

  /**
   * A datagram from `address`:`port`. `via` names the cluster node that
   * forwarded it (a tls12_cid record of ours that reached another node): only
   * such records are looked at, and the session answers through that node.
   */
  handleDatagram(data: Buffer, address: string, port: number, via?: unknown): void {
    if (this.closed) return;
    if (via !== undefined) {
      if (this.cidLength > 0) this.handleCidDatagram(data, address, port, via);
      return;
    }
    let o = 0;
    // At most one ClientHello per datagram gets an answer or creates state.
    let hello = false;
    for (let end = recordEnd(data, o); ; o = end, end = recordEnd(data, o)) {
      if (end < 0) {
        // Not an ordinary record: a tls12_cid record (RFC 9146), or the end of what we read.
        if (this.cidLength === 0) return;
        end = cidRecordEnd(data, o, this.cidLength); // -1 unless type 25 with a sound header
        if (end < 0) return;
        if (!this.handleCidRecord(data, o, end, address, port)) return;
        continue;
      }
      const type = data[o];
      if (type === ContentType.applicationData && data[o + 3] === 0 && data[o + 4] === 1) {
        // Established traffic: no record object, no key string.
        const conn = this.lookup(address, port);
        if (conn === undefined) continue;
        if (conn.state === 'established') conn.receiveApplicationData(data, o, end);
        else conn.handleRecord(recordAt(data, o, end));
        continue;
      }
      const rec = recordAt(data, o, end);
      if (
        rec.type === ContentType.handshake &&
        rec.epoch === 0 &&
        rec.fragment.length > 12 &&
        rec.fragment[0] === HandshakeType.clientHello
      ) {
        if (hello) this.stats.extraHellos++;
        else this.handleClientHelloRecord(rec, `${address}%${port}`, address, port);
        hello = true;
        continue;
      }
      this.lookup(address, port)?.handleRecord(rec);
    }
  }

  /** Forwarded tls12_cid records (every one of the datagram). */
  private handleCidDatagram(data: Buffer, address: string, port: number, via: unknown): void {
    for (let o = 0, end = cidRecordEnd(data, 0, this.cidLength); end > 0; ) {
      if (!this.handleCidRecord(data, o, end, address, port, via)) return;
      o = end;
      end = cidRecordEnd(data, o, this.cidLength);
    }
  }

  /** A tls12_cid record: its session is found by the CID, wherever it came from. False: stop reading. */
  private handleCidRecord(
    data: Buffer,
    o: number,
    end: number,
    address: string,
    port: number,
    via?: unknown,
  ): boolean {
    const L = this.cidLength;
    const conn = this.byCid.get(data.toString('latin1', o + 11, o + 11 + L));
    if (conn === undefined) {
      if (this.foreignCid !== undefined && o === 0 && via === undefined) {
        this.foreignCid(data, address, port);
        return false;
      }
      this.stats.unknownCid++;
      return true;
    }
    const rec = cidRecordAt(data, o, end, L);
    if (conn.port === port && conn.address === address && conn.via === via) conn.handleRecord(rec);
    else conn.handleRecordFrom(rec, address, port, via);
    return true;
  }

  private handleClientHelloRecord(rec: DtlsRecord, key: string, address: string, port: number): void {
    let frag: ReturnType<typeof parseHandshakeFragments>[number] | undefined;
    try {
      frag = parseHandshakeFragments(rec.fragment)[0];
    } catch {
      return;
    }
    // We require the ClientHello to fit in one record (no stateless reassembly).
    if (frag === undefined || frag.fragmentOffset !== 0 || frag.fragmentLength !== frag.length) return;
    if (frag.length > this.maxHandshakeMessageBytes) return;
    let ch: ClientHello;
    try {
      ch = decodeClientHello(frag.body);
    } catch {
      return;
    }
    const existing = this.conns.get(key);
    if (existing?.isSameClientHello(ch.random)) {
      // A retransmission of the ClientHello that started this connection.
      existing.handleRecord(rec);
      return;
    }
    if (recordReceivedChannel.hasSubscribers) {
      recordReceivedChannel.publish(recordEvent(key, 'server', rec.type, rec.epoch, rec.seq, rec.fragment));
    }
    this.rotateSecrets();
    if (!this.cookieValid(address, port, ch, frag.body)) {
      if (ch.cookie.length > 0) this.stats.badCookies++;
      this.sendHelloVerifyRequest(rec, frag.messageSeq, ch, frag.body, address, port);
      return;
    }
    // Valid cookie: the client proved it owns this address. What it asks for costs
    // CPU now (ECDH, a signature) and later; the rate limit charges it here, before
    // anything is touched (a dropped ClientHello is retransmitted by its client).
    const opts = this.connOptions[address.includes(':') ? 1 : 0];
    const negotiation = negotiate(ch, opts);
    if (negotiation !== undefined && this.handshakeRate !== undefined) {
      const over = this.handshakeRate.admit(address, handshakeWeight(negotiation));
      if (over !== undefined) {
        this.stats.rateLimited++;
        this.refuse(
          key,
          'rate-limited',
          over === 'address'
            ? `DTLS handshake refused: ${address} is over its handshake rate (handshakeRate.perAddress)`
            : 'DTLS handshake refused: over the global handshake rate (handshakeRate.global)',
        );
        return;
      }
    }
    // A client that lost its session restarts here; replace the old association (§4.2.8).
    if (existing !== undefined) {
      this.stats.replaced++;
      this.removeConn(key, existing);
      existing.destroy();
    }
    // Bounds. A verified ClientHello proves the address; a refused one is dropped
    // (no alert: there is no session, and the client retransmits).
    if (this.halfOpenByAddress.sizeOf(address) >= this.maxHandshakesPerAddress) {
      this.stats.rejectedAddress++;
      this.refuse(
        key,
        'address-share',
        `DTLS handshake refused: ${address} has ${this.maxHandshakesPerAddress} half-open handshakes (maxHandshakesPerAddress)`,
      );
      return;
    }
    // Full table: the oldest half-open handshake of the address holding the most gives
    // its slot to this one. Half-open handshakes are cheap to retry, legitimate clients
    // finish within a round trip or two and hold one each, so an attacker who keeps the
    // table full evicts its own (it would need maxHandshakes verified addresses to reach
    // a legitimate client's).
    if (this.handshakeCount >= this.maxHandshakes && !this.evictOldest('maxHandshakes reached')) {
      this.stats.rejectedFull++;
      this.refuse(key, 'table-full', 'DTLS handshake refused: maxHandshakes reached');
      return;
    }
    if (this.conns.size >= this.maxSessions && !this.evictOldest('maxSessions reached')) {
      this.stats.rejectedFull++;
      this.refuse(key, 'sessions-full', `DTLS handshake refused: ${this.maxSessions} sessions (maxSessions)`);
      return;
    }
    const conn = new DtlsServerConnection(this, opts, address, port, key);
    this.addConn(key, conn);
    this.addHalfOpen(conn);
    try {
      conn.start(ch, frag.body, frag.messageSeq, rec.seq, negotiation);
    } catch (e) {
      conn.fail(e instanceof DtlsError ? e : alertError(AlertDescription.internalError, String(e)));
    }
  }

  private sendHelloVerifyRequest(
    rec: DtlsRecord,
    messageSeq: number,
    ch: ClientHello,
    chBody: Buffer,
    address: string,
    port: number,
  ): void {
    const cookie = this.cookieFor(
      this.secrets[0],
      address,
      port,
      chBody,
      ch.sessionId.length,
      ch.cookie.length,
    );
    // One buffer: record header | handshake header | server_version | cookie<0..255>.
    // §4.2.1: server_version SHOULD be DTLS 1.0 (0xFEFF) whatever version will be negotiated
    // (OpenSSL does the same, also for the record version).
    // §4.2.1: reuse the ClientHello's record sequence number; no state is kept.
    const bodyLen = 3 + cookie.length;
    const hsLen = 12 + bodyLen;
    const out = Buffer.allocUnsafe(RECORD_HEADER_LENGTH + hsLen);
    out[0] = ContentType.handshake;
    out.writeUInt16BE(0xfeff, 1);
    out.writeUInt16BE(0, 3);
    out.writeUIntBE(rec.seq, 5, 6);
    out.writeUInt16BE(hsLen, 11);
    const h = RECORD_HEADER_LENGTH;
    out[h] = HandshakeType.helloVerifyRequest;
    out.writeUIntBE(bodyLen, h + 1, 3);
    out.writeUInt16BE(messageSeq, h + 4);
    out.writeUIntBE(0, h + 6, 3);
    out.writeUIntBE(bodyLen, h + 9, 3);
    out.writeUInt16BE(0xfeff, h + 12);
    out[h + 14] = cookie.length;
    cookie.copy(out, h + 15);
    this.stats.helloVerifySent++;
    if (recordSentChannel.hasSubscribers) {
      recordSentChannel.publish(
        recordEvent(`${address}%${port}`, 'server', ContentType.handshake, 0, rec.seq, out.subarray(h)),
      );
    }
    this.events.send(out, address, port);
  }

  private sweep(): void {
    this.handshakeRate?.sweep();
    const now = this.time.now();
    for (const [key, conn] of this.conns) {
      if (conn.state === 'established' && now - conn.lastActivity > this.idleTimeoutMs) {
        this.stats.evictedIdle++;
        this.removeConn(key, conn);
        conn.close();
      }
    }
  }

  /** Sends application data to an established session (also by a key it had before it moved); false if there is none. */
  send(key: string, data: Uint8Array): boolean {
    const conn = this.conns.get(key) ?? this.aliases.get(key);
    if (conn === undefined || conn.state !== 'established') return false;
    conn.sendApplicationData(data);
    return true;
  }

  /** The established sessions (a snapshot of the table; for exporting them). */
  establishedSessions(): DtlsServerConnection[] {
    const out: DtlsServerConnection[] = [];
    for (const c of this.conns.values()) if (c.state === 'established') out.push(c);
    return out;
  }

  /** Takes a session out of the table without close_notify: it goes on elsewhere (exported). */
  detach(conn: DtlsServerConnection): void {
    this.removeConn(conn.peerLabel, conn);
    conn.destroy();
  }

  /**
   * Adds sessions restored from snapshots, all or none: every snapshot is
   * checked (DtlsError) and the table must hold them all before one is added.
   * A peer that has a session already keeps it (its snapshot is skipped).
   */
  adopt(list: ReadonlyArray<{ address: string; port: number; snapshot: SessionSnapshot }>): {
    added: DtlsServerConnection[];
    skipped: number;
  } {
    if (this.closed) throw new DtlsError('DTLS server is closed');
    const fresh = new Map<string, DtlsServerConnection>();
    let skipped = 0;
    for (const { address, port, snapshot } of list) {
      const key = `${address}%${port}`;
      if (this.conns.has(key) || fresh.has(key)) {
        skipped++;
        continue;
      }
      const conn = new DtlsServerConnection(
        this,
        this.connOptions[address.includes(':') ? 1 : 0],
        address,
        port,
        key,
      );
      conn.restoreSession(snapshot);
      fresh.set(key, conn);
    }
    if (this.conns.size + fresh.size > this.maxSessions)
      throw new DtlsError(
        `${fresh.size} sessions do not fit: ${this.conns.size} of ${this.maxSessions} (maxSessions) in use`,
      );
    for (const [key, conn] of fresh) this.addConn(key, conn);
    return { added: [...fresh.values()], skipped };
  }

  /** Sends close_notify to every session and stops. */
  close(): void {
    this.closed = true;
    this.time.clearTimer(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const conn of [...this.conns.values()]) conn.close();
    this.conns.clear();
    this.byPort.clear();
    this.byCid.clear();
    this.aliases.clear();
  }
}
