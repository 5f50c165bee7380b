/**
 * coapkit console — a CoAP browser in a web page: a local HTTP server with
 * the page and its CoAP-over-WebSockets proxy (src/console/). Runs until
 * Ctrl-C (SIGINT) or SIGTERM.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isLoopbackHost } from '../../console/access.js';
import { UsageError } from '../../errors.js';
import { bool, type FlagSpecs, num, parseFlags, positionals, str } from '../args.js';
import { ExitCode } from '../exit.js';
import { CONSOLE_HELP } from '../help.js';
import { type Io, writeAll } from '../io.js';

export const CONSOLE_FLAGS: FlagSpecs = {
  port: { type: 'string' },
  host: { type: 'string' },
  token: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
};

export async function runConsole(args: string[], io: Io): Promise<number> {
  const p = parseFlags('console', args, CONSOLE_FLAGS);
  if (bool(p, 'help')) {
    await writeAll(io.stdout, CONSOLE_HELP);
    return ExitCode.OK;
  }
  positionals('console', p, []);
  const port = num(p, 'port', { integer: true, max: 65535 }) ?? 8080;
  const host = str(p, 'host') ?? '127.0.0.1';
  const token = str(p, 'token');
  if (token !== undefined && !/^[A-Za-z0-9_-]{16,128}$/.test(token)) {
    throw new UsageError('--token must be 16 to 128 characters of A-Z a-z 0-9 _ -', {
      hint: 'leave it out to get a random one',
    });
  }
  const { startConsole } = await import('../../console/server.js');
  const running = await startConsole({ host, port, ...(token !== undefined ? { token } : {}) });
  const done = new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) {
        resolve(130);
        return;
      }
      stopping = true;
      const finish = () => resolve(ExitCode.OK);
      Promise.race([running.close(), sleep(3000)]).then(finish, finish);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  if (!bool(p, 'quiet')) {
    const lines = [`coapkit console: open ${running.url}`];
    if (!isLoopbackHost(host)) {
      lines.push(
        `  listening on ${host} (not loopback): the page and its CoAP proxy need the token ${running.token}`,
        '  (it is in the URL above; anyone with it can reach every CoAP server this machine can)',
      );
    }
    lines.push('Stop with Ctrl-C.');
    await writeAll(io.stdout, `${lines.join('\n')}\n`);
  }
  return await done;
}
