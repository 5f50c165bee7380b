/**
 * Every error coapkit throws is a CoapError with a fixed `code` per subclass
 * (undici style), declared once as the class's static `code`.
 *
 * `instanceof` keeps working across two loaded copies of the library (an application and a
 * dependency each with their own coapkit, or the ESM and a bundled copy): as in undici, each
 * class has a brand, `Symbol.for('coapkit.error.' + code)`, that its instances carry (on the
 * prototype, not enumerable), and `CoapError[Symbol.hasInstance]`, inherited by every
 * subclass, accepts a value of the same copy by its prototype chain or of another copy by the
 * brand of the class it is asked about.
 */

/** A class, as `instanceof` sees it. */
type ErrorClass = abstract new (...args: never[]) => object;

/** The brand symbol of each class with its own static `code` (null: the class has none). */
const brands = new WeakMap<ErrorClass, symbol | null>();
/** Classes whose prototypes (and their ancestors') carry their brands already. */
const branded = new WeakSet<ErrorClass>();

function brandOf(cls: ErrorClass): symbol | null {
  let b = brands.get(cls);
  if (b === undefined) {
    const code: unknown = Object.hasOwn(cls, 'code') ? (cls as { code?: unknown }).code : undefined;
    b = typeof code === 'string' ? Symbol.for(`coapkit.error.${code}`) : null;
    brands.set(cls, b);
  }
  return b;
}

/** Puts the brand of `cls` and of each ancestor up to CoapError on their prototypes (once). */
function brandChain(cls: ErrorClass): void {
  for (let c: ErrorClass | null = cls; c !== null && !branded.has(c); c = Object.getPrototypeOf(c)) {
    branded.add(c);
    const b = brandOf(c);
    if (b !== null) Object.defineProperty(c.prototype, b, { value: true });
    if (c === CoapError) break;
  }
}

export class CoapError extends Error {
  /**
   * The code of this class's errors. A subclass declares its own
   * (`static override readonly code = 'COAP_ERR_X'`): it is its `instanceof` brand across
   * copies of the library and the `code` of its instances.
   */
  static readonly code: string = 'COAP_ERR';

  /** Stable machine-readable code, e.g. `COAP_ERR_MESSAGE_FORMAT` (the class's static `code`). */
  readonly code: string;
  /** An optional hint a CLI can print to help the user fix the problem. */
  hint?: string;

  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = (new.target as typeof CoapError).code;
    if (options?.hint !== undefined) this.hint = options.hint;
    if (!branded.has(new.target)) brandChain(new.target);
  }

  /**
   * `err instanceof SomeCoapError`: true for an instance of the class or of a subclass, from
   * this copy of coapkit or from another one (by the class's brand; a subclass without its
   * own static `code` is recognised in its own copy only).
   */
  // `this` is the class `instanceof` was called on (a subclass too), on purpose.
  // biome-ignore-start lint/complexity/noThisInStatic: see above
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    // Fast path: same copy of the library.
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    const brand = brandOf(this);
    return brand !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
  // biome-ignore-end lint/complexity/noThisInStatic: see above
}

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

/** A bad argument passed to a library function. */
export class InvalidArgumentError extends CoapError {
  static override readonly code: string = 'COAP_ERR_INVALID_ARGUMENT';
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

/** A DTLS protocol failure (handshake failure, alert, bad record...). */
export class DtlsError extends CoapError {
  static override readonly code: string = 'COAP_ERR_DTLS';
  /** TLS AlertDescription number when the failure maps to an alert. */
  alert?: number;
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
