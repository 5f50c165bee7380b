/**
 * Certificate and raw-public-key credentials for the ECDHE_ECDSA suites
 * (RFC 7252 §9.1.3.2/3, RFC 8422, RFC 7250), all through node:crypto:
 * - loading our own credential (certificate chain or raw key + P-256 private key),
 *   with typed errors for unusable input (DtlsCredentialError),
 * - verifying the peer: an X.509 chain against trust anchors (signatures,
 *   validity period, CA flag, key usage / extended key usage), or a raw public
 *   key against a list of allowed SHA-256 fingerprints,
 * - ECDSA P-256 / SHA-256 signatures (DER-encoded, RFC 8422 §5.4/§5.8).
 * Failures during a handshake carry the TLS alert to send.
 */
import { Buffer } from 'node:buffer';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';
import { isIP } from 'node:net';
import { alertError, DtlsCredentialError } from '../errors.js';
import { certificateExtension, certificateSubject } from './der.js';

/** ecdsa_secp256r1_sha256 (SignatureScheme 0x0403: hash sha256(4), signature ecdsa(3)). */
export const SIG_ECDSA_SHA256 = 0x0403;
/** ClientCertificateType ecdsa_sign (RFC 8422 §5.5). */
export const CERT_TYPE_ECDSA_SIGN = 64;
/** TLS certificate types (RFC 7250 §3). */
export const CertificateType = { x509: 0, rawPublicKey: 2 } as const;

/** How the peer authenticated (same shape as the transport's PeerAuth; DTLS imports nothing of CoAP). */
export interface DtlsPeerAuth {
  mode: 'psk' | 'x509' | 'rpk';
  /** PSK identity, certificate subject CN, or raw public key SHA-256 fingerprint (hex). */
  identity: string;
  subject?: string;
  san?: string[];
  fingerprint?: string;
}

/** Our own credential: an X.509 chain (leaf first) or a raw public key, with its private key. */
export interface LocalCredential {
  type: 'x509' | 'rpk';
  /** DER certificates, leaf first (empty for a raw public key). */
  chain: Buffer[];
  /** DER SubjectPublicKeyInfo of our key. */
  spki: Buffer;
  key: KeyObject;
}

/** What we accept from the peer. */
export interface PeerTrust {
  /** Trust anchors for X.509 chains. */
  ca: X509Certificate[];
  /** Their DER subject names (a server's CertificateRequest lists them; computed once). */
  caNames?: Buffer[] | undefined;
  /** Allowed raw public keys (SHA-256 fingerprints of their SPKI, hex); undefined: any key (identified by its fingerprint). */
  rpkTrust?: ReadonlySet<string> | undefined;
  /** Whether the peer must authenticate (server: send CertificateRequest and require a certificate). */
  verifyPeer: boolean;
  /** Wall-clock milliseconds for certificate validity (default Date.now; validity periods are calendar time). */
  now?: (() => number) | undefined;
}

/** Certificate options of a DTLS endpoint (both roles). */
export interface CertOptions {
  x509?: LocalCredential | undefined;
  rpk?: LocalCredential | undefined;
  trust: PeerTrust;
}

const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const OID_ANY_EKU = '2.5.29.37.0';

/** A PEM text (string or bytes) or DER bytes of a certificate or key. */
export type PemInput = string | Uint8Array;

function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
}

function curveName(key: KeyObject): string {
  return key.asymmetricKeyType === 'ec'
    ? `EC ${key.asymmetricKeyDetails?.namedCurve ?? '?'}`
    : String(key.asymmetricKeyType);
}

/** DER SubjectPublicKeyInfo of a key. */
export function spkiOf(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}

/** Lowercase hex SHA-256 of bytes (a raw public key's identity is this of its SPKI). */
export function sha256Hex(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** Parses PEM (one or more CERTIFICATE blocks) or one DER certificate. */
export function parseCertificates(
  input: PemInput | X509Certificate | readonly X509Certificate[],
  what = 'certificate',
): X509Certificate[] {
  if (input instanceof X509Certificate) return [input];
  if (Array.isArray(input)) return [...(input as X509Certificate[])];
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input as Uint8Array);
  const text = buf.toString('latin1');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  try {
    if (blocks !== null) return blocks.map((b) => new X509Certificate(b));
    if (buf[0] === 0x30) return [new X509Certificate(buf)];
  } catch (cause) {
    throw new DtlsCredentialError(`${what} is not a valid X.509 certificate: ${(cause as Error).message}`, {
      cause,
    });
  }
  const hint = /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text) ? ' (this is a private key)' : '';
  throw new DtlsCredentialError(`${what} is not a certificate: no PEM CERTIFICATE block and not DER${hint}`);
}

/** Parses a private key (PEM PKCS#8 or SEC1, DER PKCS#8, or a KeyObject) and requires P-256. */
export function parsePrivateKey(input: PemInput | KeyObject, what = 'key'): KeyObject {
  let key: KeyObject;
  if (
    typeof input === 'object' &&
    'asymmetricKeyType' in input &&
    'type' in input &&
    !(input instanceof Uint8Array)
  ) {
    key = input as KeyObject;
  } else {
    const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input as Uint8Array);
    try {
      key =
        buf[0] === 0x30
          ? createPrivateKey({ key: buf, format: 'der', type: 'pkcs8' })
          : createPrivateKey(buf);
    } catch (cause) {
      const hint = buf.toString('latin1').includes('-----BEGIN CERTIFICATE-----')
        ? ' (this is a certificate)'
        : '';
      throw new DtlsCredentialError(`${what} is not a private key${hint}: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
  if (key.type !== 'private')
    throw new DtlsCredentialError(`${what} is not a private key (got a ${key.type} key)`);
  if (!isP256(key))
    throw new DtlsCredentialError(
      `${what} is on the wrong curve: CoAP certificates and raw public keys use P-256 (prime256v1), got ${curveName(key)}`,
    );
  return key;
}

/** Our X.509 credential from a PEM chain (leaf first) and its private key; the key must match the leaf. */
export function loadX509Credential(
  cert: PemInput | X509Certificate | readonly X509Certificate[],
  key: PemInput | KeyObject,
): LocalCredential {
  const chain = parseCertificates(cert, 'cert');
  if (chain.length === 0) throw new DtlsCredentialError('cert holds no certificate');
  const priv = parsePrivateKey(key, 'key');
  const leaf = chain[0]!;
  if (!isP256(leaf.publicKey))
    throw new DtlsCredentialError(
      `cert's public key is on the wrong curve: P-256 (prime256v1) needed, got ${curveName(leaf.publicKey)}`,
    );
  const spki = spkiOf(priv);
  if (!spki.equals(spkiOf(leaf.publicKey)))
    throw new DtlsCredentialError(`key does not match cert (subject ${leaf.subject.replace(/\n/g, ', ')})`);
  return { type: 'x509', chain: chain.map((c) => Buffer.from(c.raw)), spki, key: priv };
}

/** Our raw public key credential (RFC 7250) from a P-256 private key. */
export function loadRpkCredential(key: PemInput | KeyObject): LocalCredential {
  const priv = parsePrivateKey(key, 'rpk');
  return { type: 'rpk', chain: [], spki: spkiOf(priv), key: priv };
}

/**
 * A raw-public-key trust list: hex SHA-256 fingerprints (colons allowed), PEM
 * PUBLIC KEY / PRIVATE KEY blocks, KeyObjects; `#` starts a comment in text.
 */
export function parseRpkTrust(entries: readonly (string | Uint8Array | KeyObject)[]): Set<string> {
  const out = new Set<string>();
  for (const entry of entries) {
    if (typeof entry === 'object' && !(entry instanceof Uint8Array)) {
      out.add(sha256Hex(spkiOf(entry as KeyObject)));
      continue;
    }
    const text = typeof entry === 'string' ? entry : Buffer.from(entry).toString('utf8');
    const pems = text.match(/-----BEGIN ([A-Z ]*)KEY-----[\s\S]+?-----END \1KEY-----/g) ?? [];
    for (const pem of pems) {
      try {
        out.add(sha256Hex(spkiOf(pem.includes('PRIVATE') ? createPrivateKey(pem) : createPublicKey(pem))));
      } catch (cause) {
        throw new DtlsCredentialError(`rpk trust entry is not a usable key: ${(cause as Error).message}`, {
          cause,
        });
      }
    }
    const rest = text.replace(/-----BEGIN ([A-Z ]*)KEY-----[\s\S]+?-----END \1KEY-----/g, '');
    for (const raw of rest.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (line === '') continue;
      const hex = line.replace(/:/g, '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(hex))
        throw new DtlsCredentialError(
          `rpk trust entry "${line.slice(0, 80)}" is neither a SHA-256 fingerprint (64 hex digits) nor a PEM key`,
        );
      out.add(hex);
    }
  }
  return out;
}

/** The certificate's subject CN (last one), or undefined. */
function commonName(subject: string): string | undefined {
  let cn: string | undefined;
  for (const line of subject.split('\n')) if (line.startsWith('CN=')) cn = line.slice(3);
  return cn;
}

function checkValidity(c: X509Certificate, now: number, who: string): void {
  const from = Date.parse(c.validFrom);
  const to = Date.parse(c.validTo);
  if (!(now >= from)) throw alertError(45, `${who} certificate is not yet valid (valid from ${c.validFrom})`);
  if (!(now <= to)) throw alertError(45, `${who} certificate expired on ${c.validTo}`);
}

/** keyUsage (2.5.29.15) bits as a number (bit 0 = digitalSignature = 0x80 of the first byte), or undefined. */
function keyUsageBits(der: Buffer): number | undefined {
  const ext = certificateExtension(der, '2.5.29.15');
  if (ext === undefined || ext.length < 3 || ext[0] !== 0x03) return undefined;
  return (ext[3] ?? 0) | ((ext[4] ?? 0) << 8);
}

/**
 * Verifies the peer's X.509 chain (leaf first) against the trust anchors and returns
 * who it is. Throws a DtlsError with the alert to send: bad_certificate (42),
 * unsupported_certificate (43), certificate_expired (45), unknown_ca (48).
 */
export function verifyX509Chain(
  der: readonly Buffer[],
  trust: PeerTrust,
  peerRole: 'client' | 'server',
): DtlsPeerAuth {
  const who = `the ${peerRole}'s`;
  if (der.length === 0) throw alertError(40, `${who} certificate is missing`);
  let chain: X509Certificate[];
  try {
    chain = der.map((d) => new X509Certificate(d));
  } catch (cause) {
    throw alertError(42, `${who} certificate does not parse: ${(cause as Error).message}`);
  }
  const leaf = chain[0]!;
  if (!isP256(leaf.publicKey))
    throw alertError(43, `${who} certificate key is ${curveName(leaf.publicKey)}, not P-256`);
  const now = (trust.now ?? Date.now)();
  for (let i = 0; i < chain.length; i++) checkValidity(chain[i]!, now, i === 0 ? who : `${who} intermediate`);
  for (let i = 0; i + 1 < chain.length; i++) {
    const c = chain[i]!;
    const issuer = chain[i + 1]!;
    if (!issuer.ca || !c.checkIssued(issuer) || !c.verify(issuer.publicKey))
      throw alertError(42, `${who} certificate chain is broken at ${c.subject.replace(/\n/g, ', ')}`);
  }
  const last = chain[chain.length - 1]!;
  const anchor = trust.ca.find(
    (a) =>
      a.fingerprint256 === last.fingerprint256 || (a.ca && last.checkIssued(a) && last.verify(a.publicKey)),
  );
  if (anchor === undefined)
    throw alertError(
      48,
      `${who} certificate (issuer ${last.issuer.replace(/\n/g, ', ')}) is not signed by a trusted CA`,
    );
  checkValidity(anchor, now, `${who} CA`);
  // Key usage: digitalSignature for ECDHE_ECDSA (RFC 5280 §4.2.1.3); EKU when present.
  const ku = keyUsageBits(Buffer.from(leaf.raw));
  if (ku !== undefined && (ku & 0x80) === 0)
    throw alertError(43, `${who} certificate's keyUsage lacks digitalSignature`);
  const eku = leaf.keyUsage;
  const wanted = peerRole === 'server' ? OID_SERVER_AUTH : OID_CLIENT_AUTH;
  if (eku !== undefined && eku.length > 0 && !eku.includes(wanted) && !eku.includes(OID_ANY_EKU))
    throw alertError(43, `${who} certificate's extendedKeyUsage does not allow ${peerRole} authentication`);
  const fingerprint = sha256Hex(leaf.raw);
  const san = leaf.subjectAltName?.split(', ').filter((s) => s !== '');
  return {
    mode: 'x509',
    identity: commonName(leaf.subject) ?? fingerprint,
    subject: leaf.subject.replace(/\n/g, ', '),
    ...(san !== undefined && san.length > 0 ? { san } : {}),
    fingerprint,
  };
}

/** Checks the peer's raw public key (DER SPKI) against the trust list; throws bad_certificate / unsupported_certificate. */
export function verifyRawPublicKey(
  spki: Buffer,
  trust: PeerTrust,
  peerRole: 'client' | 'server',
): DtlsPeerAuth {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (cause) {
    throw alertError(42, `the ${peerRole}'s raw public key does not parse: ${(cause as Error).message}`);
  }
  if (!isP256(key)) throw alertError(43, `the ${peerRole}'s raw public key is ${curveName(key)}, not P-256`);
  const fingerprint = sha256Hex(spki);
  if (trust.rpkTrust !== undefined && !trust.rpkTrust.has(fingerprint))
    throw alertError(42, `the ${peerRole}'s raw public key ${fingerprint} is not in the trusted list`);
  return { mode: 'rpk', identity: fingerprint, fingerprint };
}

/** True when the certificate names `host` (a DNS name or an IP address; RFC 6125 via node:crypto). */
export function certificateNames(der: Buffer, host: string): boolean {
  const c = new X509Certificate(der);
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(h) !== 0) return c.checkIP(h) !== undefined;
  return c.checkHost(h) !== undefined;
}

/** The public key of a verified peer credential, for its signatures. */
export function peerPublicKey(type: 'x509' | 'rpk', first: Buffer): KeyObject {
  return type === 'x509'
    ? new X509Certificate(first).publicKey
    : createPublicKey({ key: first, format: 'der', type: 'spki' });
}

/** ECDSA P-256 SHA-256 signature, DER-encoded. */
export function ecdsaSign(key: KeyObject, data: Uint8Array): Buffer {
  return sign('sha256', data, { key, dsaEncoding: 'der' });
}

/** Verifies an ECDSA SHA-256 DER signature; false on any failure. */
export function ecdsaVerify(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify('sha256', data, { key, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}

export { OID_CLIENT_AUTH, OID_SERVER_AUTH };

/** Certificate and raw-public-key settings of a DTLS transport, as the library takes them. */
export interface DtlsCertificateOptions {
  /** Our certificate (PEM, may hold the chain: leaf first; or DER / X509Certificate). Needs `key`. */
  cert?: PemInput | X509Certificate | readonly X509Certificate[] | undefined;
  /** The private key of `cert` (PEM / DER PKCS#8 / KeyObject), P-256. */
  key?: PemInput | KeyObject | undefined;
  /** Trust anchors for the peer's certificate (PEM with one or more certificates, or X509Certificates). */
  ca?: PemInput | X509Certificate | readonly X509Certificate[] | undefined;
  /** Our raw public key (RFC 7250): a P-256 private key; we present its SubjectPublicKeyInfo. */
  rpk?: PemInput | KeyObject | undefined;
  /**
   * Raw public keys we accept from the peer: SHA-256 fingerprints of their
   * SubjectPublicKeyInfo (hex), PEM keys or KeyObjects. Unset: any key, the
   * peer being identified by its fingerprint.
   */
  rpkTrust?: readonly (string | Uint8Array | KeyObject)[] | undefined;
  /**
   * Whether the peer must prove who it is (default true). A server then sends
   * a CertificateRequest and refuses a client without a valid certificate or
   * trusted key; with false a client certificate is optional (still asked for
   * when `ca` or a raw-public-key trust is set, and verified when one is sent).
   * A client refuses a server certificate `ca` does not vouch for, or that
   * does not name the server; with false it checks neither.
   */
  verifyPeer?: boolean | undefined;
  /** Wall-clock milliseconds for certificate validity checks (default Date.now). */
  certificateTime?: (() => number) | undefined;
}

/** Builds the DTLS layer's CertOptions from library options; undefined when none is set. Throws DtlsCredentialError. */
export function buildCertOptions(
  o: DtlsCertificateOptions,
  role: 'client' | 'server',
): CertOptions | undefined {
  if (
    o.cert === undefined &&
    o.key === undefined &&
    o.ca === undefined &&
    o.rpk === undefined &&
    o.rpkTrust === undefined
  )
    return undefined;
  if ((o.cert === undefined) !== (o.key === undefined))
    throw new DtlsCredentialError(o.cert === undefined ? 'key given without cert' : 'cert given without key');
  const x509 = o.cert !== undefined ? loadX509Credential(o.cert, o.key!) : undefined;
  const rpk = o.rpk !== undefined ? loadRpkCredential(o.rpk) : undefined;
  const ca = o.ca !== undefined ? parseCertificates(o.ca, 'ca') : [];
  for (const c of ca) {
    if (!c.ca)
      throw new DtlsCredentialError(
        `ca certificate ${c.subject.replace(/\n/g, ', ')} is not a CA (basicConstraints)`,
      );
  }
  const verifyPeer = o.verifyPeer ?? true;
  if (role === 'server' && x509 === undefined && rpk === undefined)
    throw new DtlsCredentialError('a certificate server needs cert + key (or rpk)');
  if (verifyPeer && ca.length === 0 && rpk === undefined && o.rpkTrust === undefined)
    throw new DtlsCredentialError(
      `verifying the ${role === 'server' ? "clients'" : "server's"} certificates needs ca (trust anchors), or verifyPeer: false`,
    );
  return {
    x509,
    rpk,
    trust: {
      ca,
      caNames: ca.map((c) => certificateSubject(Buffer.from(c.raw))).filter((n) => n !== undefined),
      rpkTrust: o.rpkTrust !== undefined ? parseRpkTrust(o.rpkTrust) : undefined,
      verifyPeer,
      now: o.certificateTime,
    },
  };
}
