#!/usr/bin/env node
/** The `coapkit` executable. The commands live in cli.ts (importable without side effects). */
import { main } from './cli.js';
import { ExitCode } from './exit.js';
import { processIo } from './io.js';

// Output piped into a consumer that goes away (coapkit get ... | head) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});

main(process.argv.slice(2), processIo()).then(
  (status) => {
    // Exit explicitly: a socket or timer left behind must not keep the process alive.
    process.exit(status);
  },
  (err: unknown) => {
    process.stderr.write(`coapkit: internal error: ${String(err)}\n`);
    process.exit(ExitCode.INTERNAL);
  },
);
