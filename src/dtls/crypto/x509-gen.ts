/**
 * A small X.509 v3 certificate builder (RFC 5280) for throwaway development
 * credentials (`coapkit serve --generate-cert`) and tests: ECDSA P-256 keys,
 * ecdsa-with-SHA256 signatures, basicConstraints, keyUsage, extendedKeyUsage,
 * subjectAltName, subject/authority key identifiers. node:crypto generates the
 * keys and signs; this module only lays out the DER (node:crypto has no
 * certificate generator, and shelling out to `openssl` would make the CLI
 * depend on a program that is not on every machine).
 */
import { Buffer } from 'node:buffer';
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { isIP } from 'node:net';
import { spkiOf } from './certs.js';
import {
  bitString,
  bool,
  explicit,
  ia5String,
  integer,
  octetString,
  oid,
  readTlv,
  seq,
  set,
  time,
  tlv,
  utf8String,
} from './der.js';

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

export interface CertificateSpec {
  /** Subject common name. */
  cn: string;
  /** Subject organization (optional). */
  o?: string;
  /** The certified public key (or the private key, whose public half is used). */
  key: KeyObject;
  /** Issuer: its certificate's subject CN/O and private key; absent = self-signed. */
  issuer?: { cn: string; o?: string; key: KeyObject } | undefined;
  notBefore?: Date;
  notAfter?: Date;
  /** A CA certificate (basicConstraints CA, keyCertSign). */
  ca?: boolean;
  /** subjectAltName entries: host names and IP addresses. */
  san?: readonly string[];
  /** extendedKeyUsage: 'server', 'client' or both (default both for an end entity; none for a CA). */
  usage?: readonly ('server' | 'client')[];
}

function name(cn: string, o?: string): Buffer {
  const rdns = [];
  if (o !== undefined) rdns.push(set(seq(oid('2.5.4.10'), utf8String(o))));
  rdns.push(set(seq(oid('2.5.4.3'), utf8String(cn))));
  return seq(...rdns);
}

function keyId(key: KeyObject): Buffer {
  // RFC 5280 §4.2.1.2 (1): SHA-1 of the subjectPublicKey BIT STRING value.
  const spki = readTlv(spkiOf(key))!;
  const alg = readTlv(spki.content)!;
  const bits = readTlv(spki.content, alg.end)!;
  return createHash('sha1').update(bits.content.subarray(1)).digest();
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octetString(value)) : seq(oid(id), octetString(value));
}

/** Builds and signs one certificate; returns its DER. */
export function buildCertificate(spec: CertificateSpec): Buffer {
  const now = Date.now();
  const notBefore = spec.notBefore ?? new Date(now - 60_000);
  const notAfter = spec.notAfter ?? new Date(now + 365 * 86_400_000);
  const issuerKey = spec.issuer?.key ?? spec.key;
  const exts: Buffer[] = [];
  exts.push(extension('2.5.29.19', true, spec.ca ? seq(bool(true)) : seq()));
  // keyUsage: CA keyCertSign|cRLSign (bits 5, 6); end entity digitalSignature (bit 0).
  exts.push(
    extension(
      '2.5.29.15',
      true,
      spec.ca ? bitString(Buffer.from([0x06]), 1) : bitString(Buffer.from([0x80]), 7),
    ),
  );
  const usage = spec.usage ?? (spec.ca ? [] : ['server', 'client']);
  if (usage.length > 0) {
    exts.push(
      extension(
        '2.5.29.37',
        false,
        seq(...usage.map((u) => oid(u === 'server' ? '1.3.6.1.5.5.7.3.1' : '1.3.6.1.5.5.7.3.2'))),
      ),
    );
  }
  if (spec.san !== undefined && spec.san.length > 0) {
    const names = spec.san.map((n) => {
      const v = isIP(n);
      if (v === 0) return ia5String(n, 0x82);
      const bytes =
        v === 4
          ? Buffer.from(n.split('.').map(Number))
          : Buffer.from(
              (() => {
                const [head, tail] = n.split('::') as [string, string | undefined];
                const h = head === '' ? [] : head.split(':');
                const t = tail === undefined || tail === '' ? [] : tail.split(':');
                const groups =
                  tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
                return groups.map((g) => g.padStart(4, '0')).join('');
              })(),
              'hex',
            );
      return tlv(0x87, bytes);
    });
    exts.push(extension('2.5.29.17', false, seq(...names)));
  }
  exts.push(extension('2.5.29.14', false, octetString(keyId(spec.key))));
  exts.push(extension('2.5.29.35', false, seq(tlv(0x80, keyId(issuerKey)))));
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const sigAlg = seq(oid(ECDSA_WITH_SHA256));
  const tbs = seq(
    explicit(0, integer(2)),
    integer(serial),
    sigAlg,
    spec.issuer ? name(spec.issuer.cn, spec.issuer.o) : name(spec.cn, spec.o),
    seq(time(notBefore), time(notAfter)),
    name(spec.cn, spec.o),
    spkiOf(spec.key),
    explicit(3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, { key: issuerKey, dsaEncoding: 'der' });
  return seq(tbs, sigAlg, bitString(signature));
}

/** A new P-256 key pair. */
export function generateP256(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

/** DER certificate → PEM. */
export function certificatePem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/** Private key → PKCS#8 PEM. */
export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}
