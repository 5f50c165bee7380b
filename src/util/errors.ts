/**
 * The root of every error coapkit throws, CoAP, DTLS or CLI: a CoapError with
 * a fixed `code` per subclass (undici style). `instanceof` keeps working
 * across two loaded copies of the library because class identity is checked
 * through a global symbol brand.
 *
 * In util/ so that every layer can extend it, DTLS included, without
 * importing the CoAP error classes (src/errors.ts re-exports all of them).
 * Imports nothing.
 */

const BRAND = Symbol.for('coapkit.error');

/**
 * The root of every error coapkit throws (CoAP, DTLS, CLI): catch it to catch them all,
 * tell them apart by `code` or by subclass.
 */
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

/** A bad argument passed to a library function. */
export class InvalidArgumentError extends CoapError {
  override readonly code: string = 'COAP_ERR_INVALID_ARGUMENT';
}
