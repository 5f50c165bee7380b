/** Errors of the durable stores. */

import { CoapError } from '../util/errors.js';

/** Base class of the store errors. */
export class StoreError extends CoapError {
  static override readonly code: string = 'COAP_ERR_STORE';
}

/**
 * The store cannot take writes now (disk full, database unreachable): the
 * server answers 5.03 Service Unavailable to writes and keeps serving reads.
 */
export class StoreUnavailableError extends StoreError {
  static override readonly code: string = 'COAP_ERR_STORE_UNAVAILABLE';
}

/** A database file (or schema) that is not a coapkit store, or is damaged: refused, left untouched. */
export class StoreFormatError extends StoreError {
  static override readonly code: string = 'COAP_ERR_STORE_FORMAT';
}

/** The package (or Node version) a store needs is not available. */
export class StoreDependencyError extends StoreError {
  static override readonly code: string = 'COAP_ERR_STORE_DEPENDENCY';
}
