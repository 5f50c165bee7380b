/**
 * Passive DTLS 1.2 decoder: record layer, handshake messages, alerts, CCS and
 * decryption of protected records when the PSK (or an NSS key log) is known.
 * Crypto, name tables, the byte reader, the handshake header and the record
 * sequence number come from src/dtls (PRF, key schedule, record protection,
 * transcript, names.ts, handshake/reader.ts, fragment.ts, record.ts).
 *
 * Two parts stay separate from the DTLS layer's parsers on purpose: this
 * decoder reads captures of any peer, so it must show what it can of what the
 * endpoint would reject. The record header walk accepts any content type and
 * version and RFC 9146 tls12_cid records (recordEnd stops at them), and the
 * handshake bodies are decoded field by field into a partial result with an
 * `error` (the layer's decodeClientHello etc. throw at the first problem and
 * know only the messages and suites coapkit speaks: no DHE_PSK,
 * NewSessionTicket or connection_id).
 */

import { Buffer } from 'node:buffer';
import { toHex } from '../capture/bytes.js';
import { finishedVerifyData, keyBlock, masterSecret, pskPremasterSecret } from '../dtls/crypto/keys.js';
import { CIPHER_SUITES, type CipherSuiteInfo } from '../dtls/crypto/suites.js';
import { describeCertificates } from '../dtls/diag.js';
import { HANDSHAKE_HEADER_LENGTH, handshakeFragmentAt } from '../dtls/handshake/fragment.js';
import { HandshakeTranscript } from '../dtls/handshake/hash.js';
import { Reader } from '../dtls/handshake/reader.js';
import {
  ALERT_NAMES,
  CONTENT_TYPE_NAMES,
  cipherSuiteName,
  EXTENSION_NAMES,
  GROUP_NAMES,
  HANDSHAKE_TYPE_NAMES,
  versionName,
} from '../dtls/names.js';
import { decodeInnerPlaintext } from '../dtls/record/cid.js';
import { createRecordProtection, type RecordProtection } from '../dtls/record/protection.js';
import { RECORD_HEADER_LENGTH, recordSeq } from '../dtls/record/record.js';

/** 13: type, version, epoch, sequence number, length (RFC 6347 §4.1). */
export const DTLS_RECORD_HEADER_LENGTH = RECORD_HEADER_LENGTH;
const MAX_REASSEMBLY = 1 << 20;

export interface NamedValue {
  id: number;
  name: string;
}

export interface DtlsExtension {
  type: number;
  name: string;
  length: number;
  /** Decoded content for the extensions we know (server name, groups...). */
  detail?: string;
  /** connection_id extension: the CID (hex) its sender wants to receive. */
  cid?: string;
  /** session_ticket extension: the ticket offered by the client (hex). */
  data?: string;
}

export interface DtlsHandshake {
  msgType: number;
  name: string;
  length: number;
  messageSeq: number;
  fragmentOffset: number;
  fragmentLength: number;
  /** This record carried only part of the message. */
  fragmented: boolean;
  /** The message was completed by this fragment (fragments reassembled). */
  reassembled?: boolean;
  /** Same message_seq already seen: a retransmitted flight. */
  retransmission?: boolean;
  version?: number;
  versionName?: string;
  random?: string;
  sessionId?: string;
  cookie?: string;
  cipherSuites?: NamedValue[];
  cipherSuite?: NamedValue;
  compressionMethods?: number[];
  extensions?: DtlsExtension[];
  pskIdentityHint?: string;
  pskIdentity?: string;
  curve?: NamedValue;
  publicKey?: string;
  /** Certificate: each X.509 subject (leaf first) or `raw public key <fingerprint>`. */
  certificates?: string[];
  /** ServerKeyExchange (ECDHE_ECDSA) / CertificateVerify: the signature algorithm (0x0403 ecdsa_secp256r1_sha256). */
  signatureAlgorithm?: number;
  verifyData?: string;
  /** NewSessionTicket lifetime hint (seconds) and ticket size. */
  ticketLifetimeHint?: number;
  ticketLength?: number;
  ticket?: string;
  /** Finished verify_data matched the transcript (only when keys are known). */
  verified?: boolean;
  error?: string;
}

export interface DtlsAlert {
  level: number;
  levelName: string;
  description: number;
  descriptionName: string;
}

export interface DtlsRecord {
  contentType: number;
  contentTypeName: string;
  version: number;
  versionName: string;
  epoch: number;
  seq: number;
  /** Length of the record fragment (after the header). */
  length: number;
  /** 13, or 13 + CID length for tls12_cid records. */
  headerLength: number;
  /** Connection ID (hex) of a tls12_cid record. */
  cid?: string;
  /** The real content type inside a decrypted tls12_cid record (RFC 9146 DTLSInnerPlaintext). */
  innerContentType?: number;
  /** Its name (`ApplicationData`, `Handshake`, `Alert`...). */
  innerContentTypeName?: string;
  encrypted: boolean;
  decrypted?: boolean;
  /** Bytes added by protection (explicit nonce + tag/MAC + padding). */
  protectionOverhead?: number;
  plaintextLength?: number;
  handshake?: DtlsHandshake[];
  alert?: DtlsAlert;
  changeCipherSpec?: boolean;
  /** Why an encrypted record could not be read. */
  note?: string;
}

export type DecryptionStatus =
  | 'decrypted'
  | 'no-key'
  | 'unsupported-suite'
  | 'missing-handshake'
  | 'wrong-key'
  | 'nothing-encrypted';

export interface DtlsSessionSummary {
  id: number;
  client: string;
  server: string;
  version?: string;
  cookie?: string;
  offeredSuites?: NamedValue[];
  cipherSuite?: NamedValue;
  extendedMasterSecret: boolean;
  encryptThenMac: boolean;
  pskIdentity?: string;
  pskIdentityHint?: string;
  clientRandom?: string;
  serverRandom?: string;
  /** Where the key came from, when decryption worked. */
  keySource?: 'psk' | 'keylog';
  /** Session id chosen by the server (hex), if any. */
  sessionId?: string;
  /** Abbreviated handshake resuming an earlier session (session id or ticket). */
  resumed?: boolean;
  decryption: { status: DecryptionStatus; detail: string };
  handshakeComplete: boolean;
}

interface Reassembly {
  msgType: number;
  length: number;
  buf: Uint8Array;
  have: Uint8Array;
  count: number;
}

export interface DtlsDatagramResult {
  session: DtlsSession;
  /** Direction of this datagram. */
  fromClient: boolean;
  records: DtlsRecord[];
  /** Decrypted application data, in record order. */
  applicationData: { record: DtlsRecord; plaintext: Uint8Array }[];
  error?: string;
}

export class DtlsSession {
  readonly summary: DtlsSessionSummary;
  clientRandom?: Uint8Array;
  serverRandom?: Uint8Array;
  suiteId?: number;
  suite?: CipherSuiteInfo;
  clientOfferedEms = false;
  serverAcceptedEms = false;
  transcript = new HandshakeTranscript();
  seen = new Map<string, number>();
  reassembly = new Map<string, Reassembly>();
  master?: Uint8Array;
  readClient?: RecordProtection;
  readServer?: RecordProtection;
  sawServerHello = false;
  offeredSessionId?: string;
  offeredTicket?: string;
  /** CIDs each side asked to receive (connection_id extension), hex. */
  clientCid?: string;
  serverCid?: string;
  encryptedRecords = 0;
  decryptedRecords = 0;
  failedRecords = 0;

  constructor(
    id: number,
    /** The client's address; it changes when a tls12_cid record comes from a new one (RFC 9146 §6). */
    public clientKey: string,
    readonly serverKey: string,
  ) {
    this.summary = {
      id,
      client: clientKey,
      server: serverKey,
      extendedMasterSecret: false,
      encryptThenMac: false,
      decryption: { status: 'nothing-encrypted', detail: 'no protected records seen' },
      handshakeComplete: false,
    };
  }
}

export interface DtlsTrackerOptions {
  psk?: Uint8Array;
  /** client_random (hex, lowercase) -> master secret, from an NSS key log. */
  keylog?: Map<string, Uint8Array>;
}

/** Parses an NSS key log file (`CLIENT_RANDOM <client_random> <master_secret>`). */
export function parseKeylog(text: string): Map<string, Uint8Array> {
  const map = new Map<string, Uint8Array>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^CLIENT_RANDOM\s+([0-9a-fA-F]{64})\s+([0-9a-fA-F]{96})\s*$/.exec(line.trim());
    if (m?.[1] && m[2]) map.set(m[1].toLowerCase(), Buffer.from(m[2], 'hex'));
  }
  return map;
}

/** The DTLS layer's bounds-checked reader over any byte array (a view, no copy). */
function reader(b: Uint8Array): Reader {
  return new Reader(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function latin(b: Uint8Array): string {
  return Buffer.from(b).toString('utf8');
}

function parseExtensions(r: Reader): DtlsExtension[] {
  const out: DtlsExtension[] = [];
  if (r.remaining === 0) return out;
  const all = reader(r.vector(2, 'extensions'));
  while (all.remaining > 0) {
    const type = all.u16('extension type');
    const data = all.vector(2, 'extension data');
    const ext: DtlsExtension = {
      type,
      name: EXTENSION_NAMES[type] ?? `unknown(${type})`,
      length: data.length,
    };
    try {
      const d = reader(data);
      if (type === 0 && data.length >= 5) {
        const list = reader(d.vector(2, 'server_name list'));
        const names: string[] = [];
        while (list.remaining > 0) {
          list.u8('name type');
          names.push(latin(list.vector(2, 'host name')));
        }
        ext.detail = names.join(', ');
      } else if (type === 10) {
        const list = reader(d.vector(2, 'groups'));
        const names: string[] = [];
        while (list.remaining >= 2) {
          const g = list.u16('group');
          names.push(GROUP_NAMES[g] ?? `0x${g.toString(16).padStart(4, '0')}`);
        }
        ext.detail = names.join(', ');
      } else if (type === 1 && data.length === 1) {
        ext.detail = `2^${8 + (data[0] as number)}`;
      } else if (type === 28 && data.length === 2) {
        ext.detail = String(d.u16('limit'));
      } else if (type === 35 && data.length > 0) {
        ext.data = toHex(data);
        ext.detail = `ticket of ${data.length} B`;
      } else if (type === 65281) {
        ext.detail = data.length <= 1 ? 'empty (initial handshake)' : toHex(data);
      } else if ((type === 54 || type === 53) && data.length >= 1) {
        ext.cid = toHex(d.vector(1, 'cid'));
        ext.detail = `cid ${ext.cid || '(empty)'}`;
      }
    } catch {
      ext.detail = 'malformed';
    }
    out.push(ext);
  }
  return out;
}

function named(id: number): NamedValue {
  return { id, name: cipherSuiteName(id) };
}

/** Decodes the body of a complete handshake message into `hs`. */
function decodeHandshakeBody(hs: DtlsHandshake, body: Uint8Array, suiteId: number | undefined): void {
  const suiteName = suiteId === undefined ? '' : cipherSuiteName(suiteId);
  const r = reader(body);
  try {
    switch (hs.msgType) {
      case 1: {
        hs.version = r.u16('version');
        hs.versionName = versionName(hs.version);
        hs.random = toHex(r.bytes(32, 'random'));
        hs.sessionId = toHex(r.vector(1, 'session id'));
        hs.cookie = toHex(r.vector(1, 'cookie'));
        const suites = reader(r.vector(2, 'cipher suites'));
        hs.cipherSuites = [];
        while (suites.remaining >= 2) hs.cipherSuites.push(named(suites.u16('cipher suite')));
        hs.compressionMethods = [...r.vector(1, 'compression methods')];
        hs.extensions = parseExtensions(r);
        break;
      }
      case 3:
        hs.version = r.u16('version');
        hs.versionName = versionName(hs.version);
        hs.cookie = toHex(r.vector(1, 'cookie'));
        break;
      case 2: {
        hs.version = r.u16('version');
        hs.versionName = versionName(hs.version);
        hs.random = toHex(r.bytes(32, 'random'));
        hs.sessionId = toHex(r.vector(1, 'session id'));
        hs.cipherSuite = named(r.u16('cipher suite'));
        hs.compressionMethods = [r.u8('compression method')];
        hs.extensions = parseExtensions(r);
        break;
      }
      case 11:
        hs.certificates = describeCertificates(body);
        break;
      case 15:
        hs.signatureAlgorithm = r.u16('signature algorithm');
        r.vector(2, 'signature');
        break;
      case 12: {
        // ECDHE_ECDSA: signed ServerECDHParams (RFC 8422 §5.4).
        if (suiteName.includes('_ECDHE_ECDSA_')) {
          if (r.u8('curve type') !== 3) break;
          const g = r.u16('named curve');
          hs.curve = { id: g, name: GROUP_NAMES[g] ?? `0x${g.toString(16)}` };
          hs.publicKey = toHex(r.vector(1, 'public key'));
          hs.signatureAlgorithm = r.u16('signature algorithm');
          r.vector(2, 'signature');
          break;
        }
        // PSK: psk_identity_hint; ECDHE_PSK: hint + ServerECDHParams (RFC 5489);
        // DHE_PSK: hint + ServerDHParams (RFC 4279 §3).
        hs.pskIdentityHint = latin(r.vector(2, 'psk identity hint'));
        if (r.remaining > 0 && suiteName.includes('_ECDHE_PSK_')) {
          const curveType = r.u8('curve type');
          if (curveType === 3) {
            const g = r.u16('named curve');
            hs.curve = { id: g, name: GROUP_NAMES[g] ?? `0x${g.toString(16)}` };
          }
          hs.publicKey = toHex(r.vector(1, 'public key'));
        } else if (r.remaining > 0 && suiteName.includes('_DHE_PSK_')) {
          r.vector(2, 'dh_p');
          r.vector(2, 'dh_g');
          hs.publicKey = toHex(r.vector(2, 'dh_Ys'));
        }
        break;
      }
      case 16: {
        if (suiteName.includes('_ECDHE_ECDSA_')) {
          hs.publicKey = toHex(r.vector(1, 'public key'));
          break;
        }
        hs.pskIdentity = latin(r.vector(2, 'psk identity'));
        if (r.remaining > 0)
          hs.publicKey = toHex(
            suiteName.includes('_DHE_PSK_') ? r.vector(2, 'dh_Yc') : r.vector(1, 'public key'),
          );
        break;
      }
      case 20:
        hs.verifyData = toHex(body);
        break;
      case 4: {
        // RFC 5077: lifetime hint + opaque ticket.
        hs.ticketLifetimeHint = r.bytes(4, 'ticket lifetime').readUInt32BE(0);
        const ticket = r.vector(2, 'ticket');
        hs.ticketLength = ticket.length;
        hs.ticket = toHex(ticket);
        break;
      }
      default:
        break;
    }
  } catch (e) {
    hs.error = e instanceof Error ? e.message : String(e);
  }
}

interface ResumableSecret {
  master: Uint8Array;
  source: 'psk' | 'keylog';
}

export class DtlsTracker {
  readonly sessions: DtlsSession[] = [];
  /** Master secrets by `sid:<session id>` / `ticket:<ticket>`, for abbreviated handshakes. */
  private resumable = new Map<string, ResumableSecret>();
  private byFlow = new Map<string, DtlsSession>();

  constructor(private readonly options: DtlsTrackerOptions = {}) {}

  private flowKey(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  /** True once a datagram between these two endpoints ("ip:port") was decoded as DTLS. */
  hasFlow(a: string, b: string): boolean {
    return this.byFlow.has(this.flowKey(a, b));
  }

  /** Decodes one UDP datagram sent from `src` to `dst` ("ip:port" strings). */
  processDatagram(
    src: string,
    dst: string,
    payload: Uint8Array,
    serverPorts: ReadonlySet<number>,
  ): DtlsDatagramResult {
    const key = this.flowKey(src, dst);
    let session = this.byFlow.get(key) ?? this.sessionByCid(key, src, payload);
    // A fresh ClientHello (message_seq 0, epoch 0) on a flow that already had a
    // ServerHello starts a new session.
    if (session === undefined || (session.sawServerHello && startsNewHandshake(payload))) {
      const srcPort = Number(src.slice(src.lastIndexOf(':') + 1));
      const dstPort = Number(dst.slice(dst.lastIndexOf(':') + 1));
      // Who is the client: the sender of a ClientHello; not the sender of a HelloVerifyRequest
      // or ServerHello; else the side not on a server port; on two unknown ports, the
      // higher (ephemeral-looking) port.
      const fromClient =
        startsNewHandshake(payload) ||
        (!startsServerFlight(payload) &&
          !serverPorts.has(srcPort) &&
          (serverPorts.has(dstPort) || srcPort >= dstPort));
      session = new DtlsSession(this.sessions.length + 1, fromClient ? src : dst, fromClient ? dst : src);
      this.sessions.push(session);
      this.byFlow.set(key, session);
    }
    const fromClient = src === session.clientKey;
    const result: DtlsDatagramResult = { session, fromClient, records: [], applicationData: [] };
    let o = 0;
    while (o < payload.length) {
      if (payload.length - o < DTLS_RECORD_HEADER_LENGTH) {
        result.error = `truncated DTLS record header (${payload.length - o} bytes left)`;
        break;
      }
      const b = payload;
      let contentType = b[o] as number;
      const version = ((b[o + 1] as number) << 8) | (b[o + 2] as number);
      const epoch = ((b[o + 3] as number) << 8) | (b[o + 4] as number);
      const seq = recordSeq(b, o);
      // RFC 9146 records (tls12_cid) carry the receiver's connection ID before the length.
      let cid: string | undefined;
      let hdr = DTLS_RECORD_HEADER_LENGTH;
      if (contentType === 25) {
        const cidHex = fromClient ? session.serverCid : session.clientCid;
        if (cidHex === undefined) {
          result.error = 'tls12_cid record but no connection ID was negotiated in this capture';
          break;
        }
        cid = cidHex;
        hdr += cidHex.length / 2;
        if (payload.length - o < hdr) {
          result.error = `truncated DTLS record header (${payload.length - o} bytes left)`;
          break;
        }
      }
      const length = ((b[o + hdr - 2] as number) << 8) | (b[o + hdr - 1] as number);
      if (o + hdr + length > payload.length) {
        result.error = `truncated DTLS record: length ${length}, ${payload.length - o - hdr} bytes left`;
        break;
      }
      const fragment = payload.subarray(o + hdr, o + hdr + length);
      o += hdr + length;
      const rec: DtlsRecord = {
        contentType,
        contentTypeName: CONTENT_TYPE_NAMES[contentType] ?? `unknown(${contentType})`,
        version,
        versionName: versionName(version),
        epoch,
        seq,
        length,
        headerLength: hdr,
        encrypted: epoch > 0,
      };
      result.records.push(rec);
      let plain: Uint8Array | undefined = fragment;
      if (cid !== undefined) {
        rec.cid = cid;
        // RFC 9146: the protected content is content | real_type | zeros.
        const inner = epoch > 0 ? this.decrypt(session, fromClient, rec, fragment, cid) : undefined;
        if (inner === undefined) continue;
        const d = decodeInnerPlaintext(Buffer.from(inner.buffer, inner.byteOffset, inner.byteLength));
        if (d === undefined) {
          rec.note = 'tls12_cid record without a content type (its inner plaintext is all zeros)';
          continue;
        }
        contentType = d.type;
        rec.innerContentType = d.type;
        rec.innerContentTypeName = CONTENT_TYPE_NAMES[d.type] ?? `unknown(${d.type})`;
        rec.plaintextLength = d.content.length;
        plain = d.content;
      } else if (epoch > 0) plain = this.decrypt(session, fromClient, rec, fragment);
      if (plain === undefined) continue;
      switch (contentType) {
        case 20:
          rec.changeCipherSpec = true;
          break;
        case 21:
          if (plain.length >= 2) {
            rec.alert = {
              level: plain[0] as number,
              levelName: plain[0] === 1 ? 'warning' : plain[0] === 2 ? 'fatal' : `level ${plain[0]}`,
              description: plain[1] as number,
              descriptionName: ALERT_NAMES[plain[1] as number] ?? `alert ${plain[1]}`,
            };
          } else rec.note = 'malformed alert';
          break;
        case 22:
          rec.handshake = this.handshake(session, fromClient, plain);
          break;
        case 23:
          result.applicationData.push({ record: rec, plaintext: plain });
          break;
        default:
          break;
      }
    }
    return result;
  }

  /**
   * The session a tls12_cid record on a flow not seen before belongs to: the
   * one whose server asked for the CID it carries (the client moved, RFC 9146
   * §6). The flow is joined to it and the client's address updated.
   */
  private sessionByCid(key: string, src: string, payload: Uint8Array): DtlsSession | undefined {
    if (payload[0] !== 25 || payload.length < DTLS_RECORD_HEADER_LENGTH) return undefined;
    for (let i = this.sessions.length - 1; i >= 0; i--) {
      const s = this.sessions[i]!;
      const cid = s.serverCid;
      if (cid === undefined || cid.length === 0) continue;
      if (payload.length < DTLS_RECORD_HEADER_LENGTH + cid.length / 2) continue;
      if (toHex(payload.subarray(11, 11 + cid.length / 2)) !== cid) continue;
      s.clientKey = src;
      s.summary.client = src;
      this.byFlow.set(key, s);
      return s;
    }
    return undefined;
  }

  private decrypt(
    session: DtlsSession,
    fromClient: boolean,
    rec: DtlsRecord,
    fragment: Uint8Array,
    cid?: string,
  ): Uint8Array | undefined {
    session.encryptedRecords++;
    const s = session.summary;
    if (epochUnsupported(rec.epoch)) {
      rec.note = `epoch ${rec.epoch} (renegotiation) is not decrypted`;
      return undefined;
    }
    const prot = fromClient ? session.readClient : session.readServer;
    if (prot === undefined || session.suite === undefined) {
      rec.note = `not decrypted: ${s.decryption.status === 'nothing-encrypted' ? this.missingReason(session) : s.decryption.detail}`;
      if (s.decryption.status === 'nothing-encrypted')
        s.decryption = { status: statusFor(session, this.options), detail: this.missingReason(session) };
      return undefined;
    }
    try {
      const plain =
        cid === undefined
          ? prot.decrypt(rec.contentType, rec.epoch, rec.seq, fragment)
          : prot.decryptCid(rec.epoch, rec.seq, Buffer.from(cid, 'hex'), fragment);
      rec.decrypted = true;
      rec.plaintextLength = plain.length;
      rec.protectionOverhead = fragment.length - plain.length;
      session.decryptedRecords++;
      if (s.decryption.status !== 'wrong-key') {
        s.decryption = {
          status: 'decrypted',
          detail: `decrypted with ${session.suite.name} (key from ${s.keySource === 'keylog' ? '--keylog' : 'PSK'}${s.resumed ? ' of the resumed session' : ''}${s.extendedMasterSecret ? ', extended master secret' : ''})`,
        };
      }
      return plain;
    } catch {
      session.failedRecords++;
      rec.note = 'authentication failed: wrong PSK / key, or corrupt record';
      s.decryption = {
        status: 'wrong-key',
        detail:
          session.decryptedRecords > 0
            ? `${session.failedRecords} record(s) failed authentication`
            : 'records fail authentication: the PSK or key log does not match this session',
      };
      return undefined;
    }
  }

  private missingReason(session: DtlsSession): string {
    if (session.clientRandom === undefined || session.serverRandom === undefined)
      return 'missing handshake (ClientHello/ServerHello not in the capture)';
    if (session.suiteId !== undefined && session.suite === undefined)
      return `unsupported cipher suite ${cipherSuiteName(session.suiteId)}`;
    const s = session.suite;
    if (this.options.psk === undefined && this.options.keylog === undefined)
      return 'no key: pass --psk / --psk-hex (or --keylog)';
    if (session.summary.resumed && session.master === undefined)
      return 'abbreviated handshake resuming a session whose keys are unknown (its full handshake is not in this capture or was not decrypted); pass --keylog';
    if (s?.keyExchange === 'ecdhe_psk') return `${s.name} uses ECDHE: a PSK is not enough, pass --keylog`;
    if (s?.keyExchange === 'ecdhe_ecdsa') return `${s.name} uses certificates and ECDHE: pass --keylog`;
    return 'no key for this session (ClientKeyExchange missing or client random not in the key log)';
  }

  private handshake(session: DtlsSession, fromClient: boolean, plain: Uint8Array): DtlsHandshake[] {
    const out: DtlsHandshake[] = [];
    const data = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
    let o = 0;
    while (o < data.length) {
      if (data.length - o < HANDSHAKE_HEADER_LENGTH) {
        out.push(errorHs(`truncated handshake header (${data.length - o} bytes)`));
        break;
      }
      // The DTLS layer's header reader; unlike it, a bad fragment is shown (with what was read) not thrown.
      const f = handshakeFragmentAt(data, o);
      const { msgType, length, messageSeq, fragmentOffset, fragmentLength } = f;
      const hs: DtlsHandshake = {
        msgType,
        name: HANDSHAKE_TYPE_NAMES[msgType] ?? `unknown(${msgType})`,
        length,
        messageSeq,
        fragmentOffset,
        fragmentLength,
        fragmented: fragmentOffset !== 0 || fragmentLength !== length,
      };
      out.push(hs);
      if (f.body.length < fragmentLength || fragmentOffset + fragmentLength > length) {
        hs.error = 'fragment exceeds record or message length';
        break;
      }
      const frag = f.body;
      o += HANDSHAKE_HEADER_LENGTH + fragmentLength;
      const dir = fromClient ? 'c' : 's';
      const seenKey = `${dir}${messageSeq}:${msgType}`;
      if (session.seen.has(seenKey)) {
        hs.retransmission = true;
        if (!hs.fragmented) decodeHandshakeBody(hs, frag, session.suiteId);
        continue;
      }
      let body: Uint8Array | undefined;
      if (!hs.fragmented) body = frag;
      else if (length <= MAX_REASSEMBLY) {
        let ra = session.reassembly.get(seenKey);
        if (ra === undefined || ra.length !== length) {
          ra = { msgType, length, buf: new Uint8Array(length), have: new Uint8Array(length), count: 0 };
          session.reassembly.set(seenKey, ra);
        }
        ra.buf.set(frag, fragmentOffset);
        for (let i = fragmentOffset; i < fragmentOffset + fragmentLength; i++) {
          if (ra.have[i] === 0) {
            ra.have[i] = 1;
            ra.count++;
          }
        }
        if (ra.count === length) {
          body = ra.buf;
          hs.reassembled = true;
          session.reassembly.delete(seenKey);
        }
      } else hs.error = 'message too large to reassemble';
      if (body === undefined) continue;
      session.seen.set(seenKey, 1);
      decodeHandshakeBody(hs, body, session.suiteId);
      this.onMessage(session, hs, body, fromClient);
    }
    return out;
  }

  /** Follows the handshake state: randoms, suite, EMS, keys, transcript, Finished checks. */
  private onMessage(session: DtlsSession, hs: DtlsHandshake, body: Uint8Array, fromClient: boolean): void {
    const s = session.summary;
    const addToTranscript = (): void => session.transcript.add(hs.msgType, hs.messageSeq, body);
    switch (hs.msgType) {
      case 1:
        if (hs.random) session.clientRandom = Buffer.from(hs.random, 'hex');
        s.clientRandom = hs.random;
        if (hs.cookie) s.cookie = hs.cookie;
        if (hs.cipherSuites) s.offeredSuites = hs.cipherSuites;
        session.clientOfferedEms = hs.extensions?.some((e) => e.type === 23) ?? false;
        session.clientCid = hs.extensions?.find((e) => e.type === 54 || e.type === 53)?.cid;
        session.offeredSessionId = hs.sessionId || undefined;
        session.offeredTicket = hs.extensions?.find((e) => e.type === 35)?.data || undefined;
        addToTranscript();
        break;
      case 3:
        // HelloVerifyRequest and the ClientHello before it are not hashed (RFC 6347 §4.2.1).
        session.transcript.reset();
        break;
      case 2: {
        session.sawServerHello = true;
        if (hs.random) session.serverRandom = Buffer.from(hs.random, 'hex');
        s.serverRandom = hs.random;
        s.version = hs.versionName;
        if (hs.sessionId) s.sessionId = hs.sessionId;
        if (hs.cipherSuite) {
          session.suiteId = hs.cipherSuite.id;
          session.suite = CIPHER_SUITES.get(hs.cipherSuite.id);
          s.cipherSuite = hs.cipherSuite;
        }
        session.serverAcceptedEms = hs.extensions?.some((e) => e.type === 23) ?? false;
        session.serverCid = hs.extensions?.find((e) => e.type === 54 || e.type === 53)?.cid;
        // A CID is used only when both sides sent the extension.
        if (session.serverCid === undefined) session.clientCid = undefined;
        s.extendedMasterSecret = session.clientOfferedEms && session.serverAcceptedEms;
        s.encryptThenMac = hs.extensions?.some((e) => e.type === 22) ?? false;
        addToTranscript();
        // Abbreviated handshake: the server echoes the client's non-empty session id
        // (RFC 5246 §7.3, RFC 5077 §3.4) and goes straight to ChangeCipherSpec.
        if (hs.sessionId && hs.sessionId === session.offeredSessionId) {
          s.resumed = true;
          const prev =
            this.resumable.get(`sid:${hs.sessionId}`) ??
            (session.offeredTicket ? this.resumable.get(`ticket:${session.offeredTicket}`) : undefined);
          this.deriveKeys(session, prev);
        }
        break;
      }
      case 4:
        if (hs.ticket && session.master)
          this.resumable.set(`ticket:${hs.ticket}`, {
            master: session.master,
            source: session.summary.keySource ?? 'psk',
          });
        addToTranscript();
        break;
      case 12:
        if (hs.pskIdentityHint) s.pskIdentityHint = hs.pskIdentityHint;
        addToTranscript();
        break;
      case 16:
        if (hs.pskIdentity !== undefined) s.pskIdentity = hs.pskIdentity;
        addToTranscript();
        this.deriveKeys(session);
        break;
      case 20: {
        if (session.master !== undefined && session.suite !== undefined && hs.verifyData !== undefined) {
          const expected = finishedVerifyData(
            session.suite,
            session.master,
            fromClient ? 'client finished' : 'server finished',
            session.transcript.digest(session.suite.prfHash),
          );
          hs.verified = toHex(expected) === hs.verifyData;
          session.seen.set(fromClient ? 'finished:client' : 'finished:server', 1);
          if (!fromClient) s.handshakeComplete = true;
        } else {
          session.seen.set(fromClient ? 'finished:client' : 'finished:server', 1);
          if (!fromClient) s.handshakeComplete = true;
        }
        addToTranscript();
        break;
      }
      default:
        addToTranscript();
    }
  }

  private deriveKeys(session: DtlsSession, resumedFrom?: ResumableSecret): void {
    const s = session.summary;
    const suite = session.suite;
    if (session.clientRandom === undefined || session.serverRandom === undefined) return;
    if (suite === undefined) {
      s.decryption = {
        status: 'unsupported-suite',
        detail: `unsupported cipher suite ${session.suiteId !== undefined ? cipherSuiteName(session.suiteId) : '(none)'}`,
      };
      return;
    }
    const fromLog = this.options.keylog?.get(toHex(session.clientRandom));
    let master: Uint8Array | undefined;
    if (fromLog !== undefined) {
      master = fromLog;
      s.keySource = 'keylog';
    } else if (s.resumed) {
      if (resumedFrom !== undefined) {
        master = resumedFrom.master;
        s.keySource = resumedFrom.source;
      }
    } else if (this.options.psk !== undefined && suite.keyExchange === 'psk') {
      const premaster = pskPremasterSecret(this.options.psk);
      const sessionHash = s.extendedMasterSecret ? session.transcript.digest(suite.prfHash) : undefined;
      master = masterSecret(suite, premaster, session.clientRandom, session.serverRandom, sessionHash);
      s.keySource = 'psk';
    }
    if (master === undefined) {
      s.decryption = { status: statusFor(session, this.options), detail: this.missingReason(session) };
      return;
    }
    session.master = master;
    const sid = s.sessionId;
    if (sid && !s.resumed) this.resumable.set(`sid:${sid}`, { master, source: s.keySource ?? 'psk' });
    const keys = keyBlock(suite, master, session.clientRandom, session.serverRandom);
    session.readClient = createRecordProtection(suite, keys, 'server', 'read');
    session.readServer = createRecordProtection(suite, keys, 'client', 'read');
  }
}

function statusFor(session: DtlsSession, options: DtlsTrackerOptions): DecryptionStatus {
  if (session.clientRandom === undefined || session.serverRandom === undefined) return 'missing-handshake';
  if (session.suiteId !== undefined && session.suite === undefined) return 'unsupported-suite';
  if (options.psk === undefined && options.keylog === undefined) return 'no-key';
  if (session.summary.resumed) return 'missing-handshake';
  if (session.suite !== undefined && session.suite.keyExchange !== 'psk') return 'no-key';
  return session.summary.pskIdentity === undefined ? 'missing-handshake' : 'no-key';
}

function epochUnsupported(epoch: number): boolean {
  return epoch > 1;
}

function errorHs(error: string): DtlsHandshake {
  return {
    msgType: -1,
    name: 'malformed',
    length: 0,
    messageSeq: 0,
    fragmentOffset: 0,
    fragmentLength: 0,
    fragmented: false,
    error,
  };
}

/** True if the datagram starts with an epoch-0 ClientHello with message_seq 0. */
function startsNewHandshake(p: Uint8Array): boolean {
  return (
    p.length >= 25 && p[0] === 22 && p[3] === 0 && p[4] === 0 && p[13] === 1 && p[17] === 0 && p[18] === 0
  );
}

/** True if the datagram starts with an epoch-0 HelloVerifyRequest or ServerHello. */
function startsServerFlight(p: Uint8Array): boolean {
  return p.length >= 25 && p[0] === 22 && p[3] === 0 && p[4] === 0 && (p[13] === 2 || p[13] === 3);
}

/** Looks like a DTLS record header (content type 20-25, version 0xFEXX). */
export function looksLikeDtls(p: Uint8Array): boolean {
  return (
    p.length >= DTLS_RECORD_HEADER_LENGTH && (p[0] as number) >= 20 && (p[0] as number) <= 25 && p[1] === 0xfe
  );
}
