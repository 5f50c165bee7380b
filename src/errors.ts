/**
 * Every error coapkit throws is a CoapError with a fixed `code` per subclass
 * (undici style). `instanceof` keeps working across two loaded copies of the
 * library because class identity is checked through a global symbol brand.
 */

const BRAND = Symbol.for('coapkit.error');

export class CoapError extends Error {
  /** Stable machine-readable code, e.g. `COAP_ERR_MESSAGE_FORMAT`. */
  readonly code: string = 'COAP_ERR';
  /** An optional hint a CLI can print to help the user fix the problem. */
  hint?: string;

  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    if (options?.hint !== undefined) this.hint = options.hint;
  }

  get [BRAND](): string {
    return this.code;
  }

  // `this` is the class `instanceof` was called on (a subclass too), on purpose.
  // biome-ignore-start lint/complexity/noThisInStatic: see above
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    // Fast path: same copy of the library.
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    // Cross-copy: compare the brand chain by class name.
    if (!(BRAND in value)) return false;
    if (this === CoapError) return true;
    let proto = Object.getPrototypeOf(value);
    while (proto !== null && proto !== Object.prototype) {
      if (proto.constructor?.name === this.name) return true;
      proto = Object.getPrototypeOf(proto);
    }
    return false;
  }
  // biome-ignore-end lint/complexity/noThisInStatic: see above
}

/** A datagram or message that violates the CoAP wire format (RFC 7252 §3). */
export class MessageFormatError extends CoapError {
  override readonly code: string = 'COAP_ERR_MESSAGE_FORMAT';
}

/** An option value that does not fit its definition (format, length). */
export class OptionError extends CoapError {
  override readonly code: string = 'COAP_ERR_OPTION';
}

/** A URI that cannot be used as a coap:// or coaps:// URI (RFC 7252 §6). */
export class UriError extends CoapError {
  override readonly code: string = 'COAP_ERR_INVALID_URI';
}

/** A bad argument passed to a library function. */
export class InvalidArgumentError extends CoapError {
  override readonly code: string = 'COAP_ERR_INVALID_ARGUMENT';
}

/** Link format (RFC 6690) that cannot be parsed. */
export class LinkFormatError extends CoapError {
  override readonly code: string = 'COAP_ERR_LINK_FORMAT';
}

/** Host name resolution failed. */
export class DnsError extends CoapError {
  override readonly code: string = 'COAP_ERR_DNS';
}

/** Socket-level failure (bind, send, ICMP unreachable...). */
export class NetworkError extends CoapError {
  override readonly code: string = 'COAP_ERR_NETWORK';
}

/** No response (or no ACK) within the allowed time. */
export class TimeoutError extends CoapError {
  override readonly code: string = 'COAP_ERR_TIMEOUT';
}

/** The peer answered with a Reset message. */
export class ResetError extends CoapError {
  override readonly code: string = 'COAP_ERR_RESET';
}

/** The operation was aborted through an AbortSignal or by closing the endpoint. */
export class AbortError extends CoapError {
  override readonly code: string = 'COAP_ERR_ABORTED';
}

/** The endpoint / transport is closed. */
export class ClosedError extends CoapError {
  override readonly code: string = 'COAP_ERR_CLOSED';
}

/** Malformed or unsupported packet-capture file (pcap / pcapng). */
export class CaptureFormatError extends CoapError {
  override readonly code: string = 'COAP_ERR_CAPTURE_FORMAT';
}

/** A DTLS protocol failure (handshake failure, alert, bad record...). */
export class DtlsError extends CoapError {
  override readonly code: string = 'COAP_ERR_DTLS';
  /** TLS AlertDescription number when the failure maps to an alert. */
  alert?: number;
}

/** A DTLS alert was received from the peer. */
export class DtlsAlertError extends DtlsError {
  override readonly code: string = 'COAP_ERR_DTLS_ALERT';
}

/** The DTLS handshake did not complete in time. */
export class DtlsHandshakeTimeoutError extends DtlsError {
  override readonly code: string = 'COAP_ERR_DTLS_HANDSHAKE_TIMEOUT';
}

/**
 * Thrown by a request handler to answer with a given response code:
 * `throw new ResponseCodeError('4.03', 'Forbidden')` sends 4.03 with the
 * message as diagnostic payload. Any other error thrown by a handler becomes 5.00.
 */
export class ResponseCodeError extends CoapError {
  override readonly code: string = 'COAP_ERR_RESPONSE_CODE';
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
  override readonly code: string = 'COAP_ERR_USAGE';
}

/**
 * The peer broke the protocol: an answer the client cannot use, e.g. 2.31 Continue to the
 * last block of an upload or to a request that was not block-wise, or a Block1 option that
 * does not acknowledge the block sent. Never the user's fault (the CLI exits 3, not 64).
 */
export class ProtocolError extends CoapError {
  override readonly code: string = 'COAP_ERR_PROTOCOL';
}

/**
 * A block-wise transfer (RFC 7959) failed: representation kept changing, a malformed or
 * inconsistent block (number out of range, larger SZX than asked, wrong offset or length),
 * more bytes than Size2 announced, or a body over the limit ({@link BodyTooLargeError}).
 */
export class BlockTransferError extends ProtocolError {
  override readonly code: string = 'COAP_ERR_BLOCK_TRANSFER';
}

/**
 * A response body (Size2, or the bytes received so far) over the client's limit
 * (`maxBodySize`, default 16 MiB; CLI `--max-body`). The transfer is stopped at once.
 */
export class BodyTooLargeError extends BlockTransferError {
  override readonly code: string = 'COAP_ERR_BODY_TOO_LARGE';
  /** The limit in bytes that was exceeded (undefined when not given to the constructor). */
  limit?: number;
}

/** An observation (RFC 7641) ended because the server stopped it or rejected the registration. */
export class ObserveError extends CoapError {
  override readonly code: string = 'COAP_ERR_OBSERVE';
}
