/**
 * The DTLS 1.2 PSK cipher suites coapkit implements, with the parameters the
 * key schedule (RFC 5246 §6.3) and record protection need. TLS_PSK_WITH_AES_128_CCM_8
 * is mandatory for CoAP (RFC 7252 §9.1.3.1). All lengths are in bytes.
 */

export interface CipherSuiteInfo {
  id: number;
  name: string;
  keyExchange: 'psk' | 'ecdhe_psk';
  cipher: 'aes-128-gcm' | 'aes-128-ccm' | 'aes-128-ccm8' | 'chacha20-poly1305' | 'aes-128-cbc';
  /** Only for the CBC (MAC-then-encrypt) suites. */
  macAlgorithm?: 'sha256';
  prfHash: 'sha256' | 'sha384';
  encKeyLength: number;
  /** client/server_write_IV length taken from the key block (implicit part). */
  fixedIvLength: number;
  /** Per-record explicit nonce / IV carried in each record. */
  recordIvLength: number;
  macKeyLength: number;
  /** AEAD tag length, or the MAC length for CBC suites. */
  tagLength: number;
}

const list: CipherSuiteInfo[] = [
  {
    id: 0xc0a8,
    name: 'TLS_PSK_WITH_AES_128_CCM_8',
    keyExchange: 'psk',
    cipher: 'aes-128-ccm8',
    prfHash: 'sha256',
    encKeyLength: 16,
    fixedIvLength: 4,
    recordIvLength: 8,
    macKeyLength: 0,
    tagLength: 8,
  },
  {
    id: 0xc0a4,
    name: 'TLS_PSK_WITH_AES_128_CCM',
    keyExchange: 'psk',
    cipher: 'aes-128-ccm',
    prfHash: 'sha256',
    encKeyLength: 16,
    fixedIvLength: 4,
    recordIvLength: 8,
    macKeyLength: 0,
    tagLength: 16,
  },
  {
    id: 0x00a8,
    name: 'TLS_PSK_WITH_AES_128_GCM_SHA256',
    keyExchange: 'psk',
    cipher: 'aes-128-gcm',
    prfHash: 'sha256',
    encKeyLength: 16,
    fixedIvLength: 4,
    recordIvLength: 8,
    macKeyLength: 0,
    tagLength: 16,
  },
  {
    id: 0xccac,
    name: 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
    keyExchange: 'ecdhe_psk',
    cipher: 'chacha20-poly1305',
    prfHash: 'sha256',
    encKeyLength: 32,
    fixedIvLength: 12,
    recordIvLength: 0,
    macKeyLength: 0,
    tagLength: 16,
  },
  {
    id: 0xc037,
    name: 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256',
    keyExchange: 'ecdhe_psk',
    cipher: 'aes-128-cbc',
    macAlgorithm: 'sha256',
    prfHash: 'sha256',
    encKeyLength: 16,
    fixedIvLength: 0,
    recordIvLength: 16,
    macKeyLength: 32,
    tagLength: 32,
  },
];

export const CIPHER_SUITES: ReadonlyMap<number, CipherSuiteInfo> = new Map(list.map((s) => [s.id, s]));

/** Default client offer / server preference order. CCM_8 first (RFC 7252 §9.1.3.1). */
export const DEFAULT_CIPHER_SUITES: readonly number[] = [0xc0a8, 0xc0a4, 0x00a8, 0xccac, 0xc037];

/** Maximum record expansion (explicit nonce/IV + tag/MAC + max CBC padding) of a suite. */
export function recordOverhead(suite: CipherSuiteInfo): number {
  return suite.cipher === 'aes-128-cbc'
    ? suite.recordIvLength + suite.tagLength + 16
    : suite.recordIvLength + suite.tagLength;
}
