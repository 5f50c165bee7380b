/**
 * coapkit get|post|put|delete|fetch|patch|ipatch URI
 * and the coap-client / curl forms: coapkit -m put URI, coapkit -X POST URI, coapkit URI.
 */

import { Buffer } from 'node:buffer';
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createProgressBar } from '../../blockwise/progress.js';
import { CoapClient } from '../../client/client.js';
import type { CoapResponse } from '../../client/response.js';
import { describeCode } from '../../constants/codes.js';
import { NetworkError, TimeoutError, UsageError } from '../../errors.js';
import { bool, type FlagSpecs, flagName, type Parsed, parseFlags, positionals, str, strs } from '../args.js';
import { CLIENT_FLAGS, clientOptions, tokenArg } from '../client-flags.js';
import { checkUri, contentFormatArg, optionArg, timeoutMs } from '../common.js';
import { escapeText, peerText } from '../escape.js';
import { CantCreateError, ExitCode, exitCodeForError, exitCodeForResponse } from '../exit.js';
import {
  describeContentFormat,
  formatOptions,
  isTextPayload,
  stdoutBytes,
  summarizePayload,
} from '../format.js';
import { METHODS, REQUEST_HELP } from '../help.js';
import { type Io, readStream, toOutputError, writeAll } from '../io.js';
import { OSCORE_CLIENT_FLAGS, oscoreRequestOption } from '../oscore.js';
import { readInputFile } from '../psk.js';
import { watchExchange } from '../verbose.js';
import {
  groupRequest,
  isMulticastUri,
  MULTICAST_CLIENT_FLAGS,
  multicastClientOptions,
  sourceOf,
} from './multicast.js';
import { blockSizeArg, maxBodyArg, observeParsed } from './observe.js';

export const REQUEST_FLAGS: FlagSpecs = {
  // The method as a flag (coap-client -m, curl -X), for `coapkit -m put URI`.
  method: { type: 'string', short: 'm' },
  request: { type: 'string', short: 'X' },
  payload: { type: 'string', short: 'p' },
  data: { type: 'string', short: 'd' },
  'data-binary': { type: 'string' },
  text: { type: 'string', short: 'e' },
  file: { type: 'string', short: 'f' },
  'content-format': { type: 'string', short: 't' },
  accept: { type: 'string', short: 'A' },
  option: { type: 'string', short: 'O', multiple: true },
  token: { type: 'string', short: 'T' },
  output: { type: 'string', short: 'o' },
  include: { type: 'boolean', short: 'i' },
  fail: { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean', short: 'q' },
  'block-size': { type: 'string', short: 'b' },
  'max-body': { type: 'string' },
  // Observation from get (coap-client -s SECONDS observes for that long).
  observe: { type: 'boolean' },
  duration: { type: 'string', short: 's' },
  count: { type: 'string', short: 'n' },
  // N requests over one endpoint (one DTLS session), each response printed (soak tests, CID).
  repeat: { type: 'string' },
  interval: { type: 'string' },
  ...MULTICAST_CLIENT_FLAGS,
  ...CLIENT_FLAGS,
  ...OSCORE_CLIENT_FLAGS,
};

type MethodCode = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'FETCH' | 'PATCH' | 'iPATCH';

const METHOD_NAMES: Record<string, MethodCode> = {
  get: 'GET',
  post: 'POST',
  put: 'PUT',
  delete: 'DELETE',
  fetch: 'FETCH',
  patch: 'PATCH',
  ipatch: 'iPATCH',
};

function isMethod(v: string): boolean {
  return (METHODS as readonly string[]).includes(v.toLowerCase());
}

/** The method given by -m/--method or -X/--request (lower case), checked. */
function methodFlag(p: Parsed): string | undefined {
  let chosen: string | undefined;
  for (const name of ['method', 'request']) {
    const v = str(p, name);
    if (v === undefined) continue;
    if (!isMethod(v)) {
      throw new UsageError(`${flagName(p, name)} ${v}: not a CoAP method`, {
        hint: `methods: ${METHODS.join(', ')}${/^head$|^options$/i.test(v) ? ' (CoAP has no HEAD or OPTIONS)' : ''}`,
      });
    }
    if (chosen !== undefined && chosen !== v.toLowerCase()) {
      throw new UsageError(`-m ${chosen} and -X ${v} disagree: give the method once`);
    }
    chosen = v.toLowerCase();
  }
  return chosen;
}

/** libcoap's -e text: %XX sequences are decoded (as coap-client does), everything else is UTF-8. */
function percentDecoded(text: string): Buffer {
  const parts: Buffer[] = [];
  let last = 0;
  const re = /%([0-9a-fA-F]{2})/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m.index > last) parts.push(Buffer.from(text.slice(last, m.index), 'utf8'));
    parts.push(Buffer.from([Number.parseInt(m[1]!, 16)]));
    last = m.index + 3;
  }
  if (last < text.length) parts.push(Buffer.from(text.slice(last), 'utf8'));
  return Buffer.concat(parts);
}

/** A curl-style value: "@-" is stdin, "@FILE" a file, anything else UTF-8 text. */
async function textOrFile(v: string, io: Io): Promise<Buffer> {
  if (v === '@-') return readStream(io.stdin);
  if (v.startsWith('@') && v.length > 1) return readInputFile(v.slice(1), 'payload file');
  return Buffer.from(v, 'utf8');
}

const PAYLOAD_FLAGS = ['payload', 'data', 'data-binary', 'text', 'file'] as const;

/** The request payload from -p/--payload, -d/--data, --data-binary, -e or -f (at most one). */
async function payloadOf(p: Parsed, method: string, io: Io): Promise<Buffer | undefined> {
  const given = PAYLOAD_FLAGS.filter((n) => str(p, n) !== undefined);
  // libcoap's -p is the local port: "-p 5683" on a GET is almost surely that, not a payload.
  const pv = str(p, 'payload');
  if (pv !== undefined && p.rawNames.payload === '-p' && /^\d{1,5}$/.test(pv) && Number(pv) <= 65535) {
    if (method === 'get' || method === 'delete' || given.length > 1) {
      throw new UsageError(
        `-p is the payload here, not a port: "-p ${pv}" would send "${pv}" as the payload`,
        {
          hint: `for libcoap's local port use --local-port ${pv}; to send the text, write --payload ${pv}`,
        },
      );
    }
  }
  if (given.length > 1) {
    const names = given.map((n) => {
      const short = REQUEST_FLAGS[n]?.short;
      return short === undefined ? `--${n}` : `-${short}/--${n}`;
    });
    throw new UsageError(`use only one of ${names.join(' and ')}: each sets the payload`, {
      hint: '-p/-d TEXT, -p/-d @FILE (@- is stdin), -e TEXT (%XX decoded, as libcoap), -f FILE',
    });
  }
  const which = given[0];
  if (which === undefined) return undefined;
  const v = str(p, which)!;
  if (which === 'text') return percentDecoded(v);
  if (which === 'file') return v === '-' ? readStream(io.stdin) : readInputFile(v, 'payload file');
  return textOrFile(v, io);
}

/** Fails early (exit 73, nothing sent) when -o FILE cannot be created. */
function checkOutputPath(file: string): void {
  const fail = (reason: string, err?: unknown): never => {
    throw new CantCreateError(`cannot create output file "${escapeText(file)}": ${reason}`, {
      ...(err !== undefined ? { cause: err } : {}),
      errno: (err as NodeJS.ErrnoException | undefined)?.code ?? 'ENOENT',
    });
  };
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(file, { throwIfNoEntry: false });
  } catch (err) {
    fail((err as NodeJS.ErrnoException).code === 'ENOTDIR' ? 'a parent is not a folder' : String(err), err);
  }
  if (st?.isDirectory()) fail('it is a folder');
  const target = st !== undefined ? file : dirname(file);
  try {
    accessSync(target, fsConstants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') fail(`no such folder "${escapeText(dirname(file))}"`, err);
    if (code === 'EACCES' || code === 'EPERM') fail('permission denied', err);
    if (code === 'EROFS') fail('read-only file system', err);
    if (code === 'ENOTDIR') fail('a parent is not a folder', err);
    fail((err as Error).message, err);
  }
}

/** curl -i: the response code and options, then an empty line. */
function responseHead(res: CoapResponse): string {
  const lines = [describeCode(res.code)];
  const formatted = formatOptions(res.options);
  res.options.forEach((o, i) => {
    // Content-Format and Accept get their media type: "Content-Format: 50 (application/json)".
    if ((o.number === 12 || o.number === 17) && o.value.length <= 2) {
      let n = 0;
      for (const b of o.value) n = n * 256 + b;
      lines.push(`${o.number === 12 ? 'Content-Format' : 'Accept'}: ${describeContentFormat(n)}`);
    } else {
      lines.push(escapeText(formatted[i]!));
    }
  });
  return `${lines.join('\n')}\n\n`;
}

/**
 * `coapkit METHOD URI [flags]`; `method` is undefined for the forms without a
 * method command (`coapkit -m put URI`, `coapkit -X POST URI`, `coapkit URI`,
 * `coapkit -v get URI`).
 */
export async function runRequest(command: string | undefined, args: string[], io: Io): Promise<number> {
  const p = parseFlags(command ?? 'get', args, REQUEST_FLAGS);
  if (bool(p, 'help')) {
    await writeAll(io.stdout, REQUEST_HELP);
    return ExitCode.OK;
  }
  const flag = methodFlag(p);
  // `coapkit -v get URI`: flags first, then the method.
  if (command === undefined && p.positionals.length > 1 && isMethod(p.positionals[0]!)) {
    command = p.positionals.shift()!.toLowerCase();
  }
  if (command !== undefined && flag !== undefined && flag !== command) {
    throw new UsageError(
      `${flagName(p, str(p, 'method') !== undefined ? 'method' : 'request')} ${flag} disagrees with the "${command}" command`,
      {
        hint: `give the method once: 'coapkit ${flag} URI' or 'coapkit -m ${flag} URI'`,
      },
    );
  }
  // Without a method: coap-client's default GET, or POST with -d/--data as curl does.
  const method =
    command ?? flag ?? (str(p, 'data') !== undefined || str(p, 'data-binary') !== undefined ? 'post' : 'get');
  const name = command ?? method;
  const [uriArg] = positionals(name, p, ['URI']);
  const uri = checkUri(uriArg!);
  const verbose = bool(p, 'verbose');
  const quiet = bool(p, 'quiet');
  if (verbose && quiet) throw new UsageError('use only one of -v and -q');

  const cfArg = str(p, 'content-format');
  const contentFormat = cfArg === undefined ? undefined : contentFormatArg(cfArg, '-t/--content-format');
  const payload = await payloadOf(p, method, io);

  const observing = bool(p, 'observe') || str(p, 'duration') !== undefined || str(p, 'count') !== undefined;
  if (observing) {
    const why = bool(p, 'observe')
      ? '--observe'
      : str(p, 'duration') !== undefined
        ? flagName(p, 'duration')
        : flagName(p, 'count');
    if (method !== 'get' && method !== 'fetch') {
      throw new UsageError(`${why} observes a resource: it works with get (and fetch), not ${method}`, {
        hint: why === '-s' ? "curl's -s (silent) is -q here" : "see 'coapkit observe --help'",
      });
    }
    for (const n of ['output', 'include', 'fail', 'window'] as const) {
      if (p.values[n] !== undefined) {
        throw new UsageError(`${flagName(p, n)} does not apply to an observation (${why})`, {
          hint: "see 'coapkit observe --help'",
        });
      }
    }
    await warnPayload(method, payload, p, io);
    return observeParsed(p, uriArg!, io, {
      method: METHOD_NAMES[method] as 'GET' | 'FETCH',
      ...(payload !== undefined ? { payload } : {}),
      ...(contentFormat !== undefined ? { contentFormat } : {}),
    });
  }

  const acceptArg = str(p, 'accept');
  const accept = acceptArg === undefined ? undefined : contentFormatArg(acceptArg, '-A/--accept');
  const extra = strs(p, 'option').map(optionArg);
  const timeout = timeoutMs(p);
  const confirmable = !bool(p, 'non');
  const token = tokenArg(p);
  const include = bool(p, 'include');
  const failFlag = bool(p, 'fail');
  await warnPayload(method, payload, p, io);

  if (isMulticastUri(uri)) {
    if (str(p, 'oscore') !== undefined)
      throw new UsageError(
        '--oscore protects one client-server context: group requests (multicast) are not protected',
        {
          hint: 'Group OSCORE is not supported; send to a unicast address',
        },
      );
    // Group request (RFC 7252 §8.2): one NON, every member's response with its source.
    const res = await groupRequest(uriArg!, {
      ...multicastClientOptions(p),
      method: METHOD_NAMES[method]!,
      ...(payload !== undefined ? { payload } : {}),
      ...(contentFormat !== undefined ? { contentFormat } : {}),
      ...(accept !== undefined ? { accept } : {}),
      ...(extra.length > 0 ? { options: extra } : {}),
    });
    let status: number = ExitCode.OK;
    for (const r of res) {
      let text = `# ${describeCode(r.code)} from ${sourceOf(r)}\n`;
      if (r.payload.length > 0) {
        const body = isTextPayload(r.payload, r.contentFormat)
          ? r.payload.toString('utf8')
          : `(${r.payload.length} bytes) ${r.payload.toString('hex')}`;
        text += body.endsWith('\n') ? body : `${body}\n`;
      }
      await writeAll(io.stdout, text);
      if (exitCodeForResponse(r.code) !== ExitCode.OK && status === ExitCode.OK)
        status = exitCodeForResponse(r.code);
    }
    return res.some((r) => exitCodeForResponse(r.code) === ExitCode.OK) ? ExitCode.OK : status;
  }

  // libcoap's "-o -" is stdout.
  const outputArg = str(p, 'output');
  const output = outputArg === '-' ? undefined : outputArg;
  // Before anything is sent: a PUT must not run only for its answer to have nowhere to go.
  if (output !== undefined) checkOutputPath(output);
  const blockSize = blockSizeArg(str(p, 'block-size'));
  const maxBodySize = maxBodyArg(str(p, 'max-body'));
  // Block-wise transfers draw a progress bar on stderr when it is a terminal.
  const bar = createProgressBar({ stream: io.stderr, label: `${METHOD_NAMES[method]}`, force: false });
  const showBar = bar.enabled && !quiet && !verbose;

  const { repeat, interval } = repeatArgs(p);
  const copts = clientOptions(uri, p, io);
  let client = new CoapClient(copts);
  const watch = verbose
    ? watchExchange(uri.port, (t) => io.stderr.write(t), uri.scheme.includes('+'))
    : undefined;
  let worst: number = ExitCode.OK;
  try {
    for (let i = 0; i < repeat; i++) {
      if (i > 0 && interval > 0) await new Promise((r) => setTimeout(r, interval));
      let status: number;
      try {
        status = await once();
      } catch (err) {
        // --repeat goes on after a request that got no answer; over coaps:// the session
        // is dropped first, so the next request starts a fresh handshake (a NAT may have
        // given us a new address the server does not know without a Connection ID).
        if (repeat === 1 || !(err instanceof TimeoutError || err instanceof NetworkError)) throw err;
        status = exitCodeForError(err);
        if (!quiet)
          await writeAll(io.stderr, `coapkit: request ${i + 1}/${repeat}: ${escapeText(err.message)}\n`);
        if (uri.scheme === 'coaps') {
          await client.close();
          client = new CoapClient(copts);
          if (!quiet)
            await writeAll(io.stderr, 'coapkit: DTLS session dropped: the next request handshakes again\n');
        }
      }
      if (status !== ExitCode.OK && worst === ExitCode.OK) worst = status;
    }
    return worst;
  } finally {
    watch?.stop();
    await client.close();
  }

  async function once(): Promise<number> {
    if (verbose)
      io.stderr.write(`* ${METHOD_NAMES[method]} ${escapeText(uriArg!)}${confirmable ? '' : ' (NON)'}\n`);
    const started = performance.now();
    const res = await client.request(uriArg!, {
      method: METHOD_NAMES[method]!,
      confirmable,
      ...(payload !== undefined ? { payload } : {}),
      ...(contentFormat !== undefined ? { contentFormat } : {}),
      ...(accept !== undefined ? { accept } : {}),
      ...(extra.length > 0 ? { options: extra } : {}),
      ...(timeout !== undefined ? { timeout } : {}),
      ...(token !== undefined ? { token } : {}),
      ...(blockSize !== undefined ? { blockSize } : {}),
      ...(maxBodySize !== undefined ? { maxBodySize } : {}),
      ...(showBar ? { onProgress: bar.update } : {}),
      ...oscoreRequestOption(p),
    });
    if (showBar) bar.done();
    const elapsed = performance.now() - started;
    if (watch) {
      if (repeat === 1) watch.stop();
      const how = uri.scheme.includes('+')
        ? uri.scheme
        : res.piggybacked
          ? 'piggybacked'
          : 'separate response';
      await writeAll(
        io.stderr,
        `* ${describeCode(res.code)} from ${peerText(res.peer.address, res.peer.port)} in ${elapsed.toFixed(1)} ms (rtt ${res.rttMs.toFixed(1)} ms, ${how})\n`,
      );
    }
    const status = exitCodeForResponse(res.code);
    if (status === ExitCode.OK || (include && !failFlag)) {
      // -i (curl): the code and options first, on stdout; then the body, for any code unless --fail.
      if (include) await writeAll(io.stdout, responseHead(res));
      if (output !== undefined && status === ExitCode.OK) await writeOutput(output, res.payload);
      else if (res.payload.length > 0)
        await writeAll(io.stdout, stdoutBytes(res.payload, res.contentFormat, io.stdout.isTTY === true));
    } else if (!quiet) {
      // --fail (curl -f): the code only, never the body.
      const diag = failFlag ? '' : summarizePayload(res.payload, res.contentFormat);
      await writeAll(io.stderr, `coapkit: ${describeCode(res.code)}${diag ? `: ${diag}` : ''}\n`);
    }
    return status;
  }
}

/** --repeat N (1..1000000, default 1) and --interval MS (0..3600000, default 0) between requests. */
function repeatArgs(p: Parsed): { repeat: number; interval: number } {
  const num = (name: string, max: number, min: number): number | undefined => {
    const v = str(p, name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < min || n > max)
      throw new UsageError(`--${name} expects a whole number ${min}..${max}, got "${escapeText(v)}"`);
    return n;
  };
  const repeat = num('repeat', 1_000_000, 1) ?? 1;
  const interval = num('interval', 3_600_000, 0) ?? 0;
  if (interval > 0 && repeat === 1 && str(p, 'repeat') === undefined)
    throw new UsageError('--interval goes with --repeat N: the pause between requests');
  return { repeat, interval };
}

/** One line on stderr when a GET or DELETE carries a payload (RFC 7252 gives them none). */
async function warnPayload(method: string, payload: Buffer | undefined, p: Parsed, io: Io): Promise<void> {
  if (payload === undefined || (method !== 'get' && method !== 'delete') || bool(p, 'quiet')) return;
  await writeAll(
    io.stderr,
    `coapkit: warning: a ${METHOD_NAMES[method]} with a ${payload.length}-byte payload: RFC 7252 gives it no meaning and servers ignore or refuse it (to send data: put or post)\n`,
  );
}

async function writeOutput(file: string, data: Buffer): Promise<void> {
  try {
    await writeFile(file, data);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Cannot open it (EX_CANTCREAT, 73) versus cannot write it (EX_IOERR, 74: disk full...).
    if (
      code === 'ENOENT' ||
      code === 'EACCES' ||
      code === 'EPERM' ||
      code === 'EISDIR' ||
      code === 'ENOTDIR' ||
      code === 'EROFS'
    ) {
      const e = toOutputError(err, `output file "${escapeText(file)}"`);
      throw new CantCreateError(e.message.replace(/^cannot write to/, 'cannot create'), {
        cause: err,
        errno: code,
      });
    }
    // Disk full, I/O error...: an output error (exit 74), one line.
    throw toOutputError(err, `output file "${escapeText(file)}"`);
  }
}
