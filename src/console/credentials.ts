/**
 * The credentials a page gives the console for its coaps:// requests,
 * from the side channel's `credentials` message: a PSK (identity and key), a
 * client certificate and private key with the CAs that vouch for the server
 * (ECDHE_ECDSA with X.509, as `coapkit get --cert --key --ca`; over
 * coaps+tcp:// and coaps+ws:// the same certificate, key and CAs for TLS), or a raw
 * public key with the server keys it trusts (RFC 7250, `--rpk --rpk-trust`).
 * PEM texts come from the page (pasted or read there with FileReader); they
 * are checked at once, so a bad PEM is answered before anything is sent.
 * Private keys are never logged, echoed or put in an error message: the page
 * gets a summary (the certificate's subject, a key's fingerprint) or the
 * typed error's message.
 */
import { Buffer } from 'node:buffer';
import { createHash, type X509Certificate } from 'node:crypto';
import {
  buildCertOptions,
  type DtlsCertificateOptions,
  parseCertificates,
  sha256Hex,
} from '../dtls/crypto/certs.js';
import { DtlsCredentialError } from '../errors.js';

/** Most characters of one PEM field (a certificate chain or a CA bundle). */
export const MAX_PEM_CHARS = 32 * 1024;

export type ConsoleCredentials =
  | { kind: 'none' }
  | { kind: 'psk'; identity: string; key: Buffer }
  | {
      kind: 'cert' | 'rpk';
      /** For CoapClient's `dtls` option. */
      dtls: DtlsCertificateOptions;
      /** Tells credential sets apart (SHA-256 of the material; the clients are kept by it). */
      id: string;
      /** What the page is told: who we are and how the server is checked. No key material. */
      summary: string;
      /** Certificate mode over TLS (coaps+tcp://, coaps+ws://): CoapClient's `tls` option. */
      tls?: { cert: string; key: string; ca?: string };
    }
  | { kind: 'error'; message: string };

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v : undefined);

function field(c: Record<string, unknown>, name: string, label: string): string | undefined {
  const v = str(c[name]);
  if (v !== undefined && v.length > MAX_PEM_CHARS)
    throw new DtlsCredentialError(`${label} is over ${MAX_PEM_CHARS} characters`);
  return v;
}

const subjectOf = (c: X509Certificate) => c.subject.replace(/\n/g, ', ');

/**
 * The credentials of one `credentials` control message. `mode` is `psk`
 * (the default: `identity` with `keyHex` or `key`), `cert` (`cert`, `key`,
 * optional `ca`) or `rpk` (`rpk`, optional `rpkTrust`). Unusable input gives
 * `{ kind: 'error' }` with the DtlsCredentialError's message.
 */
export function parseCredentials(c: Record<string, unknown>): ConsoleCredentials {
  const mode = c.mode ?? 'psk';
  if (mode === 'psk') {
    if (typeof c.identity !== 'string' || c.identity === '') return { kind: 'none' };
    let key: Buffer | undefined;
    if (typeof c.keyHex === 'string' && /^([0-9a-fA-F]{2})+$/.test(c.keyHex))
      key = Buffer.from(c.keyHex, 'hex');
    else if (typeof c.key === 'string' && c.key !== '') key = Buffer.from(c.key, 'utf8');
    return key ? { kind: 'psk', identity: c.identity, key } : { kind: 'none' };
  }
  try {
    if (mode === 'cert') {
      const cert = field(c, 'cert', 'the certificate');
      const key = field(c, 'key', 'the private key');
      const ca = field(c, 'ca', 'the CA');
      if (cert === undefined || key === undefined)
        throw new DtlsCredentialError(
          cert === undefined
            ? 'certificate mode needs the client certificate (PEM)'
            : 'certificate mode needs the private key of the certificate (PEM)',
        );
      const dtls: DtlsCertificateOptions = {
        cert,
        key,
        ...(ca !== undefined ? { ca } : { verifyPeer: false }),
      };
      // Checks every PEM; the CAs come back parsed.
      const cas = buildCertOptions(dtls, 'client')!.trust.ca;
      const leaf = parseCertificates(cert, 'cert')[0]!;
      const expired = Date.parse(leaf.validTo) < Date.now() ? ` (expired on ${leaf.validTo})` : '';
      const summary = `certificate ${subjectOf(leaf)}${expired}; ${
        cas.length > 0
          ? `server checked against ${cas.map(subjectOf).join(' / ')}`
          : "no CA given: over coaps:// the server's certificate is not verified (over coaps+tcp:// and coaps+ws:// it is checked against the system's CAs)"
      }`;
      return {
        kind: 'cert',
        dtls,
        id: digest('cert', cert, key, ca ?? ''),
        summary,
        tls: { cert, key, ...(ca !== undefined ? { ca } : {}) },
      };
    }
    if (mode === 'rpk') {
      const rpk = field(c, 'rpk', 'the raw public key');
      const trust = field(c, 'rpkTrust', 'the trusted server keys');
      if (rpk === undefined)
        throw new DtlsCredentialError('raw public key mode needs a P-256 private key (PEM)');
      const dtls: DtlsCertificateOptions = { rpk, ...(trust !== undefined ? { rpkTrust: [trust] } : {}) };
      const built = buildCertOptions(dtls, 'client')!;
      const fp = sha256Hex(built.rpk!.spki);
      const n = built.trust.rpkTrust?.size;
      const summary = `raw public key ${fp.slice(0, 16)}…; ${
        n !== undefined
          ? `server key must be one of ${n} trusted`
          : 'any server key accepted (no trusted keys given)'
      }`;
      return { kind: 'rpk', dtls, id: digest('rpk', rpk, trust ?? ''), summary };
    }
    throw new DtlsCredentialError(`unknown credentials mode ${JSON.stringify(String(mode)).slice(0, 40)}`);
  } catch (err) {
    if (err instanceof DtlsCredentialError) return { kind: 'error', message: err.message };
    throw err;
  }
}

function digest(...parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${p.length}:`).update(p);
  return h.digest('hex');
}
