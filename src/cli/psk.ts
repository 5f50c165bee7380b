/**
 * Pre-shared keys from flags, files and the environment.
 */

import { Buffer } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { bool, type Parsed, str } from './args.js';
import { InputFileError } from './exit.js';

export interface PskKey {
  identity: string;
  key: Buffer;
}

export const PSK_FLAGS = {
  identity: { type: 'string' },
  psk: { type: 'string' },
  'psk-hex': { type: 'string' },
  'psk-file': { type: 'string' },
} as const;

export function readInputFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (err as Error).message;
    throw new InputFileError(`cannot read ${what} "${file}": ${reason}`, { cause: err });
  }
}

export function parseHexKey(hex: string, what: string): Buffer {
  const h = hex.trim().replace(/^0x/i, '');
  if (h.length === 0 || h.length % 2 !== 0 || !/^[0-9a-f]+$/i.test(h)) {
    throw new UsageError(`${what} is not valid hex: "${hex}"`, {
      hint: 'write it as 0x00112233... or 00112233...',
    });
  }
  return Buffer.from(h, 'hex');
}

/** A key written as text, or as hex when prefixed by 0x. */
function textOrHex(v: string, what: string): Buffer {
  return /^0x/i.test(v.trim()) ? parseHexKey(v, what) : Buffer.from(v, 'utf8');
}

/**
 * Client key: --identity with --psk | --psk-hex | --psk-file, falling back to
 * COAPKIT_PSK_IDENTITY / COAPKIT_PSK. Undefined when nothing is configured.
 */
export function clientPsk(p: Parsed, env: NodeJS.ProcessEnv): PskKey | undefined {
  const sources = ['psk', 'psk-hex', 'psk-file'].filter((n) => str(p, n) !== undefined);
  if (sources.length > 1) {
    throw new UsageError(`use only one of ${sources.map((s) => `--${s}`).join(', ')}`);
  }
  let key: Buffer | undefined;
  const text = str(p, 'psk');
  const hexKey = str(p, 'psk-hex');
  const file = str(p, 'psk-file');
  if (text !== undefined) key = Buffer.from(text, 'utf8');
  else if (hexKey !== undefined) key = parseHexKey(hexKey, '--psk-hex');
  else if (file !== undefined) {
    const raw = readInputFile(file, 'key file');
    const t = raw.toString('utf8').replace(/\r?\n$/, '');
    key = /^0x[0-9a-f]+$/i.test(t.trim()) ? parseHexKey(t, `key in ${file}`) : Buffer.from(t, 'utf8');
  } else if (env.COAPKIT_PSK !== undefined && env.COAPKIT_PSK !== '') {
    key = textOrHex(env.COAPKIT_PSK, 'COAPKIT_PSK');
  }
  const identity = str(p, 'identity') ?? (env.COAPKIT_PSK_IDENTITY || undefined);
  if (key === undefined && identity === undefined) return undefined;
  if (key === undefined) {
    throw new UsageError(`PSK identity "${identity}" given without a key`, {
      hint: 'add --psk SECRET, --psk-hex HEX, --psk-file FILE or set COAPKIT_PSK',
    });
  }
  if (identity === undefined) {
    throw new UsageError('a PSK key was given without an identity', {
      hint: 'add --identity ID or set COAPKIT_PSK_IDENTITY',
    });
  }
  if (key.length === 0) throw new UsageError('the PSK key is empty');
  return { identity, key };
}

/**
 * Parses a server key file: one "identity:secret" or "identity:0xHEX" per
 * line; blank lines and lines starting with '#' are ignored. The identity is
 * everything before the first ':'.
 */
export function parsePskFile(text: string, file = 'key file'): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const colon = t.indexOf(':');
    if (colon <= 0) {
      throw new UsageError(`${file}:${i + 1}: expected "identity:secret"`, {
        hint: 'one key per line, e.g. "sensor-1:s3cret" or "sensor-2:0x0011aabb"',
      });
    }
    const identity = t.slice(0, colon).trimEnd();
    const secret = t.slice(colon + 1);
    const key = /^0x/i.test(secret)
      ? parseHexKey(secret, `${file}:${i + 1} key`)
      : Buffer.from(secret, 'utf8');
    if (key.length === 0) throw new UsageError(`${file}:${i + 1}: empty key for "${identity}"`);
    if (keys.has(identity)) throw new UsageError(`${file}:${i + 1}: identity "${identity}" listed twice`);
    keys.set(identity, key);
  });
  return keys;
}

/**
 * Server keys from --identity/--psk/--psk-hex and --psk-file (both may be combined).
 * With --generate-psk and no key given, --identity alone names the generated key's identity.
 */
export function serverKeys(p: Parsed, env: NodeJS.ProcessEnv): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const file = str(p, 'psk-file');
  if (file !== undefined) {
    for (const [id, k] of parsePskFile(readInputFile(file, 'key file').toString('utf8'), file))
      keys.set(id, k);
  }
  const text = str(p, 'psk');
  const hexKey = str(p, 'psk-hex');
  if (text !== undefined && hexKey !== undefined) throw new UsageError('use only one of --psk, --psk-hex');
  let key: Buffer | undefined;
  if (text !== undefined) key = Buffer.from(text, 'utf8');
  else if (hexKey !== undefined) key = parseHexKey(hexKey, '--psk-hex');
  else if (env.COAPKIT_PSK) key = textOrHex(env.COAPKIT_PSK, 'COAPKIT_PSK');
  const identity = str(p, 'identity') ?? (env.COAPKIT_PSK_IDENTITY || undefined);
  if (key !== undefined || str(p, 'identity') !== undefined) {
    if (key === undefined) {
      // `serve --generate-psk --identity ID`: the key made for this run is ID's.
      if (bool(p, 'generate-psk') && keys.size === 0) return keys;
      throw new UsageError('--identity needs --psk SECRET or --psk-hex HEX');
    }
    if (identity === undefined) throw new UsageError('--psk needs --identity ID');
    if (key.length === 0) throw new UsageError('the PSK key is empty');
    keys.set(identity, key);
  }
  return keys;
}
