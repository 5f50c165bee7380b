/**
 * DTLS errors (RFC 6347 transport failures). They extend the library-wide
 * root CoapError (src/util/errors.ts), so `instanceof CoapError` and the
 * `code` values hold for users, while DTLS imports nothing of CoAP.
 */
import { CoapError } from '../util/errors.js';

/** A DTLS protocol failure (handshake failure, alert, bad record...). */
export class DtlsError extends CoapError {
  static override readonly code: string = 'COAP_ERR_DTLS';
  /** TLS AlertDescription number when the failure maps to an alert. */
  alert?: number;
}

/** A DtlsError that maps to the TLS alert `alert` (an AlertDescription number). */
export function alertError(alert: number, message: string): DtlsError {
  const e = new DtlsError(message);
  e.alert = alert;
  return e;
}

/** A DTLS alert was received from the peer. */
export class DtlsAlertError extends DtlsError {
  static override readonly code: string = 'COAP_ERR_DTLS_ALERT';
}

/** The DTLS handshake did not complete in time. */
export class DtlsHandshakeTimeoutError extends DtlsError {
  static override readonly code: string = 'COAP_ERR_DTLS_HANDSHAKE_TIMEOUT';
}

/**
 * A certificate, private key, CA or raw-public-key trust entry given to a DTLS
 * transport is unusable: not a certificate, not a key, not P-256, the key does
 * not match the certificate, an unreadable trust list.
 */
export class DtlsCredentialError extends DtlsError {
  static override readonly code: string = 'COAP_ERR_DTLS_CREDENTIALS';
}
