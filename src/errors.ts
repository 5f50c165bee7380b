/**
 * Every error coapkit throws is a CoapError with a fixed `code` per subclass
 * (undici style). The root class and InvalidArgumentError live in
 * util/errors.ts, the DTLS errors in dtls/errors.ts (DTLS imports nothing of
 * CoAP); this module re-exports them beside the CoAP errors, so
 * `import { ... } from 'coapkit'` sees one list.
 */
import { CoapError, InvalidArgumentError } from './util/errors.js';

export {
  DtlsAlertError,
  DtlsCredentialError,
  DtlsError,
  DtlsHandshakeTimeoutError,
} from './dtls/errors.js';
export {
  StoreDependencyError,
  StoreError,
  StoreFormatError,
  StoreUnavailableError,
} from './store/errors.js';
export { CoapError, InvalidArgumentError };

/** A datagram or message that violates the CoAP wire format (RFC 7252 §3). */
export class MessageFormatError extends CoapError {
  static override readonly code: string = 'COAP_ERR_MESSAGE_FORMAT';
}

/** An option value that does not fit its definition (format, length). */
export class OptionError extends CoapError {
  static override readonly code: string = 'COAP_ERR_OPTION';
}

/** A URI that cannot be used as a coap:// or coaps:// URI (RFC 7252 §6). */
export class UriError extends CoapError {
  static override readonly code: string = 'COAP_ERR_INVALID_URI';
}

/** Link format (RFC 6690) that cannot be parsed. */
export class LinkFormatError extends CoapError {
  static override readonly code: string = 'COAP_ERR_LINK_FORMAT';
}

/** Host name resolution failed. */
export class DnsError extends CoapError {
  static override readonly code: string = 'COAP_ERR_DNS';
}

/** Socket-level failure (bind, send, ICMP unreachable...). */
export class NetworkError extends CoapError {
  static override readonly code: string = 'COAP_ERR_NETWORK';
}

/** No response (or no ACK) within the allowed time. */
export class TimeoutError extends CoapError {
  static override readonly code: string = 'COAP_ERR_TIMEOUT';
}

/** The peer answered with a Reset message. */
export class ResetError extends CoapError {
  static override readonly code: string = 'COAP_ERR_RESET';
}

/** The operation was aborted through an AbortSignal or by closing the endpoint. */
export class AbortError extends CoapError {
  static override readonly code: string = 'COAP_ERR_ABORTED';
}

/** The endpoint / transport is closed. */
export class ClosedError extends CoapError {
  static override readonly code: string = 'COAP_ERR_CLOSED';
}

/** Malformed or unsupported packet-capture file (pcap / pcapng). */
export class CaptureFormatError extends CoapError {
  static override readonly code: string = 'COAP_ERR_CAPTURE_FORMAT';
}

/**
 * Thrown by a request handler to answer with a given response code:
 * `throw new ResponseCodeError('4.03', 'Forbidden')` sends 4.03 with the
 * message as diagnostic payload. Any other error thrown by a handler becomes 5.00.
 */
export class ResponseCodeError extends CoapError {
  static override readonly code: string = 'COAP_ERR_RESPONSE_CODE';
  readonly responseCode: number;
  constructor(responseCode: number | string, message?: string, options?: { cause?: unknown }) {
    super(message ?? '', options);
    this.responseCode = typeof responseCode === 'number' ? responseCode : parseDottedCode(responseCode);
  }
}

function parseDottedCode(s: string): number {
  const m = /^([0-7])\.(\d\d)$/.exec(s);
  if (!m) throw new InvalidArgumentError(`invalid response code "${s}" (expected c.dd, e.g. 4.04)`);
  const cls = Number(m[1]);
  const detail = Number(m[2]);
  if (detail > 31) throw new InvalidArgumentError(`invalid response code "${s}" (detail must be 00-31)`);
  return (cls << 5) | detail;
}

/** Command-line usage error (bad flag, missing argument). */
export class UsageError extends CoapError {
  static override readonly code: string = 'COAP_ERR_USAGE';
}

/**
 * The peer broke the protocol: an answer the client cannot use, e.g. 2.31 Continue to the
 * last block of an upload or to a request that was not block-wise, or a Block1 option that
 * does not acknowledge the block sent. Never the user's fault (the CLI exits 3, not 64).
 */
export class ProtocolError extends CoapError {
  static override readonly code: string = 'COAP_ERR_PROTOCOL';
}

/**
 * A block-wise transfer (RFC 7959) failed: representation kept changing, a malformed or
 * inconsistent block (number out of range, larger SZX than asked, wrong offset or length),
 * more bytes than Size2 announced, or a body over the limit ({@link BodyTooLargeError}).
 */
export class BlockTransferError extends ProtocolError {
  static override readonly code: string = 'COAP_ERR_BLOCK_TRANSFER';
}

/**
 * A response body (Size2, or the bytes received so far) over the client's limit
 * (`maxBodySize`, default 16 MiB; CLI `--max-body`). The transfer is stopped at once.
 */
export class BodyTooLargeError extends BlockTransferError {
  static override readonly code: string = 'COAP_ERR_BODY_TOO_LARGE';
  /** The limit in bytes that was exceeded (undefined when not given to the constructor). */
  limit?: number;
}

/** An observation (RFC 7641) ended because the server stopped it or rejected the registration. */
export class ObserveError extends CoapError {
  static override readonly code: string = 'COAP_ERR_OBSERVE';
}

/**
 * OSCORE (RFC 8613): a message that cannot be protected or verified. `responseCode` and
 * `diagnostic` are set when the server answered with an unprotected error (e.g. 4.01
 * "Security context not found"); the subclasses name the common causes.
 */
export class OscoreError extends CoapError {
  static override readonly code: string = 'COAP_ERR_OSCORE';
  /** The server's unprotected error code (e.g. 0x81 for 4.01), when the error is its answer. */
  responseCode?: number;
  /** The server's diagnostic payload, when the error is its answer. */
  diagnostic?: string;
}

/** OSCORE: no security context for the message's kid / kid context (RFC 8613 §8.2 step 2). */
export class OscoreContextNotFoundError extends OscoreError {
  static override readonly code: string = 'COAP_ERR_OSCORE_UNKNOWN_CONTEXT';
}

/** OSCORE: the AEAD tag did not verify (wrong key, altered message; RFC 8613 §8.2 step 6, §8.4 step 5). */
export class OscoreDecryptError extends OscoreError {
  static override readonly code: string = 'COAP_ERR_OSCORE_DECRYPT';
}

/** OSCORE: a Partial IV already received or too old for the replay window (RFC 8613 §7.4). */
export class OscoreReplayError extends OscoreError {
  static override readonly code: string = 'COAP_ERR_OSCORE_REPLAY';
}

/** OSCORE: the sender sequence number is exhausted (2^40 - 1) or could not be persisted (§7.2.1, §7.5). */
export class OscoreSequenceError extends OscoreError {
  static override readonly code: string = 'COAP_ERR_OSCORE_SEQUENCE';
}

/**
 * OSCORE: no sender sequence number is reserved right now (the context takes
 * its numbers in ranges from a shared store and the next range is not
 * committed yet). Only this message fails; a server answers 5.03 Service
 * Unavailable with Max-Age `retryAfter`, and the next range is on its way.
 */
export class OscoreSequenceUnavailableError extends OscoreSequenceError {
  static override readonly code: string = 'COAP_ERR_OSCORE_SEQUENCE_UNAVAILABLE';
  /** Seconds after which a retry is expected to find a reserved number. */
  retryAfter = 1;
}
