/**
 * Exit statuses of the coapkit command (documented in `coapkit --help`) and
 * the mapping from errors and response codes to them.
 */
import {
  AbortError,
  ClosedError,
  CoapError,
  DnsError,
  DtlsError,
  InvalidArgumentError,
  LinkFormatError,
  MessageFormatError,
  NetworkError,
  OptionError,
  OscoreError,
  ProtocolError,
  ResetError,
  TimeoutError,
  UriError,
  UsageError,
} from '../errors.js';

export const ExitCode = {
  /** A 2.xx response (or the command succeeded). */
  OK: 0,
  /** A 4.xx response. */
  CLIENT_ERROR: 1,
  /** A 5.xx response, or any other non-2.xx response code. */
  SERVER_ERROR: 2,
  /**
   * Timeout, network or DNS error, DTLS failure, Reset from the peer, or a peer that breaks
   * the protocol (ProtocolError: malformed blocks, a body over the limit, stray 2.31).
   */
  NETWORK: 3,
  /** Usage error: bad flag, bad URI, unknown content format or option (EX_USAGE). */
  USAGE: 64,
  /** An input file does not exist or cannot be read (EX_NOINPUT). */
  NO_INPUT: 66,
  /** The -o FILE cannot be created: missing folder, no permission, a directory (EX_CANTCREAT). */
  CANT_CREATE: 73,
  /** Output error: stdout or -o FILE cannot be written (ENOSPC, EPIPE, EBADF, EIO...) (EX_IOERR). */
  IO_ERROR: 74,
  /** Internal error, a bug (EX_SOFTWARE). */
  INTERNAL: 70,
} as const;

export const EXIT_TABLE: ReadonlyArray<readonly [number, string]> = [
  [ExitCode.OK, 'success: a 2.xx response'],
  [ExitCode.CLIENT_ERROR, 'the server answered 4.xx'],
  [ExitCode.SERVER_ERROR, 'the server answered 5.xx (or another non-2.xx code)'],
  [ExitCode.NETWORK, 'timeout, network/DNS/DTLS error, Reset (RST), malformed reply or body over --max-body'],
  [ExitCode.USAGE, 'usage error: bad flag, bad URI, unknown content format or option'],
  [ExitCode.NO_INPUT, 'input file not found or unreadable'],
  [ExitCode.CANT_CREATE, 'cannot create the -o FILE (missing folder, no permission: checked before sending)'],
  [ExitCode.IO_ERROR, 'output error: stdout or -o FILE not writable (disk full, closed pipe: quietly)'],
  [ExitCode.INTERNAL, 'internal error (a bug: please report it)'],
  [130, 'an observation stopped by Ctrl-C (143: by SIGTERM), after deregistering'],
];

/** An input file (-f, --psk-file) that cannot be read. */
export class InputFileError extends CoapError {
  static override readonly code: string = 'COAP_ERR_INPUT_FILE';
}

/**
 * stdout, stderr or an output file (-o) cannot be written: exit 74. `errno`
 * is the system code (EPIPE, ENOSPC, EBADF, EIO...); a closed pipe (EPIPE,
 * `coapkit ... | head`) is not reported on stderr.
 */
export class OutputError extends CoapError {
  static override readonly code: string = 'COAP_ERR_OUTPUT';
  readonly errno?: string;
  /** Set once the message has been printed, so it is printed once. */
  reported = false;

  constructor(message: string, options?: { cause?: unknown; hint?: string; errno?: string }) {
    super(message, options);
    if (options?.errno !== undefined) this.errno = options.errno;
  }
}

/** The output file (-o) cannot be created (EX_CANTCREAT, exit 73). */
export class CantCreateError extends OutputError {
  static override readonly code: string = 'COAP_ERR_CANT_CREATE';
}

/** Exit status for a response code byte. */
export function exitCodeForResponse(code: number): number {
  const cls = code >> 5;
  if (cls === 2) return ExitCode.OK;
  if (cls === 4) return ExitCode.CLIENT_ERROR;
  return ExitCode.SERVER_ERROR;
}

/** Exit status for an error; undefined when it is not an expected (CoapError) error. */
export function exitCodeForError(err: unknown): number {
  if (err instanceof InputFileError) return ExitCode.NO_INPUT;
  if (err instanceof CantCreateError) return ExitCode.CANT_CREATE;
  if (err instanceof OutputError) return ExitCode.IO_ERROR;
  // What a peer sent is never the user's fault: checked before the usage classes.
  // An OSCORE server's unprotected refusal (4.01 Security context not found...) exits like its code.
  if (err instanceof OscoreError && err.responseCode !== undefined)
    return exitCodeForResponse(err.responseCode);
  if (err instanceof ProtocolError || err instanceof MessageFormatError) return ExitCode.NETWORK;
  if (
    err instanceof UsageError ||
    err instanceof UriError ||
    err instanceof OptionError ||
    err instanceof InvalidArgumentError
  ) {
    return ExitCode.USAGE;
  }
  if (
    err instanceof TimeoutError ||
    err instanceof NetworkError ||
    err instanceof DnsError ||
    err instanceof ResetError ||
    err instanceof DtlsError ||
    err instanceof AbortError ||
    err instanceof ClosedError ||
    err instanceof LinkFormatError
  ) {
    return ExitCode.NETWORK;
  }
  if (err instanceof CoapError) return ExitCode.NETWORK;
  return ExitCode.INTERNAL;
}
