/**
 * Certificates and raw public keys from flags (libcoap's names: coap-client
 * -c/-j/-C/-M are --cert/--key/--ca/--rpk here), for the client commands and
 * `coapkit serve`, and `serve --generate-cert DIR` (a throwaway CA, server and
 * client certificate written as PEM files). Files are read and checked at
 * once, so an unusable file is reported before anything is sent or bound.
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  buildCertOptions,
  type DtlsCertificateOptions,
  loadRpkCredential,
  sha256Hex,
} from '../dtls/crypto/certs.js';
import { buildCertificate, certificatePem, generateP256, privateKeyPem } from '../dtls/crypto/x509-gen.js';
import { DtlsCredentialError, UsageError } from '../errors.js';
import { type FlagSpecs, type Parsed, str } from './args.js';
import { CantCreateError, InputFileError } from './exit.js';
import { readInputFile } from './psk.js';

/** Client flags: --cert/--key (our certificate), --ca (trust anchors), --rpk (raw public key), --rpk-trust. */
export const CLIENT_CERT_FLAGS: FlagSpecs = {
  cert: { type: 'string' },
  key: { type: 'string', short: 'j' },
  ca: { type: 'string', short: 'C' },
  rpk: { type: 'string', short: 'M' },
  'rpk-trust': { type: 'string' },
};

/** libcoap's -c for --cert, in the commands where -c means nothing else (not ping: -c is --count). */
export const CERT_SHORT_FLAG: FlagSpecs = { cert: { type: 'string', short: 'c' } };

/** serve flags: the same (with coap-server's -c/-j/-C/-M) plus --generate-cert DIR. */
export const SERVE_CERT_FLAGS: FlagSpecs = {
  ...CLIENT_CERT_FLAGS,
  ...CERT_SHORT_FLAG,
  'generate-cert': { type: 'string' },
};

type FileFlag = 'cert' | 'key' | 'ca' | 'rpk' | 'rpk-trust';

function readFlagFile(p: Parsed, flag: FileFlag): Buffer | undefined {
  const file = str(p, flag);
  if (file === undefined) return undefined;
  if (file.trim() === '') throw new UsageError(`--${flag} expects a file name`);
  return readInputFile(file, `--${flag} file`);
}

/** Checks the credentials now; a DtlsCredentialError becomes an input-file error naming the flags. */
function checked(o: DtlsCertificateOptions, role: 'client' | 'server', p: Parsed): DtlsCertificateOptions {
  try {
    buildCertOptions(o, role);
  } catch (err) {
    if (!(err instanceof DtlsCredentialError)) throw err;
    const files = (['cert', 'key', 'ca', 'rpk', 'rpk-trust'] as const)
      .map((f) => (str(p, f) !== undefined ? `--${f} ${str(p, f)}` : ''))
      .filter((s) => s !== '')
      .join(', ');
    throw new InputFileError(`${err.message} (${files})`, {
      cause: err,
      hint: 'certificates and keys are PEM files; CoAP uses ECDSA P-256 keys (openssl ecparam -name prime256v1 -genkey)',
    });
  }
  return o;
}

function common(p: Parsed): DtlsCertificateOptions {
  const o: DtlsCertificateOptions = {};
  const cert = readFlagFile(p, 'cert');
  const key = readFlagFile(p, 'key');
  const ca = readFlagFile(p, 'ca');
  const rpk = readFlagFile(p, 'rpk');
  const trust = readFlagFile(p, 'rpk-trust');
  if (cert !== undefined) o.cert = cert;
  if (key !== undefined) o.key = key;
  if (ca !== undefined) o.ca = ca;
  if (rpk !== undefined) o.rpk = rpk;
  if (trust !== undefined) o.rpkTrust = [trust];
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError(cert === undefined ? '--key needs --cert' : '--cert needs --key', {
      hint: 'give the certificate (--cert FILE) and its private key (--key FILE) together',
    });
  if (rpk !== undefined && cert !== undefined) throw new UsageError('use --rpk or --cert/--key, not both');
  return o;
}

/**
 * Client certificate options, or undefined without any of the flags. Without
 * --ca (and not in raw-public-key mode) the server's certificate is not
 * verified, as with coap-client; `note` says so.
 */
export function clientCertOptions(
  p: Parsed,
  note: (line: string) => void,
): DtlsCertificateOptions | undefined {
  const o = common(p);
  if (Object.keys(o).length === 0) return undefined;
  if (o.ca === undefined && o.rpk === undefined) {
    o.verifyPeer = false;
    note("the server's certificate is not verified: no --ca given");
  }
  return checked(o, 'client', p);
}

export interface ServeCredentials {
  certs?: DtlsCertificateOptions;
  /** What the banner says about certificate mode. */
  note?: string;
  /** The client command for --generate-cert (without the URI). */
  clientArgs?: string;
  /** --generate-cert: the folder and whether the files were written now or reused. */
  generated?: { dir: string; reused: boolean };
}

/**
 * serve's certificate options. --cert/--key (with --ca: clients must present a
 * certificate from that CA; without: client certificates are not asked for),
 * --rpk (with --rpk-trust: only those client keys), --generate-cert DIR.
 */
export function serveCertOptions(p: Parsed): ServeCredentials {
  const dir = str(p, 'generate-cert');
  if (dir !== undefined) {
    if (['cert', 'key', 'ca', 'rpk'].some((f) => str(p, f) !== undefined))
      throw new UsageError('--generate-cert makes its own --cert, --key and --ca: give one or the other');
    const g = generateCertificates(dir);
    const certs = checked(
      {
        cert: readInputFile(g.files.serverCert, 'generated certificate'),
        key: readInputFile(g.files.serverKey, 'generated key'),
        ca: readInputFile(g.files.ca, 'generated CA'),
      },
      'server',
      p,
    );
    return {
      certs,
      note: 'X.509, client certificates from the generated CA required',
      clientArgs: `--cert ${g.files.clientCert} --key ${g.files.clientKey} --ca ${g.files.ca}`,
      generated: { dir, reused: g.reused },
    };
  }
  const o = common(p);
  if (Object.keys(o).length === 0) return {};
  if (o.cert === undefined && o.rpk === undefined)
    throw new UsageError('--ca and --rpk-trust need --cert/--key or --rpk', {
      hint: 'the server presents a certificate (--cert FILE --key FILE) or a raw public key (--rpk FILE)',
    });
  const notes: string[] = [];
  if (o.cert !== undefined) {
    if (o.ca === undefined && o.rpkTrust === undefined) {
      o.verifyPeer = false;
      notes.push('X.509, client certificates not asked for (no --ca)');
    } else notes.push('X.509, client certificate required');
  }
  if (o.rpk !== undefined) {
    const fp = sha256Hex(loadRpkCredential(o.rpk).spki);
    notes.push(
      `raw public key ${fp.slice(0, 16)}…, ${o.rpkTrust !== undefined ? 'client keys from --rpk-trust' : 'any client key (identified by its fingerprint)'}`,
    );
  }
  return { certs: checked(o, 'server', p), note: notes.join('; ') };
}

const FILES = {
  ca: 'ca.pem',
  serverCert: 'server.pem',
  serverKey: 'server.key',
  clientCert: 'client.pem',
  clientKey: 'client.key',
} as const;

/**
 * Writes a throwaway CA certificate, a server certificate (localhost, this
 * host's name, 127.0.0.1, ::1) and a client certificate (CN "client") with
 * their P-256 keys into `dir`. The CA's private key is not kept: nothing else
 * can be issued under it. A folder that already holds all the files is reused.
 */
export function generateCertificates(dir: string): {
  files: Record<keyof typeof FILES, string>;
  reused: boolean;
} {
  const files = Object.fromEntries(Object.entries(FILES).map(([k, f]) => [k, join(dir, f)])) as Record<
    keyof typeof FILES,
    string
  >;
  if (Object.values(files).every((f) => existsSync(f))) return { files, reused: true };
  const ca = generateP256();
  const server = generateP256();
  const client = generateP256();
  const issuer = { cn: 'coapkit throwaway CA', o: 'coapkit', key: ca.privateKey };
  const san = ['localhost', '127.0.0.1', '::1'];
  const host = hostname();
  if (/^[a-z0-9]([a-z0-9.-]{0,252})$/i.test(host) && host !== 'localhost') san.push(host);
  const out: Record<string, string> = {
    ca: certificatePem(buildCertificate({ cn: issuer.cn, o: issuer.o, key: ca.privateKey, ca: true })),
    serverCert: certificatePem(
      buildCertificate({ cn: 'localhost', key: server.privateKey, issuer, san, usage: ['server'] }),
    ),
    serverKey: privateKeyPem(server.privateKey),
    clientCert: certificatePem(
      buildCertificate({ cn: 'client', key: client.privateKey, issuer, usage: ['client'] }),
    ),
    clientKey: privateKeyPem(client.privateKey),
  };
  try {
    mkdirSync(dir, { recursive: true });
    for (const [k, text] of Object.entries(out)) {
      const f = files[k as keyof typeof FILES];
      writeFileSync(f, text, { mode: k.endsWith('Key') ? 0o600 : 0o644 });
      if (k.endsWith('Key')) chmodSync(f, 0o600);
    }
  } catch (err) {
    throw new CantCreateError(`cannot write the certificates into "${dir}": ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { files, reused: false };
}

/** True when any certificate flag is given (coaps:// then needs no PSK). */
export function hasCertFlags(p: Parsed): boolean {
  return ['cert', 'key', 'ca', 'rpk', 'rpk-trust'].some((f) => str(p, f) !== undefined);
}
