/**
 * The DTLS 1.2 cipher suites coapkit implements (PSK, ECDHE_PSK, ECDHE_ECDSA), with the parameters the
 * key schedule (RFC 5246 §6.3) and record protection need. TLS_PSK_WITH_AES_128_CCM_8
 * is mandatory for CoAP PSK mode (RFC 7252 §9.1.3.1), TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
 * for RawPublicKey and Certificate mode (§9.1.3.2/3). All lengths are in bytes.
 */

export interface CipherSuiteInfo {
  id: number;
  name: string;
  keyExchange: 'psk' | 'ecdhe_psk' | 'ecdhe_ecdsa';
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
  ...(
    [
      [0xc0ae, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', 'aes-128-ccm8', 8],
      [0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'aes-128-gcm', 16],
      [0xc0ac, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM', 'aes-128-ccm', 16],
    ] as const
  ).map(
    ([id, name, cipher, tagLength]): CipherSuiteInfo => ({
      id,
      name,
      keyExchange: 'ecdhe_ecdsa',
      cipher,
      prfHash: 'sha256',
      encKeyLength: 16,
      fixedIvLength: 4,
      recordIvLength: 8,
      macKeyLength: 0,
      tagLength,
    }),
  ),
];

export const CIPHER_SUITES: ReadonlyMap<number, CipherSuiteInfo> = new Map(list.map((s) => [s.id, s]));

/** Default client offer / server preference order. CCM_8 first (RFC 7252 §9.1.3.1). */
export const DEFAULT_CIPHER_SUITES: readonly number[] = [0xc0a8, 0xc0a4, 0x00a8, 0xccac, 0xc037];

/** Default certificate / raw public key suites (ECDHE_ECDSA), CCM_8 first (RFC 7252 §9.1.3.2/3). */
export const DEFAULT_CERT_CIPHER_SUITES: readonly number[] = [0xc0ae, 0xc02b, 0xc0ac];

/** True for the suites authenticated by a certificate or raw public key (ECDHE_ECDSA). */
export function isCertSuite(suite: CipherSuiteInfo): boolean {
  return suite.keyExchange === 'ecdhe_ecdsa';
}

/** Maximum record expansion (explicit nonce/IV + tag/MAC + max CBC padding) of a suite. */
export function recordOverhead(suite: CipherSuiteInfo): number {
  return suite.cipher === 'aes-128-cbc'
    ? suite.recordIvLength + suite.tagLength + 16
    : suite.recordIvLength + suite.tagLength;
}
