/**
 * Shared DTLS 1.2 connection engine for client and server (RFC 6347):
 * record epochs and sequence numbers, anti-replay, handshake message
 * fragmentation / reassembly, flights with retransmission (timer doubling,
 * §4.2.4), alerts, and application data. The role-specific handshake logic
 * lives in client.ts / server.ts (`handleMessage`).
 *
 * Only epochs 0 and 1 exist: renegotiation is refused (RFC 5746 / no_renegotiation).
 */
import { Buffer } from 'node:buffer';
import { type Clock, realClock, type TimerHandle } from '../util/clock.js';
import type { DtlsPeerAuth } from './crypto/certs.js';
import { finishedVerifyData } from './crypto/keys.js';
import { CIPHER_SUITES, type CipherSuiteInfo, recordOverhead } from './crypto/suites.js';
import {
  type HandshakeErrorEvent,
  type HandshakeRefusal,
  handshakeDoneChannel,
  handshakeErrorChannel,
  handshakeErrorEvent,
  recordEvent,
  recordReceivedChannel,
  recordSentChannel,
} from './diag.js';
import { alertError, DtlsAlertError, DtlsError, DtlsHandshakeTimeoutError } from './errors.js';
import type { CidAgreement } from './handshake/cid-ext.js';
import {
  fragmentMessage,
  HANDSHAKE_HEADER_LENGTH,
  type HandshakeFragment,
  type HandshakeMessage,
  HandshakeReassembler,
  parseHandshakeFragments,
  type ReassemblyLimits,
} from './handshake/fragment.js';
import { HandshakeTranscript } from './handshake/hash.js';
import { HandshakeType } from './handshake/messages.js';
import type { KeyLogger } from './keylog.js';
import { alertName } from './names.js';
import { cidOverhead, cidRecordAt, cidRecordEnd, decodeInnerPlaintext, TLS12_CID } from './record/cid.js';
import { protectionFromKeyBlock, type SessionRecordProtection } from './record/protection.js';
import {
  ContentType,
  type DtlsRecord,
  encodeRecord,
  RECORD_HEADER_LENGTH,
  recordAt,
  recordEnd,
  recordSeq,
} from './record/record.js';
import { ReplayWindow } from './record/replay.js';

export const AlertDescription = {
  closeNotify: 0,
  unexpectedMessage: 10,
  badRecordMac: 20,
  handshakeFailure: 40,
  badCertificate: 42,
  unsupportedCertificate: 43,
  certificateExpired: 45,
  illegalParameter: 47,
  unknownCa: 48,
  decodeError: 50,
  decryptError: 51,
  protocolVersion: 70,
  internalError: 80,
  noRenegotiation: 100,
  unsupportedExtension: 110,
  unknownPskIdentity: 115,
} as const;

export interface ConnectionOptions {
  /** Path MTU in bytes, including IP and UDP headers. */
  mtu: number;
  /** IP + UDP header bytes (28 for IPv4, 48 for IPv6). */
  ipOverhead: number;
  retransmitInitialMs: number;
  retransmitMaxMs: number;
  handshakeTimeoutMs: number;
  /**
   * A handshake that makes no progress (no new flight sent, no complete
   * handshake message received) for this long fails with a timeout, even
   * before `handshakeTimeoutMs`. Unset: only `handshakeTimeoutMs` applies.
   */
  stallTimeoutMs?: number | undefined;
  /** Bounds of handshake message reassembly (claimed length, bytes held, shared budget). */
  reassembly?: ReassemblyLimits | undefined;
  keyLog?: KeyLogger | undefined;
  /** Peer label for diagnostics events ("address%port"); the server passes it separately. */
  peerLabel?: string;
  /** The source of time for handshake retransmission, deadlines and activity (default the real clock). */
  clock?: Clock | undefined;
}

export interface ConnectionSink {
  sendDatagram(datagram: Buffer): void;
  established(): void;
  data(data: Buffer): void;
  /** Called exactly once when the connection ends; no error for a clean close. */
  closed(error?: DtlsError): void;
}

/**
 * What an established session needs to go on in another process (a graceful
 * restart): suite, keys, sequence numbers, replay window. Secret: the holder
 * must keep it encrypted (DtlsServerTransport.exportSessions does).
 */
export interface SessionSnapshot {
  readonly role: 'client' | 'server';
  readonly suiteId: number;
  readonly extendedMasterSecret: boolean;
  /** The authenticated PSK identity, if any. */
  readonly identity: string | undefined;
  /** The epoch-1 key block and what the role keeps after it (a copy). */
  readonly keys: Buffer;
  /** Next epoch-1 write sequence number, the margin already added. */
  readonly writeSeq: number;
  /** Highest epoch-1 sequence number received (-1: none). */
  readonly replayMax: number;
  /** Replay bitmap: bit i set when `replayMax - i` was received (i < 64), as 16 hex digits. */
  readonly replayBits: string;
}

/** Largest DTLS record sequence number (48 bits). */
const MAX_RECORD_SEQ = 0xffffffffffff;

export type FlightItem =
  | { kind: 'hs'; epoch: 0 | 1; msgType: number; messageSeq: number; body: Buffer }
  | { kind: 'ccs' };

const MAX_FUTURE_RECORDS = 16;
/** Accounting cost of one buffered future-epoch record besides its bytes. */
const FUTURE_RECORD_OVERHEAD = 96;
const CCS_BODY = Buffer.from([1]);

/** Stands in for the transcript once the handshake is over (frees the buffered messages). */
class ReleasedTranscript extends HandshakeTranscript {
  override add(): void {}
  override digest(): Buffer {
    throw alertError(AlertDescription.internalError, 'handshake transcript already released');
  }
  override bytes(): Buffer {
    throw alertError(AlertDescription.internalError, 'handshake transcript already released');
  }
}
const RELEASED_TRANSCRIPT = new ReleasedTranscript();
const MAX_PLAINTEXT = 16384;

function toDtlsError(e: unknown): DtlsError {
  if (e instanceof DtlsError) return e;
  return alertError(AlertDescription.internalError, `internal error: ${(e as Error)?.message ?? String(e)}`);
}

export abstract class DtlsConnection {
  state: 'handshaking' | 'established' | 'closed' = 'handshaking';
  abstract readonly role: 'client' | 'server';

  suite?: CipherSuiteInfo;
  extendedMasterSecret = false;
  clientRandom?: Buffer;
  serverRandom?: Buffer;
  /** Authenticated identity once the handshake is done (PSK identity, certificate CN, RPK fingerprint). */
  identity?: string;
  /** How the peer authenticated (certificate and raw-public-key modes; PSK sessions leave it unset). */
  declare auth?: DtlsPeerAuth;
  /** PSK identity offered in the handshake (known before it is authenticated; for diagnostics). */
  offeredIdentity?: string;
  /** When the connection was created (its clock's ms). */
  readonly startedAt: number;
  /** Last authenticated record received (its clock's ms; idle expiry). */
  lastActivity: number;
  /** The source of time (ConnectionOptions.clock). */
  protected readonly time: Clock;

  /** Diagnostics label of the peer ("address%port"; the server updates it when the peer moves). */
  peerLabel: string;

  /** RFC 9146: the peer's CID, put on our epoch-1 records (undefined: none, or empty). */
  declare protected cidSend?: Buffer | undefined;
  /** RFC 9146: our CID, carried by the peer's epoch-1 records (undefined: none, or empty). */
  declare cidReceive?: Buffer | undefined;
  /** A connection_id extension was agreed (possibly empty in one or both directions). */
  get cidNegotiated(): boolean {
    return this.cidAgreed === true;
  }
  declare private cidAgreed?: true;
  /** Set while a record that arrived from another address (or route) than the session's is processed. */
  declare private candidatePath?: { address: string; port: number; via: unknown } | undefined;

  // Handshake-only state is released (set to undefined / shared placeholders) once
  // the handshake completes, so that an idle session keeps only its keys and counters.
  protected transcript: HandshakeTranscript = new HandshakeTranscript();
  protected reassembler: HandshakeReassembler;
  protected nextSendSeq = 0;

  private readEpoch = 0;
  private readProt?: SessionRecordProtection;
  private pendingRead?: SessionRecordProtection;
  private earlyCcs = false;
  private replay = new ReplayWindow();
  private writeEpoch = 0;
  private writeSeq0 = 0;
  private writeSeq1 = 0;
  private writeProt?: SessionRecordProtection;
  private pendingWrite?: SessionRecordProtection;
  /** Key block of epoch 1 (unpooled); wiped when the connection ends. */
  protected keys?: Buffer;
  private future?: DtlsRecord[];
  /** Bytes charged to the reassembly budget for `future`. */
  private futureCost = 0;

  private flight?: FlightItem[];
  private timer?: TimerHandle | undefined;
  private timeoutMs: number;
  /** When the handshake fails: the overall deadline, or earlier without progress (stallTimeoutMs). */
  private deadline: number;
  private readonly hardDeadline: number;
  private lastTriggeredRetransmit = 0;
  private queue?: HandshakeMessage[];
  private blocked = false;
  private refusedRenegotiation = false;

  constructor(
    protected readonly opts: ConnectionOptions,
    protected readonly sink: ConnectionSink,
    peerLabel?: string,
  ) {
    this.peerLabel = peerLabel ?? opts.peerLabel ?? '';
    this.time = opts.clock ?? realClock;
    this.startedAt = this.time.now();
    this.lastActivity = this.startedAt;
    this.timeoutMs = opts.retransmitInitialMs;
    this.hardDeadline = this.startedAt + opts.handshakeTimeoutMs;
    this.deadline = this.hardDeadline;
    this.progress();
    this.reassembler = new HandshakeReassembler(0, 16, opts.reassembly);
  }

  // Output hooks (the server overrides them to avoid a per-connection sink object).
  protected output(datagram: Buffer): void {
    this.sink.sendDatagram(datagram);
  }
  protected notifyEstablished(): void {
    this.sink.established();
  }
  protected notifyData(data: Buffer): void {
    this.sink.data(data);
  }
  protected notifyClosed(error?: DtlsError): void {
    this.sink.closed(error);
  }

  /** Role-specific handshake processing. May return a promise (async PSK lookup). */
  protected abstract handleMessage(msg: HandshakeMessage): void | Promise<void>;

  // ---------------------------------------------------------------- sending

  protected setInitialWriteSeq(seq: number): void {
    this.writeSeq0 = seq;
  }

  private makeRecord(type: number, epoch: 0 | 1, plaintext: Uint8Array): Buffer {
    const seq = epoch === 0 ? this.writeSeq0 : this.writeSeq1;
    if (seq >= 0xffffffffffff)
      throw alertError(AlertDescription.internalError, 'DTLS sequence number exhausted');
    let record: Buffer;
    if (epoch === 1) {
      const prot = this.writeProt;
      if (prot === undefined) throw alertError(AlertDescription.internalError, 'no write keys for epoch 1');
      const cid = this.cidSend;
      record =
        cid === undefined
          ? prot.encryptRecord(type, 1, seq, plaintext)
          : prot.sealCid(type, 1, seq, cid, plaintext);
      this.writeSeq1 = seq + 1;
    } else {
      record = encodeRecord(type, 0, seq, plaintext);
      this.writeSeq0 = seq + 1;
    }
    if (recordSentChannel.hasSubscribers) {
      const ev = recordEvent(
        this.peerLabel,
        this.role,
        type,
        epoch,
        seq,
        Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength),
        this.suite?.keyExchange,
      );
      if (epoch === 1 && this.cidSend !== undefined) ev.cid = this.cidSend.toString('hex');
      recordSentChannel.publish(ev);
    }
    return record;
  }

  private get datagramBudget(): number {
    return Math.max(64, this.opts.mtu - this.opts.ipOverhead);
  }

  /** Bytes a protected record adds besides its header: the suite's, plus the CID's (RFC 9146). */
  private epoch1Overhead(): number {
    const cid = this.cidSend;
    return (this.suite ? recordOverhead(this.suite) : 48) + (cid === undefined ? 0 : cidOverhead(cid.length));
  }

  /** Largest application data payload that fits in one datagram. */
  maxPlaintext(): number {
    const overhead = this.epoch1Overhead();
    return Math.min(MAX_PLAINTEXT, this.datagramBudget - RECORD_HEADER_LENGTH - overhead);
  }

  /** The flight to (re)transmit: the current one, or what a subclass kept after the handshake. */
  protected retransmittableFlight(): FlightItem[] | undefined {
    return this.flight;
  }

  private transmitFlight(): void {
    const items = this.retransmittableFlight();
    if (items === undefined) return;
    const budget = this.datagramBudget;
    let parts: Buffer[] = [];
    let size = 0;
    const flush = () => {
      if (parts.length > 0) this.output(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size));
      parts = [];
      size = 0;
    };
    const push = (rec: Buffer) => {
      if (size > 0 && size + rec.length > budget) flush();
      parts.push(rec);
      size += rec.length;
    };
    for (const item of items) {
      if (item.kind === 'ccs') {
        push(this.makeRecord(ContentType.changeCipherSpec, 0, CCS_BODY));
        continue;
      }
      const overhead = item.epoch === 1 && this.suite ? this.epoch1Overhead() : 0;
      const maxBody = budget - RECORD_HEADER_LENGTH - HANDSHAKE_HEADER_LENGTH - overhead;
      for (const frag of fragmentMessage(item.msgType, item.messageSeq, item.body, maxBody)) {
        push(this.makeRecord(ContentType.handshake, item.epoch, frag));
      }
    }
    flush();
  }

  /** Builds a handshake message of our next message_seq, adds it to the transcript, returns the flight item. */
  protected message(msgType: number, body: Buffer, epoch: 0 | 1 = 0): FlightItem {
    const messageSeq = this.nextSendSeq++;
    this.transcript.add(msgType, messageSeq, body);
    return { kind: 'hs', epoch, msgType, messageSeq, body };
  }

  protected ccs(): FlightItem {
    return { kind: 'ccs' };
  }

  /** The handshake moved on: the stall deadline (stallTimeoutMs) starts again. */
  private progress(): void {
    const stall = this.opts.stallTimeoutMs;
    if (stall !== undefined) this.deadline = Math.min(this.hardDeadline, this.time.now() + stall);
  }

  /** Sends a new flight; `retransmit` false for the final flight of the side that finishes last. */
  protected sendFlight(items: FlightItem[], retransmit = true): void {
    this.progress();
    this.flight = items;
    this.timeoutMs = this.opts.retransmitInitialMs;
    this.transmitFlight();
    this.clearTimer();
    if (retransmit) this.armTimer();
  }

  private armTimer(): void {
    const wait = Math.max(1, Math.min(this.timeoutMs, this.deadline - this.time.now()));
    this.timer = this.time.setTimer(this.onTimerBound, wait, true);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.time.clearTimer(this.timer);
    this.timer = undefined;
  }

  private readonly onTimerBound = (): void => this.onTimer();

  private onTimer(): void {
    this.timer = undefined;
    if (this.state !== 'handshaking') return;
    if (this.time.now() >= this.deadline) {
      const stalled = this.deadline < this.hardDeadline;
      const e = new DtlsHandshakeTimeoutError(
        stalled
          ? `DTLS handshake with ${this.peerLabel} made no progress for ${this.opts.stallTimeoutMs} ms`
          : `DTLS handshake with ${this.peerLabel} timed out`,
      );
      this.fail(e, false, undefined, this.role === 'server' ? 'stalled' : undefined);
      return;
    }
    this.timeoutMs = Math.min(this.timeoutMs * 2, this.opts.retransmitMaxMs);
    try {
      this.transmitFlight();
    } catch (e) {
      this.fail(toDtlsError(e));
      return;
    }
    this.armTimer();
  }

  /** Retransmits the current flight because the peer retransmitted its previous one (rate limited). */
  private retransmitOnPeerRetransmission(): void {
    if (this.state === 'closed') return;
    const items = this.retransmittableFlight();
    if (items === undefined || items.length === 0) return;
    const now = this.time.now();
    if (now - this.lastTriggeredRetransmit < Math.max(10, this.opts.retransmitInitialMs / 4)) return;
    this.lastTriggeredRetransmit = now;
    try {
      this.transmitFlight();
    } catch (e) {
      this.fail(toDtlsError(e));
    }
  }

  /** The verify_data of a Finished (RFC 5246 §7.4.9) over the transcript so far. */
  protected verifyData(master: Buffer, label: 'client finished' | 'server finished'): Buffer {
    const suite = this.suite!;
    return finishedVerifyData(suite, master, label, this.transcript.digest(suite.prfHash));
  }

  /** Installs the pending epoch-1 keys (after the key exchange) from the raw key block (see keyBlockBytes). */
  protected installKeys(suite: CipherSuiteInfo, keys: Buffer): void {
    this.keys = keys;
    this.pendingWrite = protectionFromKeyBlock(suite, keys, this.role, 'write');
    this.pendingRead = protectionFromKeyBlock(suite, keys, this.role, 'read');
    if (this.earlyCcs) this.activateRead();
  }

  /** The connection_id agreement (RFC 9146) takes effect from epoch 1 on, in each direction. */
  protected useCid(a: CidAgreement): void {
    this.cidAgreed = true;
    this.cidSend = a.send.length > 0 ? a.send : undefined;
    this.cidReceive = a.receive.length > 0 ? a.receive : undefined;
  }

  /**
   * `handleRecord` for a record that came from another address than the
   * session's (RFC 9146 §6): if it authenticates and is the newest record seen,
   * `onPathChange` runs before its content is dispatched.
   */
  handleRecordFrom(rec: DtlsRecord, address: string, port: number, via?: unknown): void {
    this.candidatePath = { address, port, via };
    try {
      this.handleRecord(rec);
    } finally {
      this.candidatePath = undefined;
    }
  }

  /**
   * Hook: an authenticated record newer than any seen came from
   * `address`:`port` (through the cluster node `via`, when forwarded): the
   * server moves the session there.
   */
  protected onPathChange(_address: string, _port: number, _via: unknown): void {}

  /** Hook: a protected record of `length` bytes authenticated from the session's current address. */
  protected onAuthenticated(_length: number): void {}

  /** Switches the write side to epoch 1 (call right after queuing the ChangeCipherSpec). */
  protected activateWrite(): void {
    if (this.pendingWrite === undefined)
      throw alertError(AlertDescription.internalError, 'no pending write keys');
    this.writeProt = this.pendingWrite;
    this.writeEpoch = 1;
  }

  protected get peerCcsReceived(): boolean {
    return this.readEpoch === 1;
  }

  private activateRead(): void {
    if (this.pendingRead === undefined || this.readEpoch === 1) return;
    this.readProt = this.pendingRead;
    this.readEpoch = 1;
    this.replay = new ReplayWindow();
    this.earlyCcs = false;
    const future = this.future;
    this.future = undefined;
    this.dropFuture();
    if (future !== undefined) for (const r of future) this.handleRecord(r);
  }

  /** Forgets the kept last flight. */
  protected dropFlight(): void {
    this.flight = undefined;
  }

  /**
   * Drops what a handshake in progress holds (the retransmission timer, records of the
   * next epoch, reassembly buffers, queued sends, keys not yet active): on completion
   * and on close.
   */
  private dropHandshakeProgress(): void {
    this.clearTimer();
    this.future = undefined;
    this.dropFuture();
    this.reassembler.release();
    this.queue = undefined;
    this.pendingRead = undefined;
    this.pendingWrite = undefined;
  }

  /** Marks the handshake complete. `keepFlight` keeps the last flight to answer peer retransmissions. */
  protected complete(keepFlight: boolean): void {
    if (!keepFlight) this.flight = undefined;
    this.state = 'established';
    this.dropHandshakeProgress();
    // Free handshake-only state: idle sessions should stay small.
    this.transcript = RELEASED_TRANSCRIPT;
    this.releaseHandshakeState();
    this.notifyEstablished();
    if (handshakeDoneChannel.hasSubscribers) {
      handshakeDoneChannel.publish({
        peer: this.peerLabel,
        role: this.role,
        suite: this.suite?.name,
        suiteId: this.suite?.id,
        extendedMasterSecret: this.extendedMasterSecret,
        identity: this.identity,
        ...(this.auth !== undefined ? { authMode: this.auth.mode } : {}),
        durationMs: this.time.now() - this.startedAt,
        ...(this.cidAgreed === true
          ? {
              cid: {
                send: this.cidSend?.toString('hex') ?? '',
                receive: this.cidReceive?.toString('hex') ?? '',
              },
            }
          : {}),
      });
    }
  }

  sendApplicationData(data: Uint8Array): void {
    if (this.state !== 'established') throw new DtlsError('DTLS session not established');
    if (data.byteLength > MAX_PLAINTEXT) throw new DtlsError('DTLS application data larger than 2^14 bytes');
    this.output(this.makeRecord(ContentType.applicationData, 1, data));
  }

  private sendAlert(level: 1 | 2, description: number): void {
    try {
      const epoch = this.writeEpoch as 0 | 1;
      this.output(this.makeRecord(ContentType.alert, epoch, Buffer.from([level, description])));
    } catch {
      // best effort
    }
  }

  /** Sends close_notify (if established) and ends the connection without error. */
  close(): void {
    if (this.state === 'closed') return;
    if (this.state === 'established') this.sendAlert(1, AlertDescription.closeNotify);
    this.finish(undefined);
  }

  /** Ends the connection silently (eviction, replacement by a new handshake). */
  destroy(): void {
    if (this.state === 'closed') return;
    this.finish(undefined);
  }

  /**
   * Fails the connection: sends a fatal alert if the error carries one, then reports it.
   * `receivedLevel`: the error is an alert received from the peer, with this level.
   */
  fail(error: DtlsError, sendAlert = true, receivedLevel?: number, reason?: HandshakeRefusal): void {
    if (this.state === 'closed') return;
    const sent = sendAlert && error.alert !== undefined && !(error instanceof DtlsAlertError);
    if (sent) this.sendAlert(2, error.alert!);
    if (this.state === 'handshaking' && handshakeErrorChannel.hasSubscribers) {
      const identity = this.identity ?? this.offeredIdentity;
      let alert: HandshakeErrorEvent['alert'];
      if (error.alert !== undefined && (sent || error instanceof DtlsAlertError)) {
        alert = {
          level: sent ? 2 : (receivedLevel ?? 2),
          description: error.alert,
          name: alertName(error.alert),
          direction: sent ? 'sent' : 'received',
        };
      }
      handshakeErrorChannel.publish(
        handshakeErrorEvent(this.peerLabel, this.role, error, identity, alert, reason),
      );
    }
    this.finish(error);
  }

  private dropFuture(): void {
    if (this.futureCost === 0) return;
    this.reassembler.unhold(this.futureCost);
    this.futureCost = 0;
  }

  private finish(error: DtlsError | undefined): void {
    this.state = 'closed';
    this.flight = undefined;
    this.dropHandshakeProgress();
    this.readProt = undefined;
    this.writeProt = undefined;
    this.keys?.fill(0);
    this.keys = undefined;
    this.notifyClosed(error);
  }

  /** Key log + master secret bookkeeping shared by both roles. */
  protected logKeys(master: Buffer): void {
    if (this.opts.keyLog && this.clientRandom) this.opts.keyLog(this.clientRandom, master);
  }

  // ------------------------------------------------------ snapshot / restore

  /**
   * The state of this established session (undefined otherwise, and while
   * the peer may still need our last handshake flight), with
   * `writeMargin` added to the write sequence number: records this side sends
   * after the snapshot must never reuse a sequence number (nonce) with these keys.
   */
  snapshotSession(writeMargin: number): SessionSnapshot | undefined {
    const keys = this.keys;
    const suite = this.suite;
    if (this.state !== 'established' || keys === undefined || suite === undefined) return undefined;
    // The peer has not shown yet that it got our last flight (the server's Finished, kept until
    // the client's first application data): a restored session could not resend it.
    if (this.retransmittableFlight() !== undefined) return undefined;
    const max = this.replay.highest;
    let bits = 0n;
    for (let i = 0; i < 64 && max - i >= 0; i++) if (!this.replay.check(max - i)) bits |= 1n << BigInt(i);
    return {
      role: this.role,
      suiteId: suite.id,
      extendedMasterSecret: this.extendedMasterSecret,
      identity: this.identity,
      keys: Buffer.from(keys),
      writeSeq: Math.min(MAX_RECORD_SEQ, this.writeSeq1 + writeMargin),
      replayMax: max,
      replayBits: bits.toString(16).padStart(16, '0'),
    };
  }

  /**
   * Makes this fresh connection (nothing sent or received yet) the established
   * session `s` describes. Throws DtlsError for a snapshot that does not fit
   * (other role, unknown suite, key block of the wrong size, bad numbers).
   */
  restoreSession(s: SessionSnapshot): void {
    if (this.state !== 'handshaking' || this.nextSendSeq !== 0 || this.keys !== undefined)
      throw new DtlsError('a session can only be restored into a fresh connection');
    if (s.role !== this.role) throw new DtlsError(`session snapshot of a ${s.role}, not a ${this.role}`);
    const suite = CIPHER_SUITES.get(s.suiteId);
    if (suite === undefined) throw new DtlsError(`session snapshot: unknown cipher suite ${s.suiteId}`);
    const keyBlock = 2 * (suite.macKeyLength + suite.encKeyLength + suite.fixedIvLength);
    if (!Buffer.isBuffer(s.keys) || s.keys.length < keyBlock || s.keys.length > keyBlock + 64)
      throw new DtlsError('session snapshot: key block of the wrong size');
    const seqOk = (n: number, min: number) => Number.isSafeInteger(n) && n >= min && n <= MAX_RECORD_SEQ;
    if (!seqOk(s.writeSeq, 0) || !seqOk(s.replayMax, -1) || !/^[0-9a-f]{16}$/.test(s.replayBits))
      throw new DtlsError('session snapshot: bad sequence numbers');
    const replay = new ReplayWindow();
    if (s.replayMax >= 0) {
      const bits = BigInt(`0x${s.replayBits}`);
      // Oldest first, the highest last: each update leaves the window where the snapshot had it.
      for (let i = 63; i >= 1; i--)
        if (s.replayMax - i >= 0 && (bits >> BigInt(i)) & 1n) replay.update(s.replayMax - i);
      replay.update(s.replayMax);
    }
    const keys = Buffer.allocUnsafeSlow(s.keys.length);
    s.keys.copy(keys);
    this.suite = suite;
    this.extendedMasterSecret = s.extendedMasterSecret === true;
    this.identity = s.identity;
    this.keys = keys;
    this.readProt = protectionFromKeyBlock(suite, keys, this.role, 'read');
    this.writeProt = protectionFromKeyBlock(suite, keys, this.role, 'write');
    this.readEpoch = 1;
    this.writeEpoch = 1;
    this.writeSeq1 = s.writeSeq;
    this.replay = replay;
    this.state = 'established';
    this.lastActivity = this.time.now();
    this.dropHandshakeProgress();
    this.transcript = RELEASED_TRANSCRIPT;
    this.releaseHandshakeState();
  }

  // -------------------------------------------------------------- receiving

  /** Entry point for one record received from this peer. */
  handleRecord(rec: DtlsRecord): void {
    if (this.state === 'closed') return;
    if (rec.epoch === this.readEpoch) {
      this.processRecord(rec);
    } else if (rec.epoch === this.readEpoch + 1 && this.state === 'handshaking') {
      // Kept as a copy (a view would pin the whole datagram), charged to the reassembly budget.
      const len = rec.fragment.length;
      const cost = len + FUTURE_RECORD_OVERHEAD;
      if ((this.future?.length ?? 0) >= MAX_FUTURE_RECORDS || !this.reassembler.hold(cost)) return;
      this.futureCost += cost;
      const copy = Buffer.allocUnsafeSlow(len);
      rec.fragment.copy(copy);
      this.future ??= [];
      this.future.push({ ...rec, fragment: copy });
    } else if (rec.epoch < this.readEpoch && rec.type === ContentType.handshake) {
      // Epoch-0 handshake record after we switched: the peer retransmitted its previous flight.
      let frags: HandshakeFragment[];
      try {
        frags = parseHandshakeFragments(rec.fragment);
      } catch {
        return;
      }
      if (frags.some((f) => this.reassembler.isOld(f))) this.retransmitOnPeerRetransmission();
    }
    // Anything else (old-epoch alerts / CCS, far-future epochs) is dropped.
  }

  /**
   * All records of a datagram from this peer. An application_data record of an
   * established session takes the fast path (no record object; decrypted in
   * place); anything else goes through `handleRecord`.
   */
  handleDatagram(data: Buffer): void {
    let o = 0;
    for (let end = recordEnd(data, o); ; end = recordEnd(data, o)) {
      if (end < 0) {
        // Not an ordinary record: a tls12_cid record carrying our CID, or the end.
        const cid = this.cidReceive;
        if (cid === undefined) return;
        end = cidRecordEnd(data, o, cid.length);
        if (end < 0) return;
        if (cid.compare(data, o + 11, o + 11 + cid.length) === 0)
          this.handleRecord(cidRecordAt(data, o, end, cid.length));
        o = end;
        continue;
      }
      if (
        data[o] === ContentType.applicationData &&
        data[o + 3] === 0 &&
        data[o + 4] === 1 &&
        this.state === 'established'
      ) {
        this.receiveApplicationData(data, o, end);
      } else {
        this.handleRecord(recordAt(data, o, end));
      }
      o = end;
    }
  }

  /**
   * The application_data record `data[o..end]` (epoch 1, header validated by
   * recordEnd) of an established session: exactly what `handleRecord` does
   * with it, without building the record object or a fragment view.
   */
  receiveApplicationData(data: Buffer, o: number, end: number): void {
    // Established means both epochs are 1 (only epochs 0 and 1 exist).
    const prot = this.readProt;
    const seq = recordSeq(data, o);
    // With our CID agreed, protected records must carry it (RFC 9146 §4).
    if (prot === undefined || this.cidReceive !== undefined || !this.replay.check(seq)) return;
    const off = o + RECORD_HEADER_LENGTH;
    const plaintext = prot.open(ContentType.applicationData, 1, seq, data, off, end - off);
    if (plaintext === undefined) return; // §4.1.2.7: invalid records are silently discarded
    this.replay.update(seq);
    if (!this.accept(ContentType.applicationData, 1, seq, plaintext)) return;
    this.onApplicationData();
    this.notifyData(plaintext);
  }

  /**
   * What every authenticated record goes through before it is dispatched:
   * the plaintext size limit, the activity clock and the diagnostics event.
   * False when the record is to be dropped.
   */
  private accept(type: number, epoch: number, seq: number, plaintext: Buffer): boolean {
    if (plaintext.length > MAX_PLAINTEXT) return false;
    this.lastActivity = this.time.now();
    if (recordReceivedChannel.hasSubscribers) {
      const ev = recordEvent(this.peerLabel, this.role, type, epoch, seq, plaintext, this.suite?.keyExchange);
      if (epoch > 0 && this.cidReceive !== undefined) ev.cid = this.cidReceive.toString('hex');
      recordReceivedChannel.publish(ev);
    }
    return true;
  }

  private processRecord(rec: DtlsRecord): void {
    let plaintext: Buffer;
    let type = rec.type;
    if (rec.epoch > 0) {
      const prot = this.readProt;
      if (prot === undefined || !this.replay.check(rec.seq)) return;
      const cid = this.cidReceive;
      // With our CID agreed, protected records carry it; without, none does (RFC 9146 §4).
      if ((type === TLS12_CID) !== (cid !== undefined)) return;
      const frag = rec.fragment;
      let pt: Buffer | undefined;
      if (cid === undefined) pt = prot.open(type, rec.epoch, rec.seq, frag, 0, frag.length);
      else {
        const inner = prot.openCid(rec.epoch, rec.seq, cid, frag, 0, frag.length);
        const parsed = inner === undefined ? undefined : decodeInnerPlaintext(inner);
        if (parsed !== undefined) {
          pt = parsed.content;
          type = parsed.type;
        } else if (inner !== undefined) return; // authenticated, but no content type: dropped
      }
      if (pt === undefined) {
        // §4.1.2.7: invalid records are silently discarded. While we wait for the
        // peer's Finished, a record that fails authentication means a wrong key.
        if (this.state === 'handshaking' && (rec.type === ContentType.handshake || rec.type === TLS12_CID)) {
          this.fail(
            alertError(
              AlertDescription.badRecordMac,
              "DTLS record authentication failed: the peer's Finished did not decrypt (wrong PSK?)",
            ),
          );
        }
        return;
      }
      plaintext = pt;
      const newest = rec.seq > this.replay.highest;
      this.replay.update(rec.seq);
      const moved = this.candidatePath;
      let onPath = moved === undefined;
      if (moved !== undefined && newest && this.state === 'established') {
        this.onPathChange(moved.address, moved.port, moved.via);
        onPath = true;
      }
      if (onPath) this.onAuthenticated(frag.length);
    } else {
      if (type === TLS12_CID) return;
      plaintext = rec.fragment;
    }
    if (!this.accept(type, rec.epoch, rec.seq, plaintext)) return;
    switch (type) {
      case ContentType.handshake:
        this.handleHandshakeRecord(plaintext, rec.epoch);
        break;
      case ContentType.changeCipherSpec:
        if (plaintext.length !== 1 || plaintext[0] !== 1 || rec.epoch !== 0 || this.state !== 'handshaking')
          return;
        if (this.pendingRead !== undefined) this.activateRead();
        else this.earlyCcs = true;
        break;
      case ContentType.alert:
        this.handleAlert(plaintext, rec.epoch);
        break;
      case ContentType.applicationData:
        if (this.state === 'established' && rec.epoch === 1) {
          this.onApplicationData();
          this.notifyData(plaintext);
        }
        break;
    }
  }

  /** Hook: subclasses drop handshake-only secrets and buffers once established. */
  protected releaseHandshakeState(): void {}

  /** Hook: the server drops its kept last flight once the client proves it got it. */
  protected onApplicationData(): void {}

  private handleAlert(pt: Buffer, epoch: number): void {
    if (pt.length !== 2) return;
    // After the handshake, only authenticated (epoch 1) alerts are honoured.
    if (this.state === 'established' && epoch === 0) return;
    const level = pt[0]!;
    const desc = pt[1]!;
    if (desc === AlertDescription.closeNotify) {
      if (this.state === 'established') this.finish(undefined);
      else
        this.fail(
          Object.assign(new DtlsAlertError('peer closed the DTLS handshake (close_notify)'), { alert: 0 }),
          false,
          level,
        );
      return;
    }
    if (level === 2) {
      const e = new DtlsAlertError(`DTLS fatal alert from peer: ${alertName(desc)} (${desc})`);
      e.alert = desc;
      this.fail(e, false, level);
    }
    // warnings (no_renegotiation, ...) are ignored
  }

  private handleHandshakeRecord(pt: Buffer, epoch: number): void {
    let frags: HandshakeFragment[];
    try {
      frags = parseHandshakeFragments(pt);
    } catch {
      return;
    }
    for (const f of frags) {
      if (this.reassembler.isOld(f)) {
        this.retransmitOnPeerRetransmission();
        continue;
      }
      if (this.state === 'established') {
        // A new handshake inside the session: renegotiation is not supported.
        if (epoch === 1 && !this.refusedRenegotiation) {
          this.refusedRenegotiation = true;
          this.sendAlert(1, AlertDescription.noRenegotiation);
        }
        continue;
      }
      // Finished must be protected (epoch 1); nothing else may be.
      if ((f.msgType === HandshakeType.finished) !== (epoch === 1)) continue;
      try {
        const msgs = this.reassembler.add(f);
        if (msgs.length > 0) {
          this.progress();
          this.queue ??= [];
          for (const m of msgs) this.queue.push(m);
        }
      } catch (e) {
        this.fail(toDtlsError(e));
        return;
      }
    }
    this.pump();
  }

  private pump(): void {
    while (
      !this.blocked &&
      this.queue !== undefined &&
      this.queue.length > 0 &&
      this.state === 'handshaking'
    ) {
      const m = this.queue.shift()!;
      try {
        const r = this.handleMessage(m);
        if (r !== undefined) {
          this.blocked = true;
          r.then(
            () => {
              this.blocked = false;
              this.pump();
            },
            (e: unknown) => {
              this.blocked = false;
              this.fail(toDtlsError(e));
            },
          );
          return;
        }
      } catch (e) {
        this.fail(toDtlsError(e));
        return;
      }
    }
  }

  protected unexpected(msg: HandshakeMessage): DtlsError {
    return alertError(AlertDescription.unexpectedMessage, `unexpected handshake message ${msg.msgType}`);
  }
}
