/**
 * The coapkit command (src/cli/main.ts is the executable): dispatch to the subcommands and map every outcome to
 * an exit status (see `coapkit --help`). Expected failures (CoapError) are
 * printed as "coapkit: <message>" plus a hint; never as a stack trace.
 */
import { readFileSync } from 'node:fs';
import { CoapError, DtlsError, NetworkError, ResetError, TimeoutError, UsageError } from '../errors.js';
import { escapeText } from './escape.js';
import { ExitCode, exitCodeForError, OutputError } from './exit.js';
import { MAIN_HELP, METHODS } from './help.js';
import { type Io, writeAll } from './io.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs one command line; resolves with the exit status. Long-running commands (serve) resolve at shutdown. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  try {
    // Global --trace[=text|json]: every layer's events on stderr (src/trace).
    if (argv.some((a) => a === '--trace' || a.startsWith('--trace='))) {
      const { extractTraceFlag, withTrace } = await import('../trace/cli.js');
      const t = extractTraceFlag(argv);
      if (t) return await withTrace(t.format, io.stderr, io.env, () => main(t.argv, io));
    }
    if (command === undefined) {
      await writeAll(io.stderr, MAIN_HELP);
      return ExitCode.USAGE;
    }
    if (command === '-h' || command === '--help') {
      await writeAll(io.stdout, MAIN_HELP);
      return ExitCode.OK;
    }
    if (command === 'help') {
      if (rest.length > 0) return await main([rest[0]!, '--help'], io);
      await writeAll(io.stdout, MAIN_HELP);
      return ExitCode.OK;
    }
    if (command === '-V' || command === '--version' || command === 'version') {
      await writeAll(io.stdout, `coapkit ${version()}\n`);
      return ExitCode.OK;
    }
    if ((METHODS as readonly string[]).includes(command.toLowerCase())) {
      const { runRequest } = await import('./commands/request.js');
      return await runRequest(command.toLowerCase(), rest, io);
    }
    // coap-client and curl habits: the method as a flag (`coapkit -m put URI`,
    // `coapkit -X POST URI`), flags before the method, or a bare URI (GET).
    if (command.startsWith('-') || /^coaps?(\+(tcp|ws))?:\/\//i.test(command)) {
      const { runRequest } = await import('./commands/request.js');
      return await runRequest(undefined, [...argv], io);
    }
    switch (command) {
      case 'observe': {
        const { runObserve } = await import('./commands/observe.js');
        return await runObserve(rest, io);
      }
      case 'discover': {
        const { runDiscover } = await import('./commands/discover.js');
        return await runDiscover(rest, io);
      }
      case 'ping': {
        const { runPing } = await import('./commands/ping.js');
        return await runPing(rest, io);
      }
      case 'serve': {
        const { runServe } = await import('./commands/serve.js');
        return await runServe(rest, io);
      }
      case 'console': {
        const { runConsole } = await import('./commands/console.js');
        return await runConsole(rest, io);
      }
      case 'dissect': {
        const { runDissect } = await import('../dissect/cli.js');
        return await runDissect(rest, {
          stdout: io.stdout,
          stderr: io.stderr,
          isTTY: io.stdout.isTTY === true,
        });
      }
      case 'demo': {
        const { runDemoCommand } = await import('../demo/cli.js');
        return await runDemoCommand(rest, {
          stdout: io.stdout,
          stderr: io.stderr,
          isTTY: io.stdout.isTTY === true,
        });
      }
      default:
        throw new UsageError(`unknown command "${command}"`, {
          hint: `commands: ${METHODS.join(', ')}, observe, discover, ping, serve, console, dissect, demo (see 'coapkit --help')`,
        });
    }
  } catch (err) {
    return report(err, io);
  }
}

/** Prints an error the way the CLI does and returns its exit status. */
export async function report(err: unknown, io: Io): Promise<number> {
  const status = exitCodeForError(err);
  if (err instanceof OutputError) {
    // One line, no hint; nothing at all for a closed pipe (`coapkit ... | head`).
    if (err.reported || err.errno === 'EPIPE') return status;
    err.reported = true;
    await writeAll(io.stderr, `coapkit: ${err.message}\n`).catch(() => {});
    return status;
  }
  if (err instanceof CoapError) {
    let hint = err.hint;
    if (hint === undefined && err instanceof ResetError) {
      hint =
        'the peer rejected the message with a Reset: is a CoAP server (of that scheme) running on that port?';
    } else if (hint === undefined && (err instanceof TimeoutError || err instanceof NetworkError)) {
      hint = 'is a server running on that port?';
    } else if (hint === undefined && err instanceof DtlsError) {
      // bad_record_mac (20), decrypt_error (51), unknown_psk_identity (115): what a wrong key or identity gives.
      hint =
        err.alert === 20 || err.alert === 51 || err.alert === 115
          ? 'check the PSK identity and key (--identity, --psk/--psk-hex/--psk-file)'
          : 'the DTLS handshake failed: does the server speak DTLS 1.2 with PSK (or certificates) and a cipher suite in common? (--trace shows the handshake)';
    }
    // Messages can quote what a peer sent (a diagnostic, an identity): escaped, one line each.
    let text = `coapkit: ${escapeText(err.message)}\n`;
    if (hint !== undefined) text += `  hint: ${escapeText(hint)}\n`;
    await writeAll(io.stderr, text).catch(() => {});
  } else {
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    await writeAll(io.stderr, `coapkit: internal error (please report it): ${detail}\n`).catch(() => {});
  }
  return status;
}
