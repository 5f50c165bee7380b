/**
 * DTLS 1.2 PSK client handshake (RFC 6347 §4.2, RFC 4279, RFC 5489):
 *   -> ClientHello            <- HelloVerifyRequest (optional, cookie)
 *   -> ClientHello + cookie   <- ServerHello, [ServerKeyExchange], ServerHelloDone
 *   -> ClientKeyExchange, ChangeCipherSpec, Finished
 *                             <- ChangeCipherSpec, Finished
 * Offers extended_master_secret, renegotiation_info, server_name (host names)
 * and, with ECDHE_PSK suites, supported_groups + ec_point_formats.
 */
import { Buffer } from 'node:buffer';
import { type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import {
  AlertDescription,
  type ConnectionOptions,
  type ConnectionSink,
  DtlsConnection,
  type FlightItem,
} from './connection.js';
import {
  type CertOptions,
  certificateNames,
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
import { CIPHER_SUITES, type CipherSuiteInfo } from './crypto/suites.js';
import { handshakeStartChannel } from './diag.js';
import { alertError, DtlsError } from './errors.js';
import { certClientHelloExtensions, certTypesFromServerHello } from './handshake/cert-extensions.js';
import { acceptCidAnswer, CONNECTION_ID_EXTENSION, offerCid } from './handshake/cid-ext.js';
import type { HandshakeMessage } from './handshake/fragment.js';
import {
  decodeCertificate,
  decodeCertificateRequest,
  decodeEcdsaServerKeyExchange,
  decodeFinished,
  decodeHelloVerifyRequest,
  decodeServerHello,
  decodeServerKeyExchange,
  type Extension,
  ExtensionType,
  encodeCertificate,
  encodeCertificateVerify,
  encodeClientHello,
  encodeClientKeyExchange,
  encodeServerName,
  encodeSupportedGroups,
  findExtension,
  HandshakeType,
} from './handshake/messages.js';
import { vec } from './handshake/reader.js';

export interface ClientConnectionOptions extends ConnectionOptions {
  /** PSK identity and key (PSK suites are offered only with both). */
  identity?: Buffer | undefined;
  psk?: Buffer | undefined;
  /** Certificate / raw public key credentials and trust (ECDHE_ECDSA suites are offered only with it). */
  certs?: CertOptions | undefined;
  cipherSuites: readonly number[];
  serverName?: string | undefined;
  /**
   * Certificate mode: the host name or IP address the server's certificate must
   * name (subjectAltName DNS/IP, or CN without SAN). Unset: not checked.
   */
  expectedHost?: string | undefined;
  /**
   * Offer a DTLS Connection ID (RFC 9146): the CID we want to receive (empty:
   * we send the server's CID but need none back). Undefined: no offer.
   */
  cid?: Buffer | undefined;
}

type ClientState =
  | 'wait_server_hello'
  | 'wait_cert'
  | 'wait_ske'
  | 'wait_cr_or_shd'
  | 'wait_ske_or_shd'
  | 'wait_shd'
  | 'wait_finished'
  | 'done';

const MAX_HELLO_VERIFY = 4;

export class DtlsClientConnection extends DtlsConnection {
  readonly role = 'client' as const;
  private hsState: ClientState = 'wait_server_hello';
  private cookie = Buffer.alloc(0);
  private helloVerifyCount = 0;
  private serverEphemeral?: { group: number; publicKey: Buffer };
  private expectedServerVerify?: Buffer;
  private readonly offered: number[];
  /** Certificate mode: the negotiated certificate types, the server's key, whether it asked for ours. */
  private serverCertType: 'x509' | 'rpk' = 'x509';
  private clientCertType: 'x509' | 'rpk' = 'x509';
  private serverKey?: KeyObject;
  private certRequested = false;

  constructor(
    private readonly copts: ClientConnectionOptions,
    sink: ConnectionSink,
  ) {
    super(copts, sink);
    const hasPsk = copts.identity !== undefined && copts.psk !== undefined;
    this.offered = copts.cipherSuites.filter((s) => {
      const suite = CIPHER_SUITES.get(s);
      if (suite === undefined) return false;
      return suite.keyExchange === 'ecdhe_ecdsa' ? copts.certs !== undefined : hasPsk;
    });
    if (this.offered.length === 0) throw new DtlsError('no supported cipher suite configured');
    this.clientRandom = randomBytes(32);
    if (copts.identity !== undefined) this.offeredIdentity = copts.identity.toString('utf8');
  }

  start(): void {
    if (handshakeStartChannel.hasSubscribers) {
      handshakeStartChannel.publish({ peer: this.peerLabel, role: this.role });
    }
    this.sendFlight([this.message(HandshakeType.clientHello, this.clientHelloBody())]);
  }

  private clientHelloBody(): Buffer {
    const exts: Extension[] = [];
    const sn = this.copts.serverName;
    if (sn !== undefined && sn !== '' && isIP(sn) === 0) {
      exts.push({ type: ExtensionType.serverName, data: encodeServerName(sn) });
    }
    if (this.offered.some((s) => CIPHER_SUITES.get(s)?.keyExchange !== 'psk')) {
      exts.push({ type: ExtensionType.supportedGroups, data: encodeSupportedGroups(SUPPORTED_GROUPS) });
      exts.push({ type: ExtensionType.ecPointFormats, data: Buffer.from([1, 0]) });
    }
    if (this.copts.certs !== undefined) exts.push(...certClientHelloExtensions(this.copts.certs));
    exts.push({ type: ExtensionType.extendedMasterSecret, data: Buffer.alloc(0) });
    exts.push({ type: ExtensionType.renegotiationInfo, data: Buffer.from([0]) });
    const cid = offerCid(this.copts.cid);
    if (cid !== undefined) exts.push(cid);
    return encodeClientHello({
      version: 0xfefd,
      random: this.clientRandom!,
      sessionId: Buffer.alloc(0),
      cookie: this.cookie,
      cipherSuites: this.offered,
      compressionMethods: Buffer.from([0]),
      extensions: exts,
    });
  }

  protected handleMessage(m: HandshakeMessage): void {
    switch (this.hsState) {
      case 'wait_server_hello':
        if (m.msgType === HandshakeType.helloVerifyRequest) return this.onHelloVerifyRequest(m);
        if (m.msgType === HandshakeType.serverHello) return this.onServerHello(m);
        throw this.unexpected(m);
      case 'wait_cert':
        if (m.msgType === HandshakeType.certificate) return this.onCertificate(m);
        throw this.unexpected(m);
      case 'wait_ske':
        if (m.msgType === HandshakeType.serverKeyExchange) return this.onEcdsaServerKeyExchange(m);
        throw this.unexpected(m);
      case 'wait_cr_or_shd':
        if (m.msgType === HandshakeType.certificateRequest) return this.onCertificateRequest(m);
        if (m.msgType === HandshakeType.serverHelloDone) return this.onServerHelloDone(m);
        throw this.unexpected(m);
      case 'wait_ske_or_shd':
        if (m.msgType === HandshakeType.serverKeyExchange) return this.onServerKeyExchange(m);
        if (m.msgType === HandshakeType.serverHelloDone) return this.onServerHelloDone(m);
        throw this.unexpected(m);
      case 'wait_shd':
        if (m.msgType === HandshakeType.serverHelloDone) return this.onServerHelloDone(m);
        throw this.unexpected(m);
      case 'wait_finished':
        if (m.msgType === HandshakeType.finished) return this.onFinished(m);
        throw this.unexpected(m);
      default:
        throw this.unexpected(m);
    }
  }

  private onHelloVerifyRequest(m: HandshakeMessage): void {
    const hvr = decodeHelloVerifyRequest(m.body);
    if (++this.helloVerifyCount > MAX_HELLO_VERIFY) {
      throw alertError(AlertDescription.handshakeFailure, 'too many HelloVerifyRequests');
    }
    this.cookie = Buffer.from(hvr.cookie);
    // §4.2.1: HelloVerifyRequest and the first ClientHello are not in the transcript.
    this.transcript.reset();
    this.reassembler.reset(m.messageSeq + 1);
    this.sendFlight([this.message(HandshakeType.clientHello, this.clientHelloBody())]);
  }

  private onServerHello(m: HandshakeMessage): void {
    const sh = decodeServerHello(m.body);
    if (sh.version !== 0xfefd)
      throw alertError(
        AlertDescription.protocolVersion,
        `unsupported DTLS version 0x${sh.version.toString(16)}`,
      );
    if (!this.offered.includes(sh.cipherSuite)) {
      throw alertError(
        AlertDescription.illegalParameter,
        `server chose a cipher suite we did not offer (0x${sh.cipherSuite.toString(16)})`,
      );
    }
    if (sh.compressionMethod !== 0)
      throw alertError(AlertDescription.illegalParameter, 'server chose compression');
    const reneg = findExtension(sh.extensions, ExtensionType.renegotiationInfo);
    if (reneg !== undefined && !(reneg.data.length === 1 && reneg.data[0] === 0)) {
      throw alertError(AlertDescription.handshakeFailure, 'bad renegotiation_info');
    }
    const ems = findExtension(sh.extensions, ExtensionType.extendedMasterSecret);
    if (ems !== undefined && ems.data.length !== 0)
      throw alertError(AlertDescription.decodeError, 'bad extended_master_secret');
    this.extendedMasterSecret = ems !== undefined;
    const cid = acceptCidAnswer(findExtension(sh.extensions, CONNECTION_ID_EXTENSION), this.copts.cid);
    if (cid !== undefined) this.useCid(cid);
    this.suite = CIPHER_SUITES.get(sh.cipherSuite)!;
    this.serverRandom = Buffer.from(sh.random);
    if (this.suite.keyExchange === 'ecdhe_ecdsa') {
      const types = certTypesFromServerHello(sh.extensions, this.copts.certs?.rpk !== undefined);
      this.serverCertType = types.server;
      this.clientCertType = types.client;
      this.transcript.add(m.msgType, m.messageSeq, m.body);
      this.hsState = 'wait_cert';
      return;
    }
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.hsState = 'wait_ske_or_shd';
  }

  /** The server's Certificate: verified against our trust anchors / raw key list now. */
  private onCertificate(m: HandshakeMessage): void {
    const trust = this.copts.certs!.trust;
    const list = decodeCertificate(m.body, this.serverCertType);
    if (list.length === 0)
      throw alertError(AlertDescription.handshakeFailure, 'the server sent no certificate');
    let auth: DtlsPeerAuth | undefined;
    if (this.serverCertType === 'rpk') auth = verifyRawPublicKey(list[0]!, trust, 'server');
    else if (trust.verifyPeer) {
      auth = verifyX509Chain(list, trust, 'server');
      const host = this.copts.expectedHost;
      if (host !== undefined && !certificateNames(list[0]!, host))
        throw alertError(
          AlertDescription.badCertificate,
          `the server's certificate is not for ${host} (it names ${auth.san?.join(', ') ?? auth.subject})`,
        );
    }
    try {
      this.serverKey = peerPublicKey(this.serverCertType, list[0]!);
    } catch (cause) {
      throw alertError(
        AlertDescription.badCertificate,
        `bad server certificate: ${(cause as Error).message}`,
      );
    }
    if (auth !== undefined) {
      this.auth = auth;
      this.identity = auth.identity;
    }
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.hsState = 'wait_ske';
  }

  /** Signed ServerECDHParams (RFC 8422 §5.4): signature over client_random + server_random + params. */
  private onEcdsaServerKeyExchange(m: HandshakeMessage): void {
    const ske = decodeEcdsaServerKeyExchange(m.body);
    if (!SUPPORTED_GROUPS.includes(ske.group))
      throw alertError(AlertDescription.illegalParameter, `server chose an unsupported group ${ske.group}`);
    if (ske.scheme !== SIG_ECDSA_SHA256)
      throw alertError(
        AlertDescription.illegalParameter,
        `server signed with an algorithm we did not offer (0x${ske.scheme.toString(16)})`,
      );
    const signed = Buffer.concat([this.clientRandom!, this.serverRandom!, ske.params]);
    if (!ecdsaVerify(this.serverKey!, signed, ske.signature))
      throw alertError(
        AlertDescription.decryptError,
        "the server's ServerKeyExchange signature does not verify",
      );
    this.serverEphemeral = { group: ske.group, publicKey: Buffer.from(ske.publicKey) };
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.hsState = 'wait_cr_or_shd';
  }

  private onCertificateRequest(m: HandshakeMessage): void {
    decodeCertificateRequest(m.body);
    this.certRequested = true;
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.hsState = 'wait_shd';
  }

  private onServerKeyExchange(m: HandshakeMessage): void {
    const suite = this.suite!;
    const ske = decodeServerKeyExchange(m.body, suite.keyExchange === 'ecdhe_psk');
    if (ske.ecdhe) {
      if (!SUPPORTED_GROUPS.includes(ske.ecdhe.group)) {
        throw alertError(
          AlertDescription.illegalParameter,
          `server chose an unsupported group ${ske.ecdhe.group}`,
        );
      }
      this.serverEphemeral = { group: ske.ecdhe.group, publicKey: Buffer.from(ske.ecdhe.publicKey) };
    }
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.hsState = 'wait_shd';
  }

  private onServerHelloDone(m: HandshakeMessage): void {
    const suite = this.suite!;
    if (m.body.length !== 0) throw alertError(AlertDescription.decodeError, 'bad ServerHelloDone');
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    if (suite.keyExchange === 'ecdhe_ecdsa') {
      this.certificateFlight();
      return;
    }
    let otherSecret: Buffer | undefined;
    let ecdhePublic: Buffer | undefined;
    if (suite.keyExchange === 'ecdhe_psk') {
      if (this.serverEphemeral === undefined)
        throw alertError(AlertDescription.unexpectedMessage, 'missing ServerKeyExchange');
      const eph: EphemeralKey = generateEphemeral(this.serverEphemeral.group);
      otherSecret = eph.computeSecret(this.serverEphemeral.publicKey);
      ecdhePublic = eph.publicKey;
    }
    const cke = this.message(
      HandshakeType.clientKeyExchange,
      encodeClientKeyExchange({ identity: this.copts.identity!, ...(ecdhePublic ? { ecdhePublic } : {}) }),
    );
    const premaster = pskPremasterSecret(this.copts.psk!, otherSecret);
    this.finishFlight([cke], premaster);
  }

  /**
   * ECDHE_ECDSA: [Certificate], ClientKeyExchange, [CertificateVerify], ChangeCipherSpec, Finished.
   * An empty Certificate when asked and we have none of the negotiated type.
   */
  private certificateFlight(): void {
    const certs = this.copts.certs!;
    const server = this.serverEphemeral;
    if (server === undefined)
      throw alertError(AlertDescription.unexpectedMessage, 'missing ServerKeyExchange');
    const items: FlightItem[] = [];
    const own = this.clientCertType === 'rpk' ? certs.rpk : certs.x509;
    if (this.certRequested) {
      items.push(
        this.message(
          HandshakeType.certificate,
          own === undefined
            ? encodeCertificate(this.clientCertType, [])
            : encodeCertificate(own.type, own.chain, own.spki),
        ),
      );
    }
    const eph: EphemeralKey = generateEphemeral(server.group);
    const premaster = eph.computeSecret(server.publicKey);
    items.push(this.message(HandshakeType.clientKeyExchange, vec(1, eph.publicKey)));
    // RFC 7627: the session hash ends with ClientKeyExchange; CertificateVerify signs the same messages.
    const sessionHash = this.extendedMasterSecret ? this.transcript.digest(this.suite!.prfHash) : undefined;
    if (this.certRequested && own !== undefined) {
      const signature = ecdsaSign(own.key, this.transcript.bytes());
      items.push(
        this.message(HandshakeType.certificateVerify, encodeCertificateVerify(SIG_ECDSA_SHA256, signature)),
      );
    }
    this.finishFlight(items, premaster, sessionHash);
    premaster.fill(0);
  }

  /** Derives the keys and sends `items` + ChangeCipherSpec + Finished. */
  private finishFlight(items: FlightItem[], premaster: Buffer, hashAfterCke?: Buffer): void {
    const suite = this.suite!;
    const sessionHash =
      hashAfterCke ?? (this.extendedMasterSecret ? this.transcript.digest(suite.prfHash) : undefined);
    const master = masterSecret(suite, premaster, this.clientRandom!, this.serverRandom!, sessionHash);
    this.logKeys(master);
    this.installKeys(suite, keyBlockBytes(suite, master, this.clientRandom!, this.serverRandom!));
    const ccs = this.ccs();
    this.activateWrite();
    const verify = this.verifyData(master, 'client finished');
    const fin = this.message(HandshakeType.finished, verify, 1);
    this.expectedServerVerify = this.verifyData(master, 'server finished');
    this.hsState = 'wait_finished';
    this.sendFlight([...items, ccs, fin]);
  }

  private onFinished(m: HandshakeMessage): void {
    const got = decodeFinished(m.body);
    if (!this.peerCcsReceived || this.expectedServerVerify === undefined) throw this.unexpected(m);
    if (!timingSafeEqual(got, this.expectedServerVerify)) {
      throw alertError(AlertDescription.decryptError, 'server Finished verify_data mismatch');
    }
    this.hsState = 'done';
    if (this.suite?.keyExchange !== 'ecdhe_ecdsa') this.identity = this.copts.identity?.toString('utf8');
    this.complete(false);
  }

  protected override releaseHandshakeState(): void {
    this.serverEphemeral = undefined;
    this.expectedServerVerify = undefined;
    this.serverKey = undefined;
  }

  /** The negotiated suite (after the handshake). */
  get negotiatedSuite(): CipherSuiteInfo | undefined {
    return this.suite;
  }
}
