#!/usr/bin/env node
/** The `coapkit` executable. The commands live in cli.ts (importable without side effects). */
import { writeSync } from 'node:fs';
import { main } from './cli.js';
import { ExitCode, type OutputError } from './exit.js';
import { flushed, processIo, toOutputError } from './io.js';

// A failed write to stdout (disk full, closed pipe, bad descriptor) is an output error:
// exit 74 (EX_IOERR), with one line on stderr unless the pipe was closed (`| head`).
// Listening also keeps Node from turning the stream's 'error' event into a crash.
let outputFailure: OutputError | undefined;
process.stdout.on('error', (err) => {
  outputFailure ??= toOutputError(err, 'stdout');
});
// Nothing useful can be said about a failing stderr: ignore it.
process.stderr.on('error', () => {});

function describeFailure(f: OutputError): void {
  if (f.reported || f.errno === 'EPIPE') return;
  f.reported = true;
  try {
    writeSync(2, `coapkit: ${f.message}\n`);
  } catch {
    // stderr is gone too
  }
}

async function finish(status: number): Promise<never> {
  // Exit only once stdout and stderr have handed everything to the OS: process.exit
  // drops what is still queued for a pipe (a 300 KB dissect stopped at 64 KB).
  const [out] = await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  outputFailure ??= out;
  if (outputFailure !== undefined) {
    describeFailure(outputFailure);
    status = ExitCode.IO_ERROR;
  }
  // Exit explicitly: a socket or timer left behind must not keep the process alive.
  process.exit(status);
}

main(process.argv.slice(2), processIo()).then(finish, (err: unknown) => {
  try {
    writeSync(2, `coapkit: internal error: ${String(err)}\n`);
  } catch {
    // stderr is gone too
  }
  return finish(ExitCode.INTERNAL);
});
