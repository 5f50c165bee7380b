/**
 * A throwaway PKI for certificate-mode tests, built with coapkit's own DER
 * builder (src/dtls/crypto/x509-gen.ts): a CA, a server and a client
 * certificate, a second CA with a client of its own, an expired client, and a
 * raw key pair; written as PEM files into a temporary folder.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex, spkiOf } from '../../src/dtls/crypto/certs.js';
import {
  buildCertificate,
  certificatePem,
  generateP256,
  privateKeyPem,
} from '../../src/dtls/crypto/x509-gen.js';

export interface Pki {
  dir: string;
  /** PEM texts. */
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  otherCaClientCert: string;
  otherCaClientKey: string;
  expiredClientCert: string;
  expiredClientKey: string;
  /** Raw public key pairs (PEM private keys) and their SPKI fingerprints. */
  rpkServerKey: string;
  rpkServerFingerprint: string;
  rpkClientKey: string;
  rpkClientFingerprint: string;
  /** File paths of everything above: `${dir}/${name}.pem`. */
  file(name: keyof Omit<Pki, 'dir' | 'file' | 'rpkServerFingerprint' | 'rpkClientFingerprint'>): string;
}

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'coapkit-pki-'));
  const ca = generateP256();
  const other = generateP256();
  const issuer = { cn: 'coapkit test CA', key: ca.privateKey };
  const caPem = certificatePem(buildCertificate({ cn: issuer.cn, key: ca.privateKey, ca: true }));
  const leaf = (cn: string, by = issuer, validity?: { notBefore: Date; notAfter: Date }) => {
    const k = generateP256();
    const cert = certificatePem(
      buildCertificate({ cn, key: k.privateKey, issuer: by, san: ['localhost', '127.0.0.1'], ...validity }),
    );
    return [cert, privateKeyPem(k.privateKey)] as const;
  };
  const [serverCert, serverKey] = leaf('localhost');
  const [clientCert, clientKey] = leaf('device-1');
  const [otherCaClientCert, otherCaClientKey] = leaf('intruder', { cn: 'other CA', key: other.privateKey });
  const day = 86_400_000;
  const [expiredClientCert, expiredClientKey] = leaf('old-device', issuer, {
    notBefore: new Date(Date.now() - 30 * day),
    notAfter: new Date(Date.now() - day),
  });
  const rs = generateP256();
  const rc = generateP256();
  const pki = {
    dir,
    ca: caPem,
    serverCert,
    serverKey,
    clientCert,
    clientKey,
    otherCaClientCert,
    otherCaClientKey,
    expiredClientCert,
    expiredClientKey,
    rpkServerKey: privateKeyPem(rs.privateKey),
    rpkServerFingerprint: sha256Hex(spkiOf(rs.privateKey)),
    rpkClientKey: privateKeyPem(rc.privateKey),
    rpkClientFingerprint: sha256Hex(spkiOf(rc.privateKey)),
    file: (name: string) => join(dir, `${name}.pem`),
  } as Pki;
  for (const [k, v] of Object.entries(pki)) {
    if (typeof v === 'string' && v.startsWith('-----BEGIN')) writeFileSync(join(dir, `${k}.pem`), v);
  }
  return pki;
}

/** A P-256 key as a SEC1 "EC PRIVATE KEY" PEM file (what libcoap's -M rpk_file takes), and its fingerprint. */
export function writeRpkKey(dir: string, name: string): { file: string; fingerprint: string } {
  const k = generateP256();
  const file = join(dir, `${name}.pem`);
  writeFileSync(file, k.privateKey.export({ type: 'sec1', format: 'pem' }).toString());
  return { file, fingerprint: sha256Hex(spkiOf(k.privateKey)) };
}

/**
 * A self-signed P-256 certificate made by OpenSSL itself (`openssl req -x509`,
 * CN and subjectAltName localhost and 127.0.0.1, valid one day): the key
 * written to `keyFile`, the certificate to `certFile` (PEM).
 */
export function opensslSelfSigned(keyFile: string, certFile: string): void {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore', timeout: 20_000 },
  );
}
