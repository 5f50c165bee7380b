/**
 * coapkit observe URI — and `coapkit get URI --observe` — (RFC 7641):
 * registers, writes every notification's payload to stdout (one per line),
 * and deregisters on Ctrl-C, after --count notifications or --duration seconds.
 */

import { Buffer } from 'node:buffer';
import { CoapClient } from '../../client/client.js';
import { describeCode } from '../../constants/codes.js';
import { UsageError } from '../../errors.js';
import { bool, type FlagSpecs, num, type Parsed, parseFlags, positionals, str, strs } from '../args.js';
import { CLIENT_FLAGS, clientOptions, tokenArg } from '../client-flags.js';
import { checkUri, contentFormatArg, optionArg, timeoutMs } from '../common.js';
import { ExitCode, exitCodeForResponse } from '../exit.js';
import { summarizePayload } from '../format.js';
import { type Io, writeAll } from '../io.js';
import { OSCORE_CLIENT_FLAGS, oscoreRequestOption } from '../oscore.js';

export const OBSERVE_FLAGS: FlagSpecs = {
  accept: { type: 'string', short: 'A' },
  option: { type: 'string', short: 'O', multiple: true },
  count: { type: 'string', short: 'n' },
  duration: { type: 'string', short: 's' },
  'block-size': { type: 'string', short: 'b' },
  'max-body': { type: 'string' },
  token: { type: 'string', short: 'T' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean', short: 'q' },
  // Accepted (and implied) so `coapkit get URI --observe` can forward its arguments.
  observe: { type: 'boolean' },
  ...CLIENT_FLAGS,
  ...OSCORE_CLIENT_FLAGS,
};

/** Exit status of an observation stopped by a signal: 128 + the signal number, as a shell reports it. */
export const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

export const OBSERVE_HELP = `Usage: coapkit observe URI [options]
       coapkit get URI --observe [options]

Observes a resource (RFC 7641): registers with GET + Observe, prints each
notification's payload on its own line on stdout, and deregisters (GET with
Observe: 1) on Ctrl-C, after --count notifications or after --duration.
Notifications larger than one block are fetched completely (RFC 7959).

  -n, --count N               stop after N notifications (N >= 1; the first response
                              counts); without it: until Ctrl-C, --duration or the server
  -s, --duration SECONDS      stop after this long (libcoap: coap-client -s SECONDS)
  -A, --accept CF             Accept option
  -O, --option NUM[,VALUE]    add an option (repeatable), as for 'coapkit get'
  -b, --block-size N          block size for large notifications: 16..1024 (default 1024)
      --max-body BYTES        largest notification body fetched block-wise (default
                              16777216 = 16 MiB); over it: error, exit 3
  -N, --non                   register with a Non-confirmable request
  -B, --timeout SECONDS       time limit for the registration response (and for all the
                              blocks of one large notification)
  -T, --token TOKEN           token of the registration: text, or 0xHEX (at most 8 bytes)
  -v, --verbose               one line per notification on stderr (Observe number, code)
  -q, --quiet                 nothing on stderr for non-2.xx responses
Security: -u/--identity ID with -k/--psk KEY, --psk-hex or --psk-file for coaps:// URIs;
--cid offers a DTLS Connection ID (RFC 9146) so the observation survives a NAT rebinding.
TLS (coaps+tcp://, coaps+ws://): --ca FILE, --cert FILE --key FILE, --insecure.
--oscore FILE protects the observation end to end (OSCORE, as for 'coapkit get').
Local side: --local-port N, --local-address ADDR.

Stopping: Ctrl-C (SIGINT) or SIGTERM deregisters (GET with Observe: 1, so the server
stops at once) and exits 130 (SIGINT) or 143 (SIGTERM), as the shell reports any command
stopped by a signal, whenever it arrives: a script tells "interrupted" (130) from
"stopped by --count or --duration" (0).

Exit status: 0 when stopped by --count or --duration, or the server ended it with 2.xx,
1/2 when it ended with 4.xx/5.xx, 3 timeout/network/protocol error (e.g. a body over
--max-body), 64 usage, 74 output error, 130/143 stopped by Ctrl-C/SIGTERM.
`;

/** Validates a --max-body value: a whole number of bytes. */
export function maxBodyArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < 0) {
    throw new UsageError(`--max-body expects a whole number of bytes, got "${v}"`);
  }
  return n;
}

/**
 * Validates a -b/--block-size value (16..1024, a power of two). libcoap's
 * `-b NUM,SIZE` form is taken with NUM 0 (the transfer starts at block 0).
 */
export function blockSizeArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  let size = v;
  const comma = v.indexOf(',');
  if (comma !== -1) {
    const start = v.slice(0, comma).trim();
    size = v.slice(comma + 1);
    if (!/^\d+$/.test(start)) throw new UsageError(`-b/--block-size: "${v}" is not SIZE or NUM,SIZE`);
    if (Number(start) !== 0) {
      throw new UsageError(`-b ${v}: starting at block ${start} is not supported (libcoap's -b NUM,SIZE)`, {
        hint: `transfers start at block 0: use -b ${size.trim()}`,
      });
    }
  }
  const n = Number(size);
  if (size.trim() === '' || !Number.isInteger(n) || n < 16 || n > 1024 || (n & (n - 1)) !== 0) {
    throw new UsageError(`-b/--block-size expects a power of two from 16 to 1024, got "${v}"`);
  }
  return n;
}

export async function runObserve(args: string[], io: Io, command = 'observe'): Promise<number> {
  const p = parseFlags(command, args, OBSERVE_FLAGS);
  if (bool(p, 'help')) {
    await writeAll(io.stdout, OBSERVE_HELP);
    return ExitCode.OK;
  }
  const [uriArg] = positionals(command, p, ['URI']);
  return observeParsed(p, uriArg!, io);
}

/**
 * Runs an observation from parsed flags (OBSERVE_FLAGS, or the request flags of
 * `coapkit get URI --observe` / `-s SECONDS`). `request` is the registration's
 * method and payload (FETCH may carry one).
 */
export async function observeParsed(
  p: Parsed,
  uriArg: string,
  io: Io,
  request: { method?: 'GET' | 'FETCH'; payload?: Buffer; contentFormat?: number } = {},
): Promise<number> {
  const uri = checkUri(uriArg);
  const verbose = bool(p, 'verbose');
  const quiet = bool(p, 'quiet');
  const acceptArg = str(p, 'accept');
  const accept = acceptArg === undefined ? undefined : contentFormatArg(acceptArg, '-A/--accept');
  const extra = strs(p, 'option').map(optionArg);
  const count = num(p, 'count', {
    integer: true,
    min: 1,
    hint: 'leave --count out to observe until Ctrl-C, --duration or the end of the observation',
  });
  const duration = num(p, 'duration');
  const blockSize = blockSizeArg(str(p, 'block-size'));
  const maxBodySize = maxBodyArg(str(p, 'max-body'));
  const timeout = timeoutMs(p);
  const token = tokenArg(p);
  const copts = clientOptions(uri, p, io);

  const client = new CoapClient(copts);
  const obs = client.observe(uriArg, {
    ...(request.method !== undefined ? { method: request.method } : {}),
    ...(request.payload !== undefined ? { payload: request.payload } : {}),
    ...(request.contentFormat !== undefined ? { contentFormat: request.contentFormat } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(accept !== undefined ? { accept } : {}),
    ...(extra.length > 0 ? { options: extra } : {}),
    ...(blockSize !== undefined ? { blockSize } : {}),
    ...(maxBodySize !== undefined ? { maxBodySize } : {}),
    ...(timeout !== undefined ? { timeout } : {}),
    confirmable: !bool(p, 'non'),
    ...oscoreRequestOption(p),
  });
  // A signal deregisters, then the command exits 128 + signal number: the status
  // the shell shows for a command killed by Ctrl-C before this handler exists.
  let signalled: keyof typeof SIGNAL_EXIT | undefined;
  const stop = (): void => void obs.cancel();
  const onSigint = (): void => {
    signalled ??= 'SIGINT';
    stop();
  };
  const onSigterm = (): void => {
    signalled ??= 'SIGTERM';
    stop();
  };
  const timer = duration !== undefined ? setTimeout(stop, duration * 1000) : undefined;
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigterm);
  let status: number = ExitCode.OK;
  let seen = 0;
  try {
    for await (const n of obs) {
      seen++;
      if (verbose) {
        await writeAll(
          io.stderr,
          `* ${describeCode(n.code)}${n.observe !== undefined ? `  Observe: ${n.observe}` : '  (not observed)'}  ${n.payload.length} bytes\n`,
        );
      }
      const s = exitCodeForResponse(n.code);
      if (s === ExitCode.OK) {
        await writeAll(io.stdout, Buffer.concat([n.payload, Buffer.from('\n')]));
      } else {
        status = s;
        if (!quiet) {
          const diag = summarizePayload(n.payload, n.contentFormat);
          await writeAll(io.stderr, `coapkit: ${describeCode(n.code)}${diag ? `: ${diag}` : ''}\n`);
        }
      }
      if (n.observe === undefined && seen === 1 && s === ExitCode.OK && !quiet) {
        await writeAll(io.stderr, 'coapkit: the server does not offer observation of this resource\n');
      }
      if (count !== undefined && seen >= count) break;
    }
    return signalled !== undefined ? SIGNAL_EXIT[signalled] : status;
  } catch (err) {
    // Whatever the cancelled registration ended with, the user stopped it.
    if (signalled !== undefined) return SIGNAL_EXIT[signalled];
    throw err;
  } finally {
    if (timer) clearTimeout(timer);
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    await obs.cancel();
    await client.close();
  }
}
