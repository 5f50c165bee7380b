/** `coapkit dissect FILE`: CLI entry point (wired into the coapkit CLI by src/cli). */

import { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { escapeStrings, escapeText, jsonSafe } from '../cli/escape.js';
import { OutputError } from '../cli/exit.js';
import { writeAll } from '../cli/io.js';
import { loadOscoreContext } from '../cli/oscore.js';
import { CoapError } from '../errors.js';
import type { OscoreContext } from '../oscore/context.js';
import { dissect } from './dissect.js';
import { renderJson, renderText } from './render.js';

export const DISSECT_USAGE = `Usage: coapkit dissect FILE [options]

Decode a pcap / pcapng capture the way the "life of a CoAP message" goes:
DNS resolution, the DTLS handshake flight by flight, then CoAP messages
grouped by exchange (piggybacked / separate responses, block-wise, observe),
with expert info: protocol violations flagged with their RFC section.
CoAP over TCP (RFC 8323, coap+tcp://) on TCP port 5683 and any --port is
decoded from the reassembled streams: frame length, signaling (7.01 CSM ...
7.05 Abort) with its options by name; retransmitted, overlapping and
out-of-order segments are handled, gaps reported (decoding resumes at the
next segment made of whole frames), never decoded as frames.

Options:
  --psk SECRET      DTLS pre-shared key as text (ASCII/UTF-8)
  --psk-hex HEX     DTLS pre-shared key as hex
  --keylog FILE     NSS key log (CLIENT_RANDOM lines), for ECDHE_PSK and certificate suites
  --oscore FILE     OSCORE security context (aiocoap JSON, either side's file; repeatable):
                    protected requests and responses are shown decrypted too
  --port N          always decode UDP port N as CoAP/DTLS and TCP port N as CoAP over
                    TCP (repeatable; UDP 5683/5684 and TCP 5683 always are; other UDP
                    ports are recognised by content, as tshark does; TCP ones are not)
  --json            machine-readable output (one JSON object)
  --no-color        never use colors (default: colors only on a terminal)
  -h, --help        show this help

Exit status: 0 ok, 1 capture truncated/corrupt (partial output printed), 64 usage error, 66 file unreadable.
`;

export interface DissectIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  isTTY: boolean;
}

/** Exit codes shared with the rest of the CLI (see `coapkit --help`). */
const EXIT_USAGE = 64;
const EXIT_NO_INPUT = 66;

export async function runDissect(argv: string[], io: DissectIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    await writeAll(
      io.stderr,
      `coapkit dissect: ${e instanceof Error ? e.message : String(e)}\n\n${DISSECT_USAGE}`,
    );
    return EXIT_USAGE;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    await writeAll(io.stdout, DISSECT_USAGE);
    return 0;
  }
  const usage = async (m: string): Promise<number> => {
    await writeAll(io.stderr, `coapkit dissect: ${m}\n\n${DISSECT_USAGE}`);
    return EXIT_USAGE;
  };
  if (positionals.length !== 1)
    return await usage(positionals.length === 0 ? 'missing FILE' : 'exactly one FILE expected');
  if (values.psk !== undefined && values['psk-hex'] !== undefined)
    return await usage('use --psk or --psk-hex, not both');
  let psk: Uint8Array | undefined;
  if (values.psk !== undefined) psk = Buffer.from(values.psk, 'utf8');
  if (values['psk-hex'] !== undefined) {
    const h = values['psk-hex'].replace(/^0x/i, '').replace(/[\s:]/g, '');
    if (!/^([0-9a-fA-F]{2})+$/.test(h)) return await usage('--psk-hex must be an even number of hex digits');
    psk = Buffer.from(h, 'hex');
  }
  const ports: number[] = [];
  for (const p of values.port ?? []) {
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 65535) return await usage(`invalid --port ${p}`);
    ports.push(n);
  }
  let oscore: OscoreContext[];
  try {
    oscore = (values.oscore ?? []).map((f) => loadOscoreContext(f, { sequence: false }));
  } catch (e) {
    return await usage(e instanceof Error ? e.message : String(e));
  }
  const file = positionals[0] as string;
  let bytes: Buffer;
  let keylog: string | undefined;
  try {
    bytes = await readFile(file);
    if (values.keylog !== undefined) keylog = await readFile(values.keylog, 'utf8');
  } catch (e) {
    await writeAll(
      io.stderr,
      `coapkit dissect: cannot read ${e instanceof Error && 'path' in e ? String(e.path) : file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}\n`,
    );
    return EXIT_NO_INPUT;
  }
  try {
    const result = dissect(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
      ...(psk !== undefined ? { psk } : {}),
      ...(keylog !== undefined ? { keylog } : {}),
      ports,
      ...(oscore.length > 0 ? { oscore } : {}),
    });
    // Awaited: the whole document reaches a pipe before the process exits (and a
    // closed pipe or a full disk is an OutputError, exit 74). Text from the capture is
    // escaped before rendering; JSON gets DEL/C1/bidi controls as \u escapes too.
    await writeAll(
      io.stdout,
      values.json
        ? jsonSafe(renderJson(result))
        : renderText(escapeStrings(result), { color: io.isTTY && !values['no-color'] }),
    );
    if (result.error) {
      await writeAll(io.stderr, `coapkit dissect: ${escapeText(result.error.message)}\n`);
      return 1;
    }
    return 0;
  } catch (e) {
    if (e instanceof CoapError && !(e instanceof OutputError)) {
      await writeAll(io.stderr, `coapkit dissect: ${escapeText(e.message)}\n`);
      return 1;
    }
    throw e;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      psk: { type: 'string' },
      'psk-hex': { type: 'string' },
      keylog: { type: 'string' },
      port: { type: 'string', multiple: true },
      oscore: { type: 'string', multiple: true },
      json: { type: 'boolean' },
      'no-color': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
