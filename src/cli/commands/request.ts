/**
 * coapkit get|post|put|delete|fetch|patch|ipatch URI
 */

import { Buffer } from 'node:buffer';
import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { createProgressBar } from '../../blockwise/progress.js';
import { CoapClient } from '../../client/client.js';
import { describeCode } from '../../constants/codes.js';
import { UsageError } from '../../errors.js';
import { bool, type FlagSpecs, parseFlags, positionals, str, strs } from '../args.js';
import { checkUri, contentFormatArg, optionArg, pskFor, timeoutMs } from '../common.js';
import { escapeText, peerText } from '../escape.js';
import { ExitCode, exitCodeForResponse } from '../exit.js';
import { isTextPayload, stdoutBytes, summarizePayload } from '../format.js';
import { REQUEST_HELP } from '../help.js';
import { type Io, readStream, toOutputError, writeAll } from '../io.js';
import { PSK_FLAGS, readInputFile } from '../psk.js';
import { watchExchange } from '../verbose.js';
import {
  groupRequest,
  isMulticastUri,
  MULTICAST_CLIENT_FLAGS,
  multicastClientOptions,
  sourceOf,
} from './multicast.js';
import { blockSizeArg, maxBodyArg, runObserve } from './observe.js';

export const REQUEST_FLAGS: FlagSpecs = {
  payload: { type: 'string', short: 'p' },
  file: { type: 'string', short: 'f' },
  'content-format': { type: 'string', short: 't' },
  accept: { type: 'string', short: 'A' },
  option: { type: 'string', short: 'O', multiple: true },
  non: { type: 'boolean' },
  timeout: { type: 'string' },
  output: { type: 'string', short: 'o' },
  verbose: { type: 'boolean', short: 'v' },
  quiet: { type: 'boolean', short: 'q' },
  'block-size': { type: 'string' },
  'max-body': { type: 'string' },
  ...MULTICAST_CLIENT_FLAGS,
  ...PSK_FLAGS,
};

const METHOD_NAMES: Record<string, 'GET' | 'POST' | 'PUT' | 'DELETE' | 'FETCH' | 'PATCH' | 'iPATCH'> = {
  get: 'GET',
  post: 'POST',
  put: 'PUT',
  delete: 'DELETE',
  fetch: 'FETCH',
  patch: 'PATCH',
  ipatch: 'iPATCH',
};

export async function runRequest(method: string, args: string[], io: Io): Promise<number> {
  if (args.includes('--observe')) {
    if (method !== 'get' && method !== 'fetch') throw new UsageError('--observe works with get only');
    return runObserve(args, io, method);
  }
  const p = parseFlags(method, args, REQUEST_FLAGS);
  if (bool(p, 'help')) {
    await writeAll(io.stdout, REQUEST_HELP);
    return ExitCode.OK;
  }
  const [uriArg] = positionals(method, p, ['URI']);
  const uri = checkUri(uriArg!);
  const verbose = bool(p, 'verbose');
  const quiet = bool(p, 'quiet');
  if (verbose && quiet) throw new UsageError('use only one of -v and -q');

  const cfArg = str(p, 'content-format');
  const contentFormat = cfArg === undefined ? undefined : contentFormatArg(cfArg, '-t/--content-format');
  const acceptArg = str(p, 'accept');
  const accept = acceptArg === undefined ? undefined : contentFormatArg(acceptArg, '-A/--accept');
  const extra = strs(p, 'option').map(optionArg);
  const timeout = timeoutMs(p);
  const confirmable = !bool(p, 'non');
  const psk = pskFor(uri, p, io);

  const text = str(p, 'payload');
  const file = str(p, 'file');
  if (text !== undefined && file !== undefined)
    throw new UsageError('use only one of -p/--payload and -f/--file');
  let payload: Buffer | undefined;
  if (text !== undefined) payload = Buffer.from(text, 'utf8');
  else if (file === '-') payload = await readStream(io.stdin);
  else if (file !== undefined) payload = readInputFile(file, 'payload file');

  if (isMulticastUri(uri)) {
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

  const output = str(p, 'output');
  const blockSize = blockSizeArg(str(p, 'block-size'));
  const maxBodySize = maxBodyArg(str(p, 'max-body'));
  // Block-wise transfers draw a progress bar on stderr when it is a terminal.
  const bar = createProgressBar({ stream: io.stderr, label: `${METHOD_NAMES[method]}`, force: false });
  const showBar = bar.enabled && !quiet && !verbose;

  const client = new CoapClient(psk === undefined ? {} : { psk });
  const watch = verbose ? watchExchange(uri.port, (t) => io.stderr.write(t)) : undefined;
  if (verbose)
    io.stderr.write(`* ${METHOD_NAMES[method]} ${escapeText(uriArg!)}${confirmable ? '' : ' (NON)'}\n`);
  const started = performance.now();
  try {
    const res = await client.request(uriArg!, {
      method: METHOD_NAMES[method]!,
      confirmable,
      ...(payload !== undefined ? { payload } : {}),
      ...(contentFormat !== undefined ? { contentFormat } : {}),
      ...(accept !== undefined ? { accept } : {}),
      ...(extra.length > 0 ? { options: extra } : {}),
      ...(timeout !== undefined ? { timeout } : {}),
      ...(blockSize !== undefined ? { blockSize } : {}),
      ...(maxBodySize !== undefined ? { maxBodySize } : {}),
      ...(showBar ? { onProgress: bar.update } : {}),
    });
    if (showBar) bar.done();
    const elapsed = performance.now() - started;
    if (watch) {
      watch.stop();
      const how = res.piggybacked ? 'piggybacked' : 'separate response';
      await writeAll(
        io.stderr,
        `* ${describeCode(res.code)} from ${peerText(res.peer.address, res.peer.port)} in ${elapsed.toFixed(1)} ms (rtt ${res.rttMs.toFixed(1)} ms, ${how})\n`,
      );
    }
    const status = exitCodeForResponse(res.code);
    if (status === ExitCode.OK) {
      if (output !== undefined) await writeOutput(output, res.payload);
      else if (res.payload.length > 0)
        await writeAll(io.stdout, stdoutBytes(res.payload, res.contentFormat, io.stdout.isTTY === true));
    } else {
      if (!quiet) {
        const diag = summarizePayload(res.payload, res.contentFormat);
        await writeAll(io.stderr, `coapkit: ${describeCode(res.code)}${diag ? `: ${diag}` : ''}\n`);
      }
    }
    return status;
  } finally {
    watch?.stop();
    await client.close();
  }
}

async function writeOutput(file: string, data: Buffer): Promise<void> {
  try {
    await writeFile(file, data);
  } catch (err) {
    // Disk full, no permission, a directory...: an output error (exit 74), one line.
    throw toOutputError(err, `output file "${escapeText(file)}"`);
  }
}
