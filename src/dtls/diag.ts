/**
 * node:diagnostics_channel events for tracing DTLS (the `--trace` view).
 * Publishers check `hasSubscribers` first so the hot path pays nothing.
 *
 * The payload of each `coapkit:dtls:*` channel is declared here
 * ({@link DtlsChannelPayloads}; DTLS imports nothing of CoAP) and joins the
 * CoAP channels in `ChannelPayloads` (src/diagnostics.ts), the one list of
 * every coapkit channel.
 */
import { Buffer } from 'node:buffer';
import { X509Certificate } from 'node:crypto';
import { typedChannel } from '../util/typed-channel.js';
import { sha256Hex } from './crypto/certs.js';
import { CIPHER_SUITES, type CipherSuiteInfo } from './crypto/suites.js';
import { parseHandshakeFragments } from './handshake/fragment.js';
import {
  decodeCertificate,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeEcdsaServerKeyExchange,
  decodeHelloVerifyRequest,
  decodeServerHello,
  decodeServerKeyExchange,
  decodeServerName,
  HandshakeType,
} from './handshake/messages.js';
import { CONTENT_TYPE_NAMES, HANDSHAKE_TYPE_NAMES, rfcIdentifiers } from './names.js';

/** Why the server refused or dropped a handshake (bounds of DtlsServerOptions). */
export type HandshakeRefusal =
  | 'address-share' // maxHandshakesPerAddress reached for the peer's address
  | 'table-full' // maxHandshakes reached and nothing could be evicted
  | 'sessions-full' // maxSessions reached
  | 'rate-limited' // the handshake rate limit (handshakeRate): the address's or the global bucket is empty
  | 'evicted' // the oldest half-open handshake gave its slot to a new verified ClientHello
  | 'stalled'; // no progress within halfOpenTimeoutMs / handshakeTimeoutMs

/** Which side of the handshake this endpoint plays. */
export type DtlsRole = 'client' | 'server';

/** Message of `coapkit:dtls:handshake:start`: a handshake begins (client: first ClientHello; server: a cookie-verified ClientHello). */
export interface HandshakeStartEvent {
  /** "address%port" of the peer. */
  peer: string;
  /** This endpoint's side. */
  role: DtlsRole;
}

/** Message of `coapkit:dtls:handshake:done`: both Finished messages verified, the session is up. */
export interface HandshakeDoneEvent {
  /** "address%port" of the peer. */
  peer: string;
  /** This endpoint's side. */
  role: DtlsRole;
  /** Negotiated cipher suite, e.g. `TLS_PSK_WITH_AES_128_CCM_8`. */
  suite?: string;
  /** Its IANA number. */
  suiteId?: number;
  /** Whether the extended master secret (RFC 7627) is in use. */
  extendedMasterSecret: boolean;
  /** The authenticated identity: PSK identity, certificate CN or raw public key fingerprint (see `authMode`). */
  identity?: string;
  /** How the peer authenticated (absent: PSK). */
  authMode?: 'psk' | 'x509' | 'rpk';
  /** From the first ClientHello to the last Finished. */
  durationMs: number;
  /** Connection IDs (RFC 9146), when both sides agreed to use them. */
  cid?: {
    /** The CID the records this endpoint sends carry, hex ("" for none). */
    send: string;
    /** The CID the records it receives carry, hex ("" for none). */
    receive: string;
  };
}

/**
 * Message of `coapkit:dtls:handshake:error`: every handshake that fails, or
 * that a server bound refused or dropped (see `reason`).
 */
export interface HandshakeErrorEvent {
  /** "address%port" of the peer. */
  peer: string;
  role: DtlsRole;
  error: Error;
  /** PSK identity the client offered (unauthenticated) or, when known, the authenticated one. */
  identity?: string;
  /** The alert sent to or received from the peer, if one was. */
  alert?: { level: number; description: number; name: string; direction: 'sent' | 'received' };
  /** Set when a server bound refused or dropped the handshake. */
  reason?: HandshakeRefusal;
}

export function handshakeErrorEvent(
  peer: string,
  role: DtlsRole,
  error: Error,
  identity?: string,
  alert?: HandshakeErrorEvent['alert'],
  reason?: HandshakeRefusal,
): HandshakeErrorEvent {
  const ev: HandshakeErrorEvent = { peer, role, error };
  if (identity !== undefined) ev.identity = identity;
  if (alert !== undefined) ev.alert = alert;
  if (reason !== undefined) ev.reason = reason;
  return ev;
}

/** The payload of each `coapkit:dtls:*` diagnostics channel. */
export interface DtlsChannelPayloads {
  /** {@link HandshakeStartEvent} */
  'coapkit:dtls:handshake:start': HandshakeStartEvent;
  /** Every record sent, plaintext described (handshake messages decoded, alerts). */
  'coapkit:dtls:record:sent': RecordEvent;
  /** Every record received and accepted (decrypted, not a replay). */
  'coapkit:dtls:record:received': RecordEvent;
  /** {@link HandshakeDoneEvent} */
  'coapkit:dtls:handshake:done': HandshakeDoneEvent;
  /** {@link HandshakeErrorEvent} */
  'coapkit:dtls:handshake:error': HandshakeErrorEvent;
}

const dtlsChannel = <K extends keyof DtlsChannelPayloads>(name: K) =>
  typedChannel<DtlsChannelPayloads[K], K>(name);

export const handshakeStartChannel = dtlsChannel('coapkit:dtls:handshake:start');
export const handshakeDoneChannel = dtlsChannel('coapkit:dtls:handshake:done');
export const handshakeErrorChannel = dtlsChannel('coapkit:dtls:handshake:error');
export const recordSentChannel = dtlsChannel('coapkit:dtls:record:sent');
export const recordReceivedChannel = dtlsChannel('coapkit:dtls:record:received');

// The diagnostics events name types by their RFC identifiers (`client_hello`), from the one table.
const CONTENT_NAMES = rfcIdentifiers(CONTENT_TYPE_NAMES);
const HS_NAMES = rfcIdentifiers(HANDSHAKE_TYPE_NAMES);

/** One handshake message (or fragment) in a record, as the trace shows it. */
export interface HandshakeInfo {
  /** HandshakeType number. */
  type: number;
  /** Its name (`client_hello`...). */
  typeName: string;
  /** Length of the whole message. */
  length: number;
  /** message_seq. */
  messageSeq: number;
  /** Where this fragment starts in the message. */
  fragmentOffset: number;
  /** Its length (= `length` when not fragmented). */
  fragmentLength: number;
  /** Cookie, hex (ClientHello, HelloVerifyRequest). */
  cookie?: string;
  /** Cipher suites offered (ClientHello). */
  offeredSuites?: string[];
  /** Cipher suite chosen (ServerHello). */
  chosenSuite?: string;
  /** Extension numbers, in order (ClientHello, ServerHello). */
  extensions?: number[];
  /** PSK identity (ClientKeyExchange). */
  identity?: string;
  /** PSK identity hint (ServerKeyExchange). */
  identityHint?: string;
  /** ECDHE named group (ServerKeyExchange). */
  group?: number;
  /**
   * Certificate: the subject of each X.509 certificate (leaf first), or
   * `raw public key <sha-256 fingerprint>` (RFC 7250); empty when none was sent.
   */
  certificates?: string[];
  /** server_name extension (ClientHello). */
  serverName?: string;
}

/** Subjects of an X.509 Certificate message, or the fingerprint of a raw public key (RFC 7250). */
export function describeCertificates(message: Uint8Array): string[] {
  const body = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  try {
    return decodeCertificate(body, 'x509').map((der) =>
      new X509Certificate(der).subject.replace(/\n/g, ', '),
    );
  } catch {
    const rpk = decodeCertificate(body, 'rpk');
    return rpk.map((spki) => `raw public key ${sha256Hex(spki)}`);
  }
}

const suiteName = (id: number): string =>
  CIPHER_SUITES.get(id)?.name ?? `0x${id.toString(16).padStart(4, '0')}`;

/** Best-effort description of the handshake fragments in a record plaintext (never throws). */
export function describeHandshake(
  plaintext: Buffer,
  keyExchange?: boolean | CipherSuiteInfo['keyExchange'],
): HandshakeInfo[] {
  // `true` (older callers) means ECDHE_PSK.
  const kx = keyExchange === true ? 'ecdhe_psk' : keyExchange === false ? undefined : keyExchange;
  const ecdhe = kx === 'ecdhe_psk';
  let frags: ReturnType<typeof parseHandshakeFragments>;
  try {
    frags = parseHandshakeFragments(plaintext);
  } catch {
    return [];
  }
  return frags.map((f) => {
    const info: HandshakeInfo = {
      type: f.msgType,
      typeName: HS_NAMES[f.msgType] ?? `unknown(${f.msgType})`,
      length: f.length,
      messageSeq: f.messageSeq,
      fragmentOffset: f.fragmentOffset,
      fragmentLength: f.fragmentLength,
    };
    if (f.fragmentOffset !== 0 || f.fragmentLength !== f.length) return info;
    try {
      switch (f.msgType) {
        case HandshakeType.clientHello: {
          const ch = decodeClientHello(f.body);
          info.cookie = ch.cookie.toString('hex');
          info.offeredSuites = ch.cipherSuites.map(suiteName);
          info.extensions = ch.extensions.map((e) => e.type);
          const sni = ch.extensions.find((e) => e.type === 0);
          if (sni) info.serverName = decodeServerName(sni.data);
          break;
        }
        case HandshakeType.helloVerifyRequest:
          info.cookie = decodeHelloVerifyRequest(f.body).cookie.toString('hex');
          break;
        case HandshakeType.serverHello: {
          const sh = decodeServerHello(f.body);
          info.chosenSuite = suiteName(sh.cipherSuite);
          info.extensions = sh.extensions.map((e) => e.type);
          break;
        }
        case HandshakeType.certificate:
          info.certificates = describeCertificates(f.body);
          break;
        case HandshakeType.serverKeyExchange: {
          if (kx === 'ecdhe_ecdsa') {
            info.group = decodeEcdsaServerKeyExchange(f.body).group;
            break;
          }
          const ske = decodeServerKeyExchange(f.body, ecdhe);
          info.identityHint = ske.identityHint.toString('utf8');
          if (ske.ecdhe) info.group = ske.ecdhe.group;
          break;
        }
        case HandshakeType.clientKeyExchange:
          if (kx === 'ecdhe_ecdsa') break;
          info.identity = decodeClientKeyExchange(f.body, ecdhe).identity.toString('utf8');
          break;
      }
    } catch {
      // partial description is fine
    }
    return info;
  });
}

/** Message of `coapkit:dtls:record:sent` and `coapkit:dtls:record:received`. */
export interface RecordEvent {
  /** "address%port" of the peer. */
  peer: string;
  /** This endpoint's side. */
  role: DtlsRole;
  /** ContentType: 20 change_cipher_spec, 21 alert, 22 handshake, 23 application_data. */
  type: number;
  /** Its name. */
  typeName: string;
  /** Record epoch (0 before ChangeCipherSpec). */
  epoch: number;
  /** Record sequence number within the epoch. */
  seq: number;
  /** Plaintext length (record header and AEAD nonce/tag not included). */
  length: number;
  /** Handshake records: the messages (or fragments) they carry. */
  handshake?: HandshakeInfo[];
  /**
   * A tls12_cid record (RFC 9146): the connection ID in its header (hex); its
   * outer content type is 25 and `type` is the real one, from inside. The
   * record also carries 1 byte for that type.
   */
  cid?: string;
  /** Alert records. */
  alert?: {
    /** 1 warning, 2 fatal. */
    level: number;
    /** AlertDescription number. */
    description: number;
  };
}

export function recordEvent(
  peer: string,
  role: DtlsRole,
  type: number,
  epoch: number,
  seq: number,
  plaintext: Buffer,
  keyExchange?: boolean | CipherSuiteInfo['keyExchange'],
): RecordEvent {
  const ev: RecordEvent = {
    peer,
    role,
    type,
    typeName: CONTENT_NAMES[type] ?? `unknown(${type})`,
    epoch,
    seq,
    length: plaintext.length,
  };
  if (type === 22) ev.handshake = describeHandshake(plaintext, keyExchange);
  if (type === 21 && plaintext.length >= 2) ev.alert = { level: plaintext[0]!, description: plaintext[1]! };
  return ev;
}
