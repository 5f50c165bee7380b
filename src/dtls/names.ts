/**
 * The one set of name tables for DTLS 1.2 record / handshake fields (IANA TLS
 * registries): the DTLS layer's alerts and diagnostics events, the passive
 * decoder (src/dissect, which re-exports them) and the trace all read these.
 * Imports nothing.
 */

export const CONTENT_TYPE_NAMES: Record<number, string> = {
  20: 'ChangeCipherSpec',
  21: 'Alert',
  22: 'Handshake',
  23: 'ApplicationData',
  24: 'Heartbeat',
  25: 'tls12_cid',
};

export const HANDSHAKE_TYPE_NAMES: Record<number, string> = {
  0: 'HelloRequest',
  1: 'ClientHello',
  2: 'ServerHello',
  3: 'HelloVerifyRequest',
  4: 'NewSessionTicket',
  11: 'Certificate',
  12: 'ServerKeyExchange',
  13: 'CertificateRequest',
  14: 'ServerHelloDone',
  15: 'CertificateVerify',
  16: 'ClientKeyExchange',
  20: 'Finished',
};

export const ALERT_NAMES: Record<number, string> = {
  0: 'close_notify',
  10: 'unexpected_message',
  20: 'bad_record_mac',
  21: 'decryption_failed',
  22: 'record_overflow',
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  49: 'access_denied',
  50: 'decode_error',
  51: 'decrypt_error',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  86: 'inappropriate_fallback',
  90: 'user_canceled',
  100: 'no_renegotiation',
  110: 'unsupported_extension',
  115: 'unknown_psk_identity',
};

/** An alert's RFC name (`handshake_failure`), or 'unknown'. */
export function alertName(description: number): string {
  return ALERT_NAMES[description] ?? 'unknown';
}

/**
 * The RFC 5246 identifier of a display name in these tables: `ClientHello` ->
 * `client_hello`, `ChangeCipherSpec` -> `change_cipher_spec` (the `typeName`
 * values of the DTLS diagnostics events).
 */
export function rfcIdentifier(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

/** A table of display names as RFC identifiers (see `rfcIdentifier`). */
export function rfcIdentifiers(table: Readonly<Record<number, string>>): Record<number, string> {
  const out: Record<number, string> = {};
  for (const [k, v] of Object.entries(table)) out[Number(k)] = rfcIdentifier(v);
  return out;
}

export const EXTENSION_NAMES: Record<number, string> = {
  0: 'server_name',
  1: 'max_fragment_length',
  4: 'truncated_hmac',
  5: 'status_request',
  10: 'supported_groups',
  11: 'ec_point_formats',
  13: 'signature_algorithms',
  14: 'use_srtp',
  15: 'heartbeat',
  16: 'application_layer_protocol_negotiation',
  18: 'signed_certificate_timestamp',
  19: 'client_certificate_type',
  20: 'server_certificate_type',
  21: 'padding',
  22: 'encrypt_then_mac',
  23: 'extended_master_secret',
  28: 'record_size_limit',
  35: 'session_ticket',
  41: 'pre_shared_key',
  42: 'early_data',
  43: 'supported_versions',
  44: 'cookie',
  45: 'psk_key_exchange_modes',
  51: 'key_share',
  53: 'connection_id (deprecated)',
  54: 'connection_id',
  65281: 'renegotiation_info',
};

export const GROUP_NAMES: Record<number, string> = {
  23: 'secp256r1',
  24: 'secp384r1',
  25: 'secp521r1',
  29: 'x25519',
  30: 'x448',
  256: 'ffdhe2048',
  257: 'ffdhe3072',
};

export function versionName(v: number): string {
  switch (v) {
    case 0xfeff:
      return 'DTLS 1.0';
    case 0xfefd:
      return 'DTLS 1.2';
    case 0xfefc:
      return 'DTLS 1.3';
    case 0x0303:
      return 'TLS 1.2';
    default:
      return `0x${v.toString(16).padStart(4, '0')}`;
  }
}

export const CIPHER_SUITE_NAMES: Record<number, string> = {
  140: 'TLS_PSK_WITH_AES_128_CBC_SHA',
  141: 'TLS_PSK_WITH_AES_256_CBC_SHA',
  144: 'TLS_DHE_PSK_WITH_AES_128_CBC_SHA',
  145: 'TLS_DHE_PSK_WITH_AES_256_CBC_SHA',
  148: 'TLS_RSA_PSK_WITH_AES_128_CBC_SHA',
  149: 'TLS_RSA_PSK_WITH_AES_256_CBC_SHA',
  168: 'TLS_PSK_WITH_AES_128_GCM_SHA256',
  169: 'TLS_PSK_WITH_AES_256_GCM_SHA384',
  170: 'TLS_DHE_PSK_WITH_AES_128_GCM_SHA256',
  171: 'TLS_DHE_PSK_WITH_AES_256_GCM_SHA384',
  172: 'TLS_RSA_PSK_WITH_AES_128_GCM_SHA256',
  173: 'TLS_RSA_PSK_WITH_AES_256_GCM_SHA384',
  174: 'TLS_PSK_WITH_AES_128_CBC_SHA256',
  175: 'TLS_PSK_WITH_AES_256_CBC_SHA384',
  178: 'TLS_DHE_PSK_WITH_AES_128_CBC_SHA256',
  179: 'TLS_DHE_PSK_WITH_AES_256_CBC_SHA384',
  182: 'TLS_RSA_PSK_WITH_AES_128_CBC_SHA256',
  183: 'TLS_RSA_PSK_WITH_AES_256_CBC_SHA384',
  49205: 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA',
  49206: 'TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA',
  49207: 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256',
  49208: 'TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384',
  49258: 'TLS_PSK_WITH_ARIA_128_GCM_SHA256',
  49259: 'TLS_PSK_WITH_ARIA_256_GCM_SHA384',
  49260: 'TLS_DHE_PSK_WITH_ARIA_128_GCM_SHA256',
  49261: 'TLS_DHE_PSK_WITH_ARIA_256_GCM_SHA384',
  49262: 'TLS_RSA_PSK_WITH_ARIA_128_GCM_SHA256',
  49263: 'TLS_RSA_PSK_WITH_ARIA_256_GCM_SHA384',
  49300: 'TLS_PSK_WITH_CAMELLIA_128_CBC_SHA256',
  49301: 'TLS_PSK_WITH_CAMELLIA_256_CBC_SHA384',
  49302: 'TLS_DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256',
  49303: 'TLS_DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384',
  49304: 'TLS_RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256',
  49305: 'TLS_RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384',
  49306: 'TLS_ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256',
  49307: 'TLS_ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384',
  49316: 'TLS_PSK_WITH_AES_128_CCM',
  49317: 'TLS_PSK_WITH_AES_256_CCM',
  49318: 'TLS_DHE_PSK_WITH_AES_128_CCM',
  49319: 'TLS_DHE_PSK_WITH_AES_256_CCM',
  49320: 'TLS_PSK_WITH_AES_128_CCM_8',
  49321: 'TLS_PSK_WITH_AES_256_CCM_8',
  49322: 'TLS_PSK_DHE_WITH_AES_128_CCM_8',
  49323: 'TLS_PSK_DHE_WITH_AES_256_CCM_8',
  52395: 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256',
  52396: 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
  52397: 'TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
  52398: 'TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256',
  255: 'TLS_EMPTY_RENEGOTIATION_INFO_SCSV',
  47: 'TLS_RSA_WITH_AES_128_CBC_SHA',
  53: 'TLS_RSA_WITH_AES_256_CBC_SHA',
  60: 'TLS_RSA_WITH_AES_128_CBC_SHA256',
  156: 'TLS_RSA_WITH_AES_128_GCM_SHA256',
  49195: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  49196: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  49199: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
  49200: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
  49187: 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256',
  49324: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM',
  49326: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
  52392: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  52393: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  53249: 'TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256',
  53250: 'TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384',
  53251: 'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
  53253: 'TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256',
  22016: 'TLS_FALLBACK_SCSV',
};

export function cipherSuiteName(id: number): string {
  return CIPHER_SUITE_NAMES[id] ?? `unknown suite 0x${id.toString(16).padStart(4, '0')}`;
}
