/**
 * DTLS sessions that outlive a graceful restart (issue 14): the sealed format
 * `DtlsServerTransport.exportSessions` writes and `importSessions` reads.
 *
 *     "CKDS" | version (1) | salt (16) | IV (12) | AES-256-GCM ciphertext | tag (16)
 *
 * The AES key is HKDF-SHA256(state key, salt, "coapkit dtls sessions v1"); the
 * header is the additional authenticated data. The plaintext (JSON) holds per
 * session: address, port, how the peer authenticated, cipher suite, key block,
 * epoch, next write sequence number (with a margin), replay window. Nothing of
 * it is ever written in the clear.
 */

import { Buffer } from 'node:buffer';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { SessionSnapshot } from '../dtls/connection.js';
import { type CertOptions, sha256Hex } from '../dtls/crypto/certs.js';
import { CoapError } from '../errors.js';
import type { PeerAuth } from './transport.js';

/** Why sealed DTLS session state cannot be imported. */
export type SessionStateProblem = 'key' | 'foreign' | 'version' | 'corrupt' | 'full';

/**
 * Sealed DTLS session state that cannot be imported: a wrong key or damaged
 * data (`problem` 'key': the authentication tag does not match), not session
 * state at all ('foreign'), a format version this coapkit does not read
 * ('version'), contents that do not describe valid sessions ('corrupt'), or
 * more sessions than the transport may hold ('full'). Nothing was imported.
 */
export class DtlsSessionStateError extends CoapError {
  static override readonly code: string = 'COAP_ERR_DTLS_SESSION_STATE';
  /** What is wrong (see the class). */
  readonly problem: SessionStateProblem;
  constructor(problem: SessionStateProblem, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.problem = problem;
  }
}

const MAGIC = Buffer.from('CKDS', 'latin1');
const VERSION = 1;
const SALT = 16;
const IV = 12;
const TAG = 16;
const HEADER = MAGIC.length + 1 + SALT + IV;
const INFO = Buffer.from('coapkit dtls sessions v1', 'latin1');
/** Shortest state key accepted, in bytes. */
export const MIN_STATE_KEY_BYTES = 16;
/** Added to each session's write sequence number on export (see exportSessions). */
export const DEFAULT_WRITE_SEQUENCE_MARGIN = 1 << 16;

/** What `DtlsServerTransport.importSessions` did. */
export interface SessionImportResult {
  /** Sessions taken over: their clients are answered without a handshake. */
  imported: number;
  /** Sessions left out: the peer had a session here already, or its PSK identity has no key any more. */
  skipped: number;
}

/** Options of `DtlsServerTransport.exportSessions`. */
export interface SessionExportOptions {
  /**
   * Keep serving the exported sessions here (default false: they leave this
   * transport without close_notify, so that closing it does not end them for
   * the clients). Then fewer than `writeSequenceMargin` records may be sent to
   * each before the importer takes over.
   */
  keep?: boolean;
  /** Added to each session's write sequence number (default 65536, DEFAULT_WRITE_SEQUENCE_MARGIN). */
  writeSequenceMargin?: number;
}

/** One exported session. */
export interface SessionEntry {
  address: string;
  port: number;
  /** How the peer authenticated (undefined: not known to the transport). */
  auth: PeerAuth | undefined;
  snapshot: SessionSnapshot;
  /** Certificate sessions: the trust anchors they were verified against (`trustAnchorsDigest`). */
  trust?: string | undefined;
}

/**
 * A digest of the X.509 trust anchors of `certs` (undefined: none): a certificate session
 * exported under some anchors is taken over only by a server that has the same ones.
 */
export function trustAnchorsDigest(certs: CertOptions | undefined): string | undefined {
  const ca = certs?.trust.ca;
  if (ca === undefined || ca.length === 0) return undefined;
  return sha256Hex(
    Buffer.from(
      ca
        .map((c) => c.fingerprint256)
        .sort()
        .join(','),
      'latin1',
    ),
  );
}

/**
 * Whether a certificate or raw-public-key session may be taken over by a server configured
 * with `certs`: the same X.509 trust anchors as when it was exported, or its raw public key
 * still allowed (a key taken out of the trust list, or anchors replaced, revoke the session
 * like a PSK identity without a key). PSK sessions are not this function's. `anchors`:
 * `trustAnchorsDigest(certs)`, computed once by the caller for all its sessions.
 */
export function stillTrusted(
  e: SessionEntry,
  certs: CertOptions | undefined,
  anchors: string | undefined,
): boolean {
  if (certs === undefined || e.auth === undefined) return false;
  if (e.auth.mode === 'rpk') {
    if (certs.rpk === undefined && certs.x509 === undefined) return false;
    return certs.trust.rpkTrust === undefined || certs.trust.rpkTrust.has(e.auth.identity);
  }
  if (e.auth.mode === 'x509') return e.trust !== undefined && e.trust === anchors;
  return false;
}

function stateKey(key: Uint8Array | string, salt: Buffer): Buffer {
  const k = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  if (k.length < MIN_STATE_KEY_BYTES)
    throw new DtlsSessionStateError('key', `the state key must have at least ${MIN_STATE_KEY_BYTES} bytes`);
  return Buffer.from(hkdfSync('sha256', k, salt, INFO, 32));
}

/** Seals `entries` with `key` (AES-256-GCM under an HKDF-derived key, fresh salt and IV). */
export function sealSessions(entries: readonly SessionEntry[], key: Uint8Array | string): Buffer {
  const salt = randomBytes(SALT);
  const iv = randomBytes(IV);
  const header = Buffer.concat([MAGIC, Buffer.from([VERSION]), salt, iv]);
  const body = Buffer.from(
    JSON.stringify({
      sessions: entries.map((e) => ({
        address: e.address,
        port: e.port,
        ...(e.auth !== undefined ? { auth: e.auth } : {}),
        ...(e.trust !== undefined ? { trust: e.trust } : {}),
        role: e.snapshot.role,
        suite: e.snapshot.suiteId,
        ems: e.snapshot.extendedMasterSecret,
        ...(e.snapshot.identity !== undefined ? { identity: e.snapshot.identity } : {}),
        keys: e.snapshot.keys.toString('base64'),
        epoch: 1,
        writeSeq: e.snapshot.writeSeq,
        replayMax: e.snapshot.replayMax,
        replayBits: e.snapshot.replayBits,
      })),
    }),
    'utf8',
  );
  const aes = stateKey(key, salt);
  const cipher = createCipheriv('aes-256-gcm', aes, iv);
  cipher.setAAD(header);
  const out = Buffer.concat([header, cipher.update(body), cipher.final(), cipher.getAuthTag()]);
  body.fill(0);
  aes.fill(0);
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function parseAuth(v: unknown): PeerAuth | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || typeof v.identity !== 'string' || !['psk', 'x509', 'rpk'].includes(v.mode as string))
    throw new Error('bad auth');
  const strOpt = (x: unknown) => x === undefined || typeof x === 'string';
  if (!strOpt(v.subject) || !strOpt(v.fingerprint)) throw new Error('bad auth');
  if (v.san !== undefined && !(Array.isArray(v.san) && v.san.every((s) => typeof s === 'string')))
    throw new Error('bad auth');
  return {
    mode: v.mode as PeerAuth['mode'],
    identity: v.identity,
    ...(v.subject !== undefined ? { subject: v.subject as string } : {}),
    ...(v.san !== undefined ? { san: v.san as string[] } : {}),
    ...(v.fingerprint !== undefined ? { fingerprint: v.fingerprint as string } : {}),
  };
}

/**
 * Opens sealed session state: the entries, or DtlsSessionStateError. `maxSessions`
 * bounds how many it may hold (checked before anything is built).
 */
export function openSessions(buf: Uint8Array, key: Uint8Array | string, maxSessions: number): SessionEntry[] {
  const data = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (data.length < MAGIC.length || !data.subarray(0, MAGIC.length).equals(MAGIC))
    throw new DtlsSessionStateError('foreign', 'not coapkit DTLS session state (no "CKDS" header)');
  if (data.length < HEADER + TAG)
    throw new DtlsSessionStateError('corrupt', 'DTLS session state is truncated');
  if (data[MAGIC.length] !== VERSION)
    throw new DtlsSessionStateError(
      'version',
      `DTLS session state of format version ${data[MAGIC.length]}; this coapkit reads version ${VERSION}`,
    );
  const salt = data.subarray(MAGIC.length + 1, MAGIC.length + 1 + SALT);
  const iv = data.subarray(MAGIC.length + 1 + SALT, HEADER);
  const aes = stateKey(key, Buffer.from(salt));
  let body: Buffer;
  try {
    const d = createDecipheriv('aes-256-gcm', aes, iv);
    d.setAAD(data.subarray(0, HEADER));
    d.setAuthTag(data.subarray(data.length - TAG));
    body = Buffer.concat([d.update(data.subarray(HEADER, data.length - TAG)), d.final()]);
  } catch (err) {
    throw new DtlsSessionStateError(
      'key',
      'DTLS session state does not authenticate: wrong key or damaged data',
      {
        cause: err,
      },
    );
  } finally {
    aes.fill(0);
  }
  try {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new DtlsSessionStateError('corrupt', 'DTLS session state: contents are not valid', {
        cause: err,
      });
    }
    if (!isObject(parsed) || !Array.isArray(parsed.sessions))
      throw new DtlsSessionStateError('corrupt', 'DTLS session state: no session list');
    const list = parsed.sessions as unknown[];
    if (list.length > maxSessions)
      throw new DtlsSessionStateError(
        'full',
        `${list.length} sessions, more than maxSessions (${maxSessions})`,
      );
    return list.map((s, i) => {
      try {
        if (!isObject(s)) throw new Error('not an object');
        const { address, port, keys } = s;
        if (typeof address !== 'string' || isIP(address) === 0) throw new Error('bad address');
        if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
          throw new Error('bad port');
        if (s.epoch !== 1) throw new Error('bad epoch');
        if (s.role !== 'server' && s.role !== 'client') throw new Error('bad role');
        if (typeof s.suite !== 'number' || typeof keys !== 'string') throw new Error('bad suite or keys');
        if (s.identity !== undefined && typeof s.identity !== 'string') throw new Error('bad identity');
        if (typeof s.writeSeq !== 'number' || typeof s.replayMax !== 'number')
          throw new Error('bad sequence');
        if (typeof s.replayBits !== 'string') throw new Error('bad replay window');
        if (s.trust !== undefined && typeof s.trust !== 'string') throw new Error('bad trust');
        return {
          address,
          port,
          auth: parseAuth(s.auth),
          ...(s.trust !== undefined ? { trust: s.trust as string } : {}),
          snapshot: {
            role: s.role,
            suiteId: s.suite,
            extendedMasterSecret: s.ems === true,
            identity: s.identity as string | undefined,
            keys: Buffer.from(keys, 'base64'),
            writeSeq: s.writeSeq,
            replayMax: s.replayMax,
            replayBits: s.replayBits,
          },
        };
      } catch (err) {
        throw new DtlsSessionStateError(
          'corrupt',
          `DTLS session state: session ${i}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    });
  } finally {
    body.fill(0);
  }
}
