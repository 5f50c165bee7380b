/**
 * Thin wrapper around node:util parseArgs that turns its errors into
 * UsageError (exit 64) with a pointer to the command's help.
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
}

export function parseFlags(command: string, args: readonly string[], flags: FlagSpecs): Parsed {
  try {
    const r = parseArgs({
      args: [...args],
      options: { ...flags, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    // parseArgs messages: "Unknown option '--foo'. To specify a positional ..." — keep the first sentence.
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

/** A non-negative number flag (e.g. --timeout 2.5); `integer` rejects fractions. */
export function num(
  p: Parsed,
  name: string,
  opts: { integer?: boolean; min?: number; max?: number } = {},
): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  const min = opts.min ?? 0;
  if (v.trim() === '' || !Number.isFinite(n) || n < min || (opts.integer && !Number.isInteger(n))) {
    throw new UsageError(
      `--${name} expects ${opts.integer ? 'an integer' : 'a number'} >= ${min}, got "${v}"`,
    );
  }
  if (opts.max !== undefined && n > opts.max) {
    throw new UsageError(`--${name} must be at most ${opts.max}, got ${v}`);
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
    throw new UsageError(`unexpected argument "${p.positionals[names.length]}"`, {
      hint: `see 'coapkit ${command} --help'`,
    });
  }
  return p.positionals;
}
