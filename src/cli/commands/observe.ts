/**
 * coapkit observe URI — and `coapkit get URI --observe` — (RFC 7641):
 * registers, writes every notification's payload to stdout (one per line),
 * and deregisters on Ctrl-C, after --count notifications or --duration seconds.
 */

import { Buffer } from 'node:buffer';
import { CoapClient } from '../../client/client.js';
import { describeCode } from '../../constants/codes.js';
import { UsageError } from '../../errors.js';
import { bool, type FlagSpecs, num, parseFlags, positionals, str, strs } from '../args.js';
import { checkUri, contentFormatArg, optionArg, pskFor, timeoutMs } from '../common.js';
import { ExitCode, exitCodeForResponse } from '../exit.js';
import { summarizePayload } from '../format.js';
import { type Io, writeAll } from '../io.js';
import { PSK_FLAGS } from '../psk.js';

export const OBSERVE_FLAGS: FlagSpecs = {
  accept: { type: 'string', short: 'A' },
  option: { type: 'string', short: 'O', multiple: true },
  count: { type: 'string', short: 'n' },
  duration: { type: 'string', short: 's' },
  'block-size': { type: 'string' },
  'max-body': { type: 'string' },
  non: { type: 'boolean' },
  timeout: { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean', short: 'q' },
  // Accepted (and implied) so `coapkit get URI --observe` can forward its arguments.
  observe: { type: 'boolean' },
  ...PSK_FLAGS,
};

export const OBSERVE_HELP = `Usage: coapkit observe URI [options]
       coapkit get URI --observe [options]

Observes a resource (RFC 7641): registers with GET + Observe, prints each
notification's payload on its own line on stdout, and deregisters (GET with
Observe: 1) on Ctrl-C, after --count notifications or after --duration.
Notifications larger than one block are fetched completely (RFC 7959).

  -n, --count N               stop after N notifications (the first response counts)
  -s, --duration SECONDS      stop after this long
  -A, --accept CF             Accept option
  -O, --option NUM[,VALUE]    add an option (repeatable), as for 'coapkit get'
      --block-size N          block size for large notifications: 16..1024 (default 1024)
      --max-body BYTES        largest notification body fetched block-wise (default
                              16777216 = 16 MiB); over it: error, exit 3
      --non                   register with a Non-confirmable request
      --timeout SECONDS       time limit for the registration response (and for all the
                              blocks of one large notification)
  -v, --verbose               one line per notification on stderr (Observe number, code)
  -q, --quiet                 nothing on stderr for non-2.xx responses
Security: --identity ID with --psk / --psk-hex / --psk-file for coaps:// URIs.

Exit status: 0 when stopped (count, duration, Ctrl-C) or the server ended it with 2.xx,
1/2 when it ended with 4.xx/5.xx, 3 timeout/network/protocol error (e.g. a body over
--max-body), 64 usage, 74 output error.
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

/** Validates a --block-size value (16..1024, a power of two). */
export function blockSizeArg(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 16 || n > 1024 || (n & (n - 1)) !== 0) {
    throw new UsageError(`--block-size expects a power of two from 16 to 1024, got "${v}"`);
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
  const uri = checkUri(uriArg!);
  const verbose = bool(p, 'verbose');
  const quiet = bool(p, 'quiet');
  const acceptArg = str(p, 'accept');
  const accept = acceptArg === undefined ? undefined : contentFormatArg(acceptArg, '-A/--accept');
  const extra = strs(p, 'option').map(optionArg);
  const count = num(p, 'count', { integer: true, min: 1 });
  const duration = num(p, 'duration');
  const blockSize = blockSizeArg(str(p, 'block-size'));
  const maxBodySize = maxBodyArg(str(p, 'max-body'));
  const timeout = timeoutMs(p);
  const psk = pskFor(uri, p, io);

  const client = new CoapClient(psk === undefined ? {} : { psk });
  const obs = client.observe(uriArg!, {
    ...(accept !== undefined ? { accept } : {}),
    ...(extra.length > 0 ? { options: extra } : {}),
    ...(blockSize !== undefined ? { blockSize } : {}),
    ...(maxBodySize !== undefined ? { maxBodySize } : {}),
    ...(timeout !== undefined ? { timeout } : {}),
    confirmable: !bool(p, 'non'),
  });
  const stop = (): void => void obs.cancel();
  const timer = duration !== undefined ? setTimeout(stop, duration * 1000) : undefined;
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
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
    return status;
  } finally {
    if (timer) clearTimeout(timer);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await obs.cancel();
    await client.close();
  }
}
