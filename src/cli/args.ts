/**
 * Thin wrapper around node:util parseArgs that turns its errors into
 * UsageError (exit 64) with a pointer to the command's help, accepts negative
 * numbers as values (`--count -1` reaches the flag's own check), and answers
 * an unknown flag with the closest known one, or with what coapkit offers for
 * a libcoap coap-client or curl flag it does not take.
 */
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
}

export type FlagSpecs = Record<string, FlagSpec>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
  /** How each flag was last written on the command line ("-p" or "--payload"). */
  rawNames: Record<string, string>;
}

/**
 * Flags of libcoap's coap-client and of curl that coapkit does not take (or
 * takes with another meaning), and what to use instead. Checked when a flag
 * is unknown to the command, so a flag a command does accept never gets here.
 */
const FOREIGN_FLAGS: Record<string, string> = {
  '-a': "libcoap's -a (local address): use --local-address ADDR",
  '-l': "libcoap's -l (simulated loss) is not supported",
  '-r': "libcoap's -r (CoAP over TCP/TLS): write the scheme in the URI, coap+tcp:// or coaps+tcp://",
  '-w': 'coapkit adds the newline itself when stdout is a terminal (libcoap -w); in a script add one with `; echo`',
  '-G': "libcoap's -G (repeat) is not supported: use a shell loop",
  '-H': "add options with -O NAME,VALUE (libcoap's -H hop limit: -O Hop-Limit,N; CoAP has no HTTP headers)",
  '-K': "libcoap's -K (keep-alive ping) is not supported: see 'coapkit ping'",
  '-L': 'block-wise transfers (RFC 7959) are automatic; set the size with -b/--block-size',
  '-P': "to go through a proxy, send to the proxy's URI with -O Proxy-Uri,TARGET",
  '-U': 'not needed: Uri-Host is sent only when the URI names a host (RFC 7252 §6.4)',
  '-X': '-X METHOD (curl) works with the request commands',
  '-E': "libcoap's -E (OSCORE configuration): use --oscore FILE (aiocoap's JSON context format)",
  '-c': 'a certificate is --cert FILE here (with --key FILE and --ca FILE)',
  '-j': "the certificate's key is --key FILE here",
  '-C': 'the CA certificate is --ca FILE here',
  '-R': "libcoap's -R (trusted root CAs): use --ca FILE (PEM, one or more certificates)",
  '-J': 'PKCS#11 is not supported: give PEM files (--cert FILE --key FILE)',
  '-M': 'a raw public key is --rpk FILE here (a PEM P-256 private key)',
  '-S': 'certificates: --cert FILE --key FILE --ca FILE',
  '-I': 'CoAP has no HEAD method: use get (-v shows the response options, -i prints them)',
  '-F': 'CoAP has no forms: send the payload with -p TEXT, -p @FILE or -f FILE',
  '-x': "to go through a proxy, send to the proxy's URI with -O Proxy-Uri,TARGET",
  '--silent': 'use -q/--quiet (coapkit prints nothing but the payload on success)',
  '--header': 'add CoAP options with -O NAME,VALUE (e.g. -O Uri-Query,x=1)',
  '--max-time': 'use --timeout SECONDS (or -B SECONDS)',
  '--connect-timeout': 'use --timeout SECONDS (or -B SECONDS)',
  '--location': 'CoAP has no redirects',
  '--head': 'CoAP has no HEAD method: use get (-v shows the response options, -i prints them)',
  '--data-urlencode': 'send the payload with -p/--data TEXT; put query parameters in the URI (?a=1)',
  '--form': 'CoAP has no forms: send the payload with -p TEXT, -p @FILE or -f FILE',
  '--user': 'for coaps:// use -u/--identity ID with -k/--psk KEY',
  '--retry': 'CON requests are retransmitted by CoAP itself (RFC 7252 §4.2)',
};

/** Commands that are not coap-client look-alikes: no libcoap/curl client hints. */
const SERVER_COMMANDS = new Set(['serve', 'dissect', 'demo']);

/** Edit distance with transpositions ("cuont" is 1 from "count"); flags are short. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known flag closest to an unknown one ("--tiemout" -> "--timeout"), if any is close. */
export function closestFlag(unknown: string, flags: FlagSpecs): string | undefined {
  const name = unknown.replace(/^-+/, '').split('=')[0]!.toLowerCase();
  if (name.length > 64) return undefined;
  if (name.length < 2) {
    // A short flag: the same letter in the other case ("-b" for "-B") or nothing.
    for (const [long, spec] of Object.entries(flags)) {
      if (spec.short !== undefined && spec.short.toLowerCase() === name) return `-${spec.short} (--${long})`;
    }
    return undefined;
  }
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const long of Object.keys(flags)) {
    if (long.startsWith(name) || name.startsWith(long)) {
      const d = Math.abs(long.length - name.length) / 4;
      if (d < bestD) [best, bestD] = [long, d];
      continue;
    }
    const d = distance(name, long);
    if (d <= Math.max(1, Math.floor(long.length / 3)) && d < bestD) [best, bestD] = [long, d];
  }
  if (best === undefined) return undefined;
  const short = flags[best]!.short;
  return short === undefined ? `--${best}` : `-${short}/--${best}`;
}

/**
 * Negative numbers as values: parseArgs takes "-1" for a flag and fails with
 * "argument is ambiguous". A string flag followed by "-<digit>..." gets it as
 * its value (`--count=-1`), so the flag's own check can say what is valid.
 */
function joinNegativeValues(args: readonly string[], flags: FlagSpecs): string[] {
  const out: string[] = [];
  const stringShort = new Map<string, string>();
  for (const [long, spec] of Object.entries(flags)) {
    if (spec.type === 'string' && spec.short !== undefined) stringShort.set(spec.short, long);
  }
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    if (next !== undefined && /^-\d|^-\.\d/.test(next)) {
      const long = a.startsWith('--') ? a.slice(2) : a.length === 2 ? stringShort.get(a.slice(1)) : undefined;
      if (long !== undefined && !long.includes('=') && flags[long]?.type === 'string') {
        out.push(`--${long}=${next}`);
        i++;
        continue;
      }
    }
    out.push(a);
  }
  return out;
}

export function parseFlags(command: string, args: readonly string[], flags: FlagSpecs): Parsed {
  const options = { ...flags, help: { type: 'boolean', short: 'h' } } as FlagSpecs;
  try {
    const r = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
    const rawNames: Record<string, string> = {};
    for (const t of r.tokens ?? []) if (t.kind === 'option') rawNames[t.name] = t.rawName;
    return { values: r.values as Parsed['values'], positionals: r.positionals, rawNames };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const unknown = /^Unknown option '([^']+)'/.exec(msg)?.[1];
    if (unknown !== undefined) {
      const client = !SERVER_COMMANDS.has(command);
      const foreign = client ? (FOREIGN_FLAGS[unknown] ?? FOREIGN_FLAGS[unknown.split('=')[0]!]) : undefined;
      const close = closestFlag(unknown, flags);
      throw new UsageError(`unknown option '${unknown}'`, {
        hint:
          foreign ??
          (close !== undefined
            ? `did you mean ${close}? (see 'coapkit ${command} --help')`
            : `see 'coapkit ${command} --help'`),
      });
    }
    // parseArgs messages: "Option '-p, --payload <value>' argument missing. ..." — keep the first sentence.
    const first = msg.split(/\.\s/)[0]!.replace(/\.$/, '');
    throw new UsageError(first.charAt(0).toLowerCase() + first.slice(1), {
      hint: `see 'coapkit ${command} --help'`,
    });
  }
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function strs(p: Parsed, name: string): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? (v as string[]) : typeof v === 'string' ? [v] : [];
}

export function bool(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** How a flag was written ("-p" or "--payload"), or its long form when it was not given. */
export function flagName(p: Parsed, name: string): string {
  return p.rawNames[name] ?? `--${name}`;
}

/** A non-negative number flag (e.g. --timeout 2.5); `integer` rejects fractions. */
export function num(
  p: Parsed,
  name: string,
  opts: { integer?: boolean; min?: number; max?: number; hint?: string } = {},
): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  const min = opts.min ?? 0;
  if (v.trim() === '' || !Number.isFinite(n) || n < min || (opts.integer && !Number.isInteger(n))) {
    throw new UsageError(
      `${flagName(p, name)} expects ${opts.integer ? 'an integer' : 'a number'} >= ${min}, got "${v}"`,
      opts.hint !== undefined ? { hint: opts.hint } : undefined,
    );
  }
  if (opts.max !== undefined && n > opts.max) {
    throw new UsageError(`${flagName(p, name)} must be at most ${opts.max}, got ${v}`);
  }
  return n;
}

/** Exactly `count` positionals, else a usage error naming what is expected. */
export function positionals(command: string, p: Parsed, names: readonly string[]): string[] {
  if (p.positionals.length < names.length) {
    throw new UsageError(`missing ${names[p.positionals.length]}`, {
      hint: `usage: coapkit ${command} ${names.join(' ')} (see 'coapkit ${command} --help')`,
    });
  }
  if (p.positionals.length > names.length) {
    const extra = p.positionals[names.length]!;
    // libcoap's -v takes a level (-v 9); here -v is a switch and the level is left over.
    const verboseLevel = /^\d$/.test(extra) && p.values.verbose === true;
    throw new UsageError(`unexpected argument "${extra}"`, {
      hint: verboseLevel
        ? "-v takes no level here (libcoap's -v NUM): -v prints the exchange, --trace every layer"
        : `see 'coapkit ${command} --help'`,
    });
  }
  return p.positionals;
}
