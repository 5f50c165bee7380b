/**
 * node:diagnostics_channel events for tracing DTLS (the `--trace` view).
 * Publishers check `hasSubscribers` first so the hot path pays nothing.
 *
 * - coapkit:dtls:handshake:start  { peer, role }
 * - coapkit:dtls:handshake:done   { peer, role, suite, suiteId, extendedMasterSecret, identity, durationMs }
 * - coapkit:dtls:handshake:error  { peer, role, error, identity?, alert?, reason? } (HandshakeErrorEvent):
 *     every handshake that fails or is refused/dropped by a bound (see `reason`)
 * - coapkit:dtls:record:sent / coapkit:dtls:record:received
 *     { peer, role, type, typeName, epoch, seq, length, handshake?: HandshakeInfo[], alert? }
 */
import type { Buffer } from 'node:buffer';
import { channel } from 'node:diagnostics_channel';
import { CIPHER_SUITES } from './crypto/suites.js';
import { parseHandshakeFragments } from './handshake/fragment.js';
import {
  decodeClientHello,
  decodeClientKeyExchange,
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
  | 'evicted' // the oldest half-open handshake gave its slot to a new verified ClientHello
  | 'stalled'; // no progress within halfOpenTimeoutMs / handshakeTimeoutMs

/** Message of `coapkit:dtls:handshake:error`. */
export interface HandshakeErrorEvent {
  /** "address%port" of the peer. */
  peer: string;
  role: 'client' | 'server';
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
  role: 'client' | 'server',
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

export const handshakeStartChannel = channel('coapkit:dtls:handshake:start');
export const handshakeDoneChannel = channel('coapkit:dtls:handshake:done');
export const handshakeErrorChannel = channel('coapkit:dtls:handshake:error');
export const recordSentChannel = channel('coapkit:dtls:record:sent');
export const recordReceivedChannel = channel('coapkit:dtls:record:received');

// The diagnostics events name types by their RFC identifiers (`client_hello`), from the one table.
const CONTENT_NAMES = rfcIdentifiers(CONTENT_TYPE_NAMES);
const HS_NAMES = rfcIdentifiers(HANDSHAKE_TYPE_NAMES);

export interface HandshakeInfo {
  type: number;
  typeName: string;
  length: number;
  messageSeq: number;
  fragmentOffset: number;
  fragmentLength: number;
  cookie?: string;
  offeredSuites?: string[];
  chosenSuite?: string;
  extensions?: number[];
  identity?: string;
  identityHint?: string;
  group?: number;
  serverName?: string;
}

const suiteName = (id: number): string =>
  CIPHER_SUITES.get(id)?.name ?? `0x${id.toString(16).padStart(4, '0')}`;

/** Best-effort description of the handshake fragments in a record plaintext (never throws). */
export function describeHandshake(plaintext: Buffer, ecdhe?: boolean): HandshakeInfo[] {
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
        case HandshakeType.serverKeyExchange: {
          const ske = decodeServerKeyExchange(f.body, ecdhe ?? false);
          info.identityHint = ske.identityHint.toString('utf8');
          if (ske.ecdhe) info.group = ske.ecdhe.group;
          break;
        }
        case HandshakeType.clientKeyExchange:
          info.identity = decodeClientKeyExchange(f.body, ecdhe ?? false).identity.toString('utf8');
          break;
      }
    } catch {
      // partial description is fine
    }
    return info;
  });
}

export interface RecordEvent {
  peer: string;
  role: 'client' | 'server';
  type: number;
  typeName: string;
  epoch: number;
  seq: number;
  length: number;
  handshake?: HandshakeInfo[];
  alert?: { level: number; description: number };
}

export function recordEvent(
  peer: string,
  role: 'client' | 'server',
  type: number,
  epoch: number,
  seq: number,
  plaintext: Buffer,
  ecdhe?: boolean,
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
  if (type === 22) ev.handshake = describeHandshake(plaintext, ecdhe);
  if (type === 21 && plaintext.length >= 2) ev.alert = { level: plaintext[0]!, description: plaintext[1]! };
  return ev;
}
