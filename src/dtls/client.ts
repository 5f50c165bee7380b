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
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import {
  AlertDescription,
  alertError,
  type ConnectionOptions,
  type ConnectionSink,
  DtlsConnection,
} from './connection.js';
import { type EphemeralKey, generateEphemeral, SUPPORTED_GROUPS } from './crypto/ecdhe.js';
import { finishedVerifyData, keyBlockBytes, masterSecret, pskPremasterSecret } from './crypto/keys.js';
import { CIPHER_SUITES, type CipherSuiteInfo } from './crypto/suites.js';
import { handshakeDoneChannel, handshakeStartChannel } from './diag.js';
import { DtlsError } from './errors.js';
import { acceptCidAnswer, CONNECTION_ID_EXTENSION, offerCid } from './handshake/cid-ext.js';
import type { HandshakeMessage } from './handshake/fragment.js';
import {
  decodeFinished,
  decodeHelloVerifyRequest,
  decodeServerHello,
  decodeServerKeyExchange,
  type Extension,
  ExtensionType,
  encodeClientHello,
  encodeClientKeyExchange,
  encodeServerName,
  encodeSupportedGroups,
  findExtension,
  HandshakeType,
} from './handshake/messages.js';

export interface ClientConnectionOptions extends ConnectionOptions {
  identity: Buffer;
  psk: Buffer;
  cipherSuites: readonly number[];
  serverName?: string | undefined;
  /**
   * Offer a DTLS Connection ID (RFC 9146): the CID we want to receive (empty:
   * we send the server's CID but need none back). Undefined: no offer.
   */
  cid?: Buffer | undefined;
}

type ClientState = 'wait_server_hello' | 'wait_ske_or_shd' | 'wait_shd' | 'wait_finished' | 'done';

const MAX_HELLO_VERIFY = 4;

export class DtlsClientConnection extends DtlsConnection {
  readonly role = 'client' as const;
  private hsState: ClientState = 'wait_server_hello';
  private cookie = Buffer.alloc(0);
  private helloVerifyCount = 0;
  private serverEphemeral?: { group: number; publicKey: Buffer };
  private expectedServerVerify?: Buffer;
  private readonly offered: number[];

  constructor(
    private readonly copts: ClientConnectionOptions,
    sink: ConnectionSink,
  ) {
    super(copts, sink);
    this.offered = copts.cipherSuites.filter((s) => CIPHER_SUITES.has(s));
    if (this.offered.length === 0) throw new DtlsError('no supported cipher suite configured');
    this.clientRandom = randomBytes(32);
    this.offeredIdentity = copts.identity.toString('utf8');
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
    if (this.offered.some((s) => CIPHER_SUITES.get(s)?.keyExchange === 'ecdhe_psk')) {
      exts.push({ type: ExtensionType.supportedGroups, data: encodeSupportedGroups(SUPPORTED_GROUPS) });
      exts.push({ type: ExtensionType.ecPointFormats, data: Buffer.from([1, 0]) });
    }
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
    this.transcript.add(m.msgType, m.messageSeq, m.body);
    this.hsState = 'wait_ske_or_shd';
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
      encodeClientKeyExchange({ identity: this.copts.identity, ...(ecdhePublic ? { ecdhePublic } : {}) }),
    );
    const premaster = pskPremasterSecret(this.copts.psk, otherSecret);
    const sessionHash = this.extendedMasterSecret ? this.transcript.digest(suite.prfHash) : undefined;
    const master = masterSecret(suite, premaster, this.clientRandom!, this.serverRandom!, sessionHash);
    this.logKeys(master);
    this.installKeys(suite, keyBlockBytes(suite, master, this.clientRandom!, this.serverRandom!));
    const ccs = this.ccs();
    this.activateWrite();
    const verify = finishedVerifyData(
      suite,
      master,
      'client finished',
      this.transcript.digest(suite.prfHash),
    );
    const fin = this.message(HandshakeType.finished, verify, 1);
    this.expectedServerVerify = finishedVerifyData(
      suite,
      master,
      'server finished',
      this.transcript.digest(suite.prfHash),
    );
    this.hsState = 'wait_finished';
    this.sendFlight([cke, ccs, fin]);
  }

  private onFinished(m: HandshakeMessage): void {
    const got = decodeFinished(m.body);
    if (!this.peerCcsReceived || this.expectedServerVerify === undefined) throw this.unexpected(m);
    if (!timingSafeEqual(got, this.expectedServerVerify)) {
      throw alertError(AlertDescription.decryptError, 'server Finished verify_data mismatch');
    }
    this.hsState = 'done';
    this.identity = this.copts.identity.toString('utf8');
    this.complete(false);
    if (handshakeDoneChannel.hasSubscribers) {
      handshakeDoneChannel.publish({
        peer: this.peerLabel,
        role: this.role,
        suite: this.suite?.name,
        suiteId: this.suite?.id,
        extendedMasterSecret: this.extendedMasterSecret,
        identity: this.identity,
        durationMs: this.time.now() - this.startedAt,
      });
    }
  }

  protected override releaseHandshakeState(): void {
    this.serverEphemeral = undefined;
    this.expectedServerVerify = undefined;
  }

  /** The negotiated suite (after the handshake). */
  get negotiatedSuite(): CipherSuiteInfo | undefined {
    return this.suite;
  }
}
