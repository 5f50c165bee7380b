/**
 * `coapkit demo [options]`: argument parsing for runDemo().
 */
import { parseArgs } from 'node:util';
import { writeAll } from '../cli/io.js';
import { UsageError } from '../errors.js';
import { type DemoIo, type DemoOptions, runDemo } from './demo.js';

export const DEMO_HELP = `Usage: coapkit demo [options]

Plays the "Life of a CoAP Message" scenario on this machine and traces every
step: a coaps:// "cloud" on a loopback ephemeral port with a random PSK; a
device that resolves localhost (A/AAAA), runs the DTLS 1.2 PSK handshake,
POSTs a JSON log to /logs (CON, piggybacked 2.03 Valid), observes
/.d/settings while the cloud changes it twice, and downloads a firmware image
block-wise with a progress bar. Then it prints the bytes each layer added.

Options:
      --plain               use coap:// (no DTLS)
      --host NAME           host name the device resolves (default localhost)
      --size BYTES          firmware image size (default 65536)
      --block-size N        Block2 size, a power of two 16..1024 (default 1024)
      --all-blocks          trace every block of the download
      --json                trace as JSON lines on stdout (headings on stderr)
      --no-color            no ANSI colours even on a terminal
  -h, --help                this help
`;

export async function runDemoCommand(args: readonly string[], io: DemoIo): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...args],
      options: {
        plain: { type: 'boolean' },
        host: { type: 'string' },
        size: { type: 'string' },
        'block-size': { type: 'string' },
        'all-blocks': { type: 'boolean' },
        json: { type: 'boolean' },
        'no-color': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split(/\.\s/)[0]! : String(err);
    throw new UsageError(msg, { hint: "see 'coapkit demo --help'" });
  }
  if (values.help === true) {
    await writeAll(io.stdout, DEMO_HELP);
    return 0;
  }
  const options: DemoOptions = {};
  if (values.plain === true) options.secure = false;
  if (typeof values.host === 'string') options.host = values.host;
  if (typeof values.size === 'string') {
    const n = Number(values.size);
    if (!Number.isInteger(n) || n < 1 || n > 16 << 20) {
      throw new UsageError(`--size expects a number of bytes from 1 to ${16 << 20}, got "${values.size}"`);
    }
    options.firmwareSize = n;
  }
  if (typeof values['block-size'] === 'string') {
    const n = Number(values['block-size']);
    if (![16, 32, 64, 128, 256, 512, 1024].includes(n)) {
      throw new UsageError(
        `--block-size expects 16, 32, 64, 128, 256, 512 or 1024, got "${values['block-size']}"`,
      );
    }
    options.blockSize = n;
  }
  if (values['all-blocks'] === true) options.allBlocks = true;
  if (values.json === true) options.traceFormat = 'json';
  if (values['no-color'] === true) options.color = false;
  return runDemo(io, options);
}
