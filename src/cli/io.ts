/** The process streams a command works with (injectable for tests), and the one way to write to them. */
import { Buffer } from 'node:buffer';
import { OutputError } from './exit.js';

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

/** A name for the stream in error messages. */
function streamName(stream: NodeJS.WritableStream): string {
  if (stream === process.stdout) return 'stdout';
  if (stream === process.stderr) return 'stderr';
  return 'output';
}

// The OutputError made for each raw stream error, so every reporter sees one object.
const converted = new WeakMap<object, OutputError>();

/**
 * The OutputError for an error a write to `stream` failed with (EPIPE, ENOSPC,
 * EBADF, EIO...): "cannot write to stdout: no space left on device (ENOSPC)".
 */
export function toOutputError(err: unknown, stream: NodeJS.WritableStream | string): OutputError {
  if (err instanceof OutputError) return err;
  const key = typeof err === 'object' && err !== null ? err : undefined;
  const known = key === undefined ? undefined : converted.get(key);
  if (known) return known;
  const name = typeof stream === 'string' ? stream : streamName(stream);
  const e = err as NodeJS.ErrnoException | undefined;
  const errno = typeof e?.code === 'string' ? e.code : undefined;
  // "ENOSPC: no space left on device, write" -> "no space left on device"
  let reason = e instanceof Error ? e.message : String(err);
  if (errno !== undefined && reason.startsWith(`${errno}: `)) reason = reason.slice(errno.length + 2);
  reason = reason.replace(/, \w+(?: '.*')?$/, '');
  const out = new OutputError(
    `cannot write to ${name}: ${reason}${errno !== undefined && !reason.includes(errno) ? ` (${errno})` : ''}`,
    { cause: err, ...(errno !== undefined ? { errno } : {}) },
  );
  if (key !== undefined) converted.set(key, out);
  return out;
}

/**
 * Writes and resolves once the data is handed to the OS, so a command that
 * awaits its writes neither loses output at exit nor buffers without bound
 * (backpressure: the next write waits). Rejects with an OutputError.
 */
export function writeAll(stream: NodeJS.WritableStream, data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const w = stream as NodeJS.WritableStream & { destroyed?: boolean; errored?: unknown };
    if (w.errored) {
      reject(toOutputError(w.errored, stream));
      return;
    }
    try {
      stream.write(data, (err) => (err ? reject(toOutputError(err, stream)) : resolve()));
    } catch (err) {
      reject(toOutputError(err, stream));
    }
  });
}

/**
 * Resolves when everything written to `stream` so far has been handed to the
 * OS (or the stream failed: the error is returned, not thrown).
 */
export function flushed(stream: NodeJS.WritableStream): Promise<OutputError | undefined> {
  return writeAll(stream, '').then(
    () => undefined,
    (err: unknown) => toOutputError(err, stream),
  );
}

/** A writer of log lines that never buffers without bound. */
export interface LineSink {
  /** Queues one line (a newline is added). Dropped (and counted) while the output is too slow. */
  line(text: string): void;
  /** Lines dropped so far. */
  dropped(): number;
}

/**
 * Log lines for a long-running command (serve -v): written without waiting,
 * but while more than `maxBuffered` bytes wait for a slow consumer new lines
 * are dropped and counted; the count is written once the output catches up
 * ("coapkit: N log lines dropped: output too slow"). After a write error the
 * sink goes quiet and calls `onError` once.
 */
export function lineSink(
  stream: NodeJS.WritableStream,
  opts: { maxBuffered?: number; onError?: (err: OutputError) => void } = {},
): LineSink {
  const max = opts.maxBuffered ?? 1 << 20;
  let dropped = 0;
  let pendingNote = 0;
  let failed = false;
  const onWritten = (err?: Error | null): void => {
    if (!err || failed) return;
    failed = true;
    opts.onError?.(toOutputError(err, stream));
  };
  return {
    line(text) {
      if (failed) return;
      const w = stream as NodeJS.WritableStream & { writableLength?: number };
      if ((w.writableLength ?? 0) > max) {
        dropped++;
        pendingNote++;
        return;
      }
      let out = `${text}\n`;
      if (pendingNote > 0) {
        out = `coapkit: ${pendingNote} log line${pendingNote === 1 ? '' : 's'} dropped: output too slow\n${out}`;
        pendingNote = 0;
      }
      try {
        stream.write(out, onWritten);
      } catch (err) {
        onWritten(err as Error);
      }
    },
    dropped: () => dropped,
  };
}

export async function readStream(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c));
  return Buffer.concat(chunks);
}
