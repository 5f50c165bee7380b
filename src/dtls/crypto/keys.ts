/**
 * DTLS 1.2 / TLS 1.2 key schedule for PSK suites:
 * - premaster secret for PSK and ECDHE_PSK (RFC 4279 §2, RFC 5489 §2),
 * - master secret, optionally the RFC 7627 extended master secret,
 * - key block expansion (RFC 5246 §6.3),
 * - Finished verify_data (RFC 5246 §7.4.9).
 * Also imported by the passive capture decoder.
 */
import { Buffer } from 'node:buffer';
import { prf } from './prf.js';
import type { CipherSuiteInfo } from './suites.js';

/** struct { opaque other_secret<0..2^16-1>; opaque psk<0..2^16-1>; } */
export function pskPremasterSecret(psk: Uint8Array, otherSecret?: Uint8Array): Buffer {
  const other = otherSecret ?? Buffer.alloc(psk.length);
  const out = Buffer.allocUnsafe(4 + other.length + psk.length);
  out.writeUInt16BE(other.length, 0);
  out.set(other, 2);
  out.writeUInt16BE(psk.length, 2 + other.length);
  out.set(psk, 4 + other.length);
  return out;
}

/**
 * master_secret = PRF(pre_master_secret, "master secret", client_random + server_random)[0..47],
 * or with `sessionHash`: PRF(pre_master_secret, "extended master secret", session_hash) (RFC 7627 §4).
 */
export function masterSecret(
  suite: CipherSuiteInfo,
  premaster: Uint8Array,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
  sessionHash?: Uint8Array,
): Buffer {
  if (sessionHash !== undefined)
    return prf(suite.prfHash, premaster, 'extended master secret', sessionHash, 48);
  const seed = Buffer.allocUnsafe(64);
  seed.set(clientRandom, 0);
  seed.set(serverRandom, 32);
  return prf(suite.prfHash, premaster, 'master secret', seed, 48);
}

export interface KeyBlock {
  clientWriteMacKey: Buffer;
  serverWriteMacKey: Buffer;
  clientWriteKey: Buffer;
  serverWriteKey: Buffer;
  clientWriteIv: Buffer;
  serverWriteIv: Buffer;
}

/**
 * The raw key_block = PRF(master_secret, "key expansion", server_random + client_random)
 * (client MAC key, server MAC key, client key, server key, client IV, server IV), in an
 * unpooled Buffer with `extra` spare bytes at the end: a long-lived session key must not
 * pin a shared 8 KB Buffer pool slab.
 */
export function keyBlockBytes(
  suite: CipherSuiteInfo,
  master: Uint8Array,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
  extra = 0,
): Buffer {
  const n = 2 * (suite.macKeyLength + suite.encKeyLength + suite.fixedIvLength);
  const seed = Buffer.allocUnsafe(64);
  seed.set(serverRandom, 0);
  seed.set(clientRandom, 32);
  const out = Buffer.allocUnsafeSlow(n + extra);
  prf(suite.prfHash, master, 'key expansion', seed, n, out);
  return out;
}

/** key_block = PRF(master_secret, "key expansion", server_random + client_random), split in RFC 5246 §6.3 order. */
export function keyBlock(
  suite: CipherSuiteInfo,
  master: Uint8Array,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
): KeyBlock {
  const m = suite.macKeyLength;
  const k = suite.encKeyLength;
  const iv = suite.fixedIvLength;
  const kb = keyBlockBytes(suite, master, clientRandom, serverRandom);
  let o = 0;
  const take = (n: number): Buffer => {
    const b = Buffer.from(kb.subarray(o, o + n));
    o += n;
    return b;
  };
  return {
    clientWriteMacKey: take(m),
    serverWriteMacKey: take(m),
    clientWriteKey: take(k),
    serverWriteKey: take(k),
    clientWriteIv: take(iv),
    serverWriteIv: take(iv),
  };
}

/** verify_data = PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]. */
export function finishedVerifyData(
  suite: CipherSuiteInfo,
  master: Uint8Array,
  label: 'client finished' | 'server finished',
  handshakeHash: Uint8Array,
): Buffer {
  return prf(suite.prfHash, master, label, handshakeHash, 12);
}
