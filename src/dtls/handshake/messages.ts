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
  certificate: 11,
  serverKeyExchange: 12,
  certificateRequest: 13,
  serverHelloDone: 14,
  certificateVerify: 15,
  clientKeyExchange: 16,
  finished: 20,
} as const;

export const ExtensionType = {
  serverName: 0,
  supportedGroups: 10,
  ecPointFormats: 11,
  signatureAlgorithms: 13,
  clientCertificateType: 19,
  serverCertificateType: 20,
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

// ---- certificate mode (RFC 5246 §7.4.2/§7.4.4/§7.4.8, RFC 8422 §5.4/§5.7, RFC 7250 §3)

/** Certificate: an X.509 chain (leaf first) or one raw SubjectPublicKeyInfo. */
export function encodeCertificate(type: 'x509' | 'rpk', chain: readonly Buffer[], spki?: Buffer): Buffer {
  if (type === 'rpk') return vec(3, spki ?? Buffer.alloc(0));
  return vec(3, Buffer.concat(chain.map((c) => vec(3, c))));
}

/** Decodes a Certificate; for 'rpk' the one element is the SubjectPublicKeyInfo (may be empty: no key). */
export function decodeCertificate(body: Buffer, type: 'x509' | 'rpk'): Buffer[] {
  const r = new Reader(body);
  const list = r.vector(3, type === 'rpk' ? 'ASN.1_subjectPublicKeyInfo' : 'certificate_list');
  r.end('Certificate');
  if (type === 'rpk') return list.length === 0 ? [] : [list];
  const lr = new Reader(list);
  const out: Buffer[] = [];
  while (lr.remaining > 0) out.push(lr.vector(3, 'ASN.1Cert', 1));
  return out;
}

export interface EcdsaServerKeyExchange {
  group: number;
  publicKey: Buffer;
  /** SignatureAndHashAlgorithm (0x0403). */
  scheme: number;
  signature: Buffer;
  /** The signed ServerECDHParams bytes (curve_type, named_curve, public). */
  params: Buffer;
}

/** ServerECDHParams (curve_type named_curve, group, point<1..255>). */
export function encodeEcdhParams(group: number, publicKey: Buffer): Buffer {
  return Buffer.concat([Buffer.from([3]), u16(group), vec(1, publicKey)]);
}

export function encodeEcdsaServerKeyExchange(params: Buffer, scheme: number, signature: Buffer): Buffer {
  return Buffer.concat([params, u16(scheme), vec(2, signature)]);
}

export function decodeEcdsaServerKeyExchange(body: Buffer): EcdsaServerKeyExchange {
  const r = new Reader(body);
  const curveType = r.u8('curve_type');
  if (curveType !== 3) throw decodeError(`unsupported ECCurveType ${curveType}`);
  const group = r.u16('named_curve');
  const publicKey = r.vector(1, 'ECPoint', 1, 255);
  const params = body.subarray(0, r.offset);
  const scheme = r.u16('signature_algorithm');
  const signature = r.vector(2, 'signature', 1);
  r.end('ServerKeyExchange');
  return { group, publicKey, scheme, signature, params };
}

/** ClientKeyExchange of ECDHE_ECDSA: ClientECDiffieHellmanPublic (explicit point). */
export function decodeEcdhClientKeyExchange(body: Buffer): Buffer {
  const r = new Reader(body);
  const point = r.vector(1, 'ECPoint', 1, 255);
  r.end('ClientKeyExchange');
  return point;
}

export interface CertificateRequest {
  certificateTypes: number[];
  signatureSchemes: number[];
  /** DER DistinguishedNames of acceptable CAs. */
  authorities: Buffer[];
}

export function encodeCertificateRequest(m: CertificateRequest): Buffer {
  return Buffer.concat([
    vec(1, Buffer.from(m.certificateTypes)),
    vec(2, Buffer.concat(m.signatureSchemes.map(u16))),
    vec(2, Buffer.concat(m.authorities.map((a) => vec(2, a)))),
  ]);
}

export function decodeCertificateRequest(body: Buffer): CertificateRequest {
  const r = new Reader(body);
  const certificateTypes = [...r.vector(1, 'certificate_types', 1)];
  const schemesRaw = r.vector(2, 'supported_signature_algorithms', 2);
  if (schemesRaw.length % 2 !== 0) throw decodeError('odd supported_signature_algorithms length');
  const signatureSchemes: number[] = [];
  for (let i = 0; i < schemesRaw.length; i += 2) signatureSchemes.push(schemesRaw.readUInt16BE(i));
  const ar = new Reader(r.vector(2, 'certificate_authorities'));
  const authorities: Buffer[] = [];
  while (ar.remaining > 0) authorities.push(ar.vector(2, 'DistinguishedName', 1));
  r.end('CertificateRequest');
  return { certificateTypes, signatureSchemes, authorities };
}

export function encodeCertificateVerify(scheme: number, signature: Buffer): Buffer {
  return Buffer.concat([u16(scheme), vec(2, signature)]);
}

export function decodeCertificateVerify(body: Buffer): { scheme: number; signature: Buffer } {
  const r = new Reader(body);
  const scheme = r.u16('signature_algorithm');
  const signature = r.vector(2, 'signature', 1);
  r.end('CertificateVerify');
  return { scheme, signature };
}

/** signature_algorithms extension (RFC 5246 §7.4.1.4.1). */
export function encodeSignatureAlgorithms(schemes: readonly number[]): Buffer {
  return vec(2, Buffer.concat(schemes.map(u16)));
}

export function decodeSignatureAlgorithms(data: Buffer): number[] {
  const r = new Reader(data);
  const list = r.vector(2, 'supported_signature_algorithms', 2);
  r.end('signature_algorithms');
  if (list.length % 2 !== 0) throw decodeError('odd signature_algorithms length');
  const out: number[] = [];
  for (let i = 0; i < list.length; i += 2) out.push(list.readUInt16BE(i));
  return out;
}

/**
 * client_certificate_type / server_certificate_type (RFC 7250 §3): the client
 * sends a list, the server answers with one type.
 */
export function encodeCertificateTypeList(types: readonly number[]): Buffer {
  return vec(1, Buffer.from(types));
}

export function decodeCertificateTypeList(data: Buffer): number[] {
  const r = new Reader(data);
  const list = r.vector(1, 'certificate_types', 1);
  r.end('certificate type extension');
  return [...list];
}

export function decodeCertificateTypeChoice(data: Buffer): number {
  if (data.length !== 1) throw decodeError('bad certificate type extension in ServerHello');
  return data[0]!;
}
