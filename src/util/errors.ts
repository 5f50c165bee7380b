/**
 * The root of every error coapkit throws, CoAP, DTLS or CLI: a CoapError with a
 * fixed `code` per subclass (undici style), declared once as the class's static `code`.
 * In util/ so that every layer can extend it, DTLS included, without importing the
 * CoAP error classes (src/errors.ts re-exports all of them). Imports nothing.
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

/**
 * The root of every error coapkit throws (CoAP, DTLS, CLI): catch it to catch them all,
 * tell them apart by `code` or by subclass.
 */
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

/** A bad argument passed to a library function. */
export class InvalidArgumentError extends CoapError {
  static override readonly code: string = 'COAP_ERR_INVALID_ARGUMENT';
}
