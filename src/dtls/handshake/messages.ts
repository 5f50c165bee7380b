/**
 * DTLS 1.2 PSK handshake message codecs (RFC 6347 §4.2, RFC 5246 §7.4,
 * RFC 4279 §2, RFC 5489 §2, RFC 4492 §5.4 for ECDHE parameters) and the
 * hello extensions coapkit uses. Decoders only throw DtlsError.
 */
import { Buffer } from 'node:buffer';
import { decodeError, Reader, u16, vec } from './reader.js';

export const HandshakeType = {
  helloRequest: 0,
  clientHello: 1,
  serverHello: 2,
  helloVerifyRequest: 3,
  serverKeyExchange: 12,
  serverHelloDone: 14,
  clientKeyExchange: 16,
  finished: 20,
} as const;

export const ExtensionType = {
  serverName: 0,
  supportedGroups: 10,
  ecPointFormats: 11,
  extendedMasterSecret: 23,
  renegotiationInfo: 0xff01,
} as const;

/** TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3). */
export const EMPTY_RENEGOTIATION_INFO_SCSV = 0x00ff;

export interface Extension {
  type: number;
  data: Buffer;
}

export interface ClientHello {
  version: number;
  random: Buffer;
  sessionId: Buffer;
  cookie: Buffer;
  cipherSuites: number[];
  compressionMethods: Buffer;
  extensions: Extension[];
}

export interface ServerHello {
  version: number;
  random: Buffer;
  sessionId: Buffer;
  cipherSuite: number;
  compressionMethod: number;
  extensions: Extension[];
}

export interface HelloVerifyRequest {
  version: number;
  cookie: Buffer;
}

export interface ServerKeyExchange {
  identityHint: Buffer;
  /** Present for ECDHE_PSK. */
  ecdhe?: { group: number; publicKey: Buffer };
}

export interface ClientKeyExchange {
  identity: Buffer;
  /** Present for ECDHE_PSK. */
  ecdhePublic?: Buffer;
}

function decodeExtensions(r: Reader): Extension[] {
  if (r.remaining === 0) return [];
  const block = new Reader(r.vector(2, 'extensions'));
  const out: Extension[] = [];
  const seen = new Set<number>();
  while (block.remaining > 0) {
    const type = block.u16('extension type');
    const data = block.vector(2, 'extension data');
    if (seen.has(type)) throw decodeError(`duplicate extension ${type}`);
    seen.add(type);
    out.push({ type, data });
  }
  return out;
}

function encodeExtensions(exts: readonly Extension[]): Buffer {
  if (exts.length === 0) return Buffer.alloc(0);
  return vec(2, Buffer.concat(exts.flatMap((e) => [u16(e.type), vec(2, e.data)])));
}

export function decodeClientHello(body: Buffer): ClientHello {
  const r = new Reader(body);
  const version = r.u16('client_version');
  const random = r.bytes(32, 'random');
  const sessionId = r.vector(1, 'session_id', 0, 32);
  const cookie = r.vector(1, 'cookie', 0, 255);
  const suitesRaw = r.vector(2, 'cipher_suites', 2, 0xfffe);
  if (suitesRaw.length % 2 !== 0) throw decodeError('odd cipher_suites length');
  const cipherSuites: number[] = [];
  for (let i = 0; i < suitesRaw.length; i += 2) cipherSuites.push(suitesRaw.readUInt16BE(i));
  const compressionMethods = r.vector(1, 'compression_methods', 1, 255);
  const extensions = decodeExtensions(r);
  r.end('ClientHello');
  return { version, random, sessionId, cookie, cipherSuites, compressionMethods, extensions };
}

export function encodeClientHello(m: ClientHello): Buffer {
  const suites = Buffer.allocUnsafe(m.cipherSuites.length * 2);
  m.cipherSuites.forEach((s, i) => {
    suites.writeUInt16BE(s, i * 2);
  });
  return Buffer.concat([
    u16(m.version),
    m.random,
    vec(1, m.sessionId),
    vec(1, m.cookie),
    vec(2, suites),
    vec(1, m.compressionMethods),
    encodeExtensions(m.extensions),
  ]);
}

export function decodeHelloVerifyRequest(body: Buffer): HelloVerifyRequest {
  const r = new Reader(body);
  const version = r.u16('server_version');
  const cookie = r.vector(1, 'cookie', 0, 255);
  r.end('HelloVerifyRequest');
  return { version, cookie };
}

export function decodeServerHello(body: Buffer): ServerHello {
  const r = new Reader(body);
  const version = r.u16('server_version');
  const random = r.bytes(32, 'random');
  const sessionId = r.vector(1, 'session_id', 0, 32);
  const cipherSuite = r.u16('cipher_suite');
  const compressionMethod = r.u8('compression_method');
  const extensions = decodeExtensions(r);
  r.end('ServerHello');
  return { version, random, sessionId, cipherSuite, compressionMethod, extensions };
}

export function encodeServerHello(m: ServerHello): Buffer {
  return Buffer.concat([
    u16(m.version),
    m.random,
    vec(1, m.sessionId),
    u16(m.cipherSuite),
    Buffer.from([m.compressionMethod]),
    encodeExtensions(m.extensions),
  ]);
}

export function decodeServerKeyExchange(body: Buffer, ecdhe: boolean): ServerKeyExchange {
  const r = new Reader(body);
  const identityHint = r.vector(2, 'psk_identity_hint');
  if (!ecdhe) {
    r.end('ServerKeyExchange');
    return { identityHint };
  }
  const curveType = r.u8('curve_type');
  if (curveType !== 3) throw decodeError(`unsupported ECCurveType ${curveType}`);
  const group = r.u16('named_curve');
  const publicKey = r.vector(1, 'ECPoint', 1, 255);
  r.end('ServerKeyExchange');
  return { identityHint, ecdhe: { group, publicKey } };
}

export function encodeServerKeyExchange(m: ServerKeyExchange): Buffer {
  const parts = [vec(2, m.identityHint)];
  if (m.ecdhe) parts.push(Buffer.from([3]), u16(m.ecdhe.group), vec(1, m.ecdhe.publicKey));
  return Buffer.concat(parts);
}

export function decodeClientKeyExchange(body: Buffer, ecdhe: boolean): ClientKeyExchange {
  const r = new Reader(body);
  const identity = r.vector(2, 'psk_identity');
  if (!ecdhe) {
    r.end('ClientKeyExchange');
    return { identity };
  }
  const ecdhePublic = r.vector(1, 'ECPoint', 1, 255);
  r.end('ClientKeyExchange');
  return { identity, ecdhePublic };
}

export function encodeClientKeyExchange(m: ClientKeyExchange): Buffer {
  const parts = [vec(2, m.identity)];
  if (m.ecdhePublic) parts.push(vec(1, m.ecdhePublic));
  return Buffer.concat(parts);
}

export function decodeFinished(body: Buffer): Buffer {
  if (body.length !== 12) throw decodeError('bad Finished length');
  return body;
}

// ---- extension payloads ----

export function encodeServerName(host: string): Buffer {
  const name = Buffer.from(host, 'ascii');
  return vec(2, Buffer.concat([Buffer.from([0]), vec(2, name)]));
}

export function decodeServerName(data: Buffer): string | undefined {
  const r = new Reader(data);
  const list = new Reader(r.vector(2, 'server_name_list'));
  r.end('server_name');
  while (list.remaining > 0) {
    const type = list.u8('name_type');
    const name = list.vector(2, 'host_name');
    if (type === 0) return name.toString('ascii');
  }
  return undefined;
}

export function encodeSupportedGroups(groups: readonly number[]): Buffer {
  return vec(2, Buffer.concat(groups.map(u16)));
}

export function decodeSupportedGroups(data: Buffer): number[] {
  const r = new Reader(data);
  const list = r.vector(2, 'named_group_list', 2);
  r.end('supported_groups');
  if (list.length % 2 !== 0) throw decodeError('odd supported_groups length');
  const out: number[] = [];
  for (let i = 0; i < list.length; i += 2) out.push(list.readUInt16BE(i));
  return out;
}

export function decodeEcPointFormats(data: Buffer): number[] {
  const r = new Reader(data);
  const list = r.vector(1, 'ec_point_format_list', 1);
  r.end('ec_point_formats');
  return [...list];
}

export function findExtension(exts: readonly Extension[], type: number): Extension | undefined {
  return exts.find((e) => e.type === type);
}
