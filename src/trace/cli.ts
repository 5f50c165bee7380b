/**
 * The global `--trace[=text|json]` flag of the coapkit command: taken out of
 * the argument list before the subcommand parses it, and wrapped around the
 * whole command so every layer's events go to stderr (stdout keeps carrying
 * the payload).
 */
import { UsageError } from '../errors.js';
import { startTrace } from './tracer.js';

export interface TraceFlag {
  format: 'text' | 'json';
  /** The arguments without the flag. */
  argv: string[];
}

/**
 * Finds `--trace`, `--trace=text` or `--trace=json` before any `--`.
 * Returns undefined when absent; throws UsageError for another value.
 */
export function extractTraceFlag(argv: readonly string[]): TraceFlag | undefined {
  let format: 'text' | 'json' | undefined;
  const rest: string[] = [];
  let ended = false;
  for (const a of argv) {
    if (!ended && a === '--') ended = true;
    if (!ended && (a === '--trace' || a.startsWith('--trace='))) {
      const v = a === '--trace' ? 'text' : a.slice('--trace='.length);
      if (v !== 'text' && v !== 'json') {
        throw new UsageError(`--trace expects "text" or "json", got "${v}"`, {
          hint: 'use --trace (human-readable) or --trace=json (one JSON object per line)',
        });
      }
      format = v;
      continue;
    }
    rest.push(a);
  }
  return format === undefined ? undefined : { format, argv: rest };
}

/** Runs `fn` with tracing on `stderr`, colours when it is a terminal (and NO_COLOR is unset). */
export async function withTrace<T>(
  format: 'text' | 'json',
  stderr: NodeJS.WritableStream & { isTTY?: boolean },
  env: NodeJS.ProcessEnv,
  fn: () => Promise<T>,
): Promise<T> {
  const trace = startTrace({
    format,
    out: stderr,
    color: format === 'text' && stderr.isTTY === true && !env.NO_COLOR,
  });
  try {
    return await fn();
  } finally {
    // Let the last events (published while the command finished) reach the trace.
    await new Promise((r) => setImmediate(r));
    trace.stop();
  }
}
