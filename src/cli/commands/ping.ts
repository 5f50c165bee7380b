/**
 * coapkit ping URI — CoAP ping: an empty CON, answered by a RST (RFC 7252 §4.3).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CoapClient } from '../../client/client.js';
import { CoapError, TimeoutError } from '../../errors.js';
import { bool, type FlagSpecs, num, parseFlags, positionals } from '../args.js';
import { CLIENT_PSK_FLAGS, CLIENT_TLS_FLAGS, clientOptions } from '../client-flags.js';
import { checkUri, timeoutMs } from '../common.js';
import { escapeText, peerText } from '../escape.js';
import { ExitCode } from '../exit.js';
import { PING_HELP } from '../help.js';
import { type Io, writeAll } from '../io.js';

export const PING_FLAGS: FlagSpecs = {
  count: { type: 'string', short: 'c' },
  interval: { type: 'string', short: 'i' },
  timeout: { type: 'string', short: 'B' },
  quiet: { type: 'boolean', short: 'q' },
  ...CLIENT_PSK_FLAGS,
  ...CLIENT_TLS_FLAGS,
};

export async function runPing(args: string[], io: Io): Promise<number> {
  const p = parseFlags('ping', args, PING_FLAGS);
  if (bool(p, 'help')) {
    await writeAll(io.stdout, PING_HELP);
    return ExitCode.OK;
  }
  const [uriArg] = positionals('ping', p, ['URI']);
  const uri = checkUri(uriArg!);
  const copts = clientOptions(uri, p, io);
  const count = num(p, 'count', { integer: true, min: 1 }) ?? 1;
  const interval = (num(p, 'interval') ?? 1) * 1000;
  const timeout = timeoutMs(p, 5000)!;
  const quiet = bool(p, 'quiet');
  const host = peerText(uri.host, uri.port);
  const client = new CoapClient(copts);
  const rtts: number[] = [];
  let lastError: unknown;
  try {
    for (let i = 1; i <= count; i++) {
      if (i > 1 && interval > 0) await sleep(interval);
      try {
        const rtt = await withTimeout(client.ping(uriArg!), timeout);
        rtts.push(rtt);
        if (!quiet)
          await writeAll(
            io.stdout,
            `${uri.scheme.includes('+') ? 'Pong' : 'RST'} from ${host}: seq=${i} time=${rtt.toFixed(2)} ms\n`,
          );
      } catch (err) {
        if (!(err instanceof CoapError)) throw err;
        lastError = err;
        if (!quiet) await writeAll(io.stdout, `no reply from ${host}: seq=${i} ${escapeText(err.message)}\n`);
      }
    }
  } finally {
    await client.close();
  }
  const lost = count - rtts.length;
  let summary = `--- ${host} ping: ${count} sent, ${rtts.length} received, ${Math.round((lost / count) * 100)}% lost`;
  if (rtts.length > 0) {
    const min = Math.min(...rtts);
    const max = Math.max(...rtts);
    const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
    summary += `, rtt min/avg/max = ${min.toFixed(2)}/${avg.toFixed(2)}/${max.toFixed(2)} ms`;
  }
  await writeAll(io.stdout, `${summary}\n`);
  if (rtts.length === 0) {
    if (lastError instanceof CoapError && !(lastError instanceof TimeoutError)) throw lastError;
    throw new TimeoutError(`no CoAP ping reply from ${host}`, { hint: 'is a server running on that port?' });
  }
  return ExitCode.OK;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  // The losing promise must not turn into an unhandled rejection later.
  promise.catch(() => {});
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}
