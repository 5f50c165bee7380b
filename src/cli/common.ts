/**
 * Pieces shared by the client commands: URI checking, content formats,
 * -O options, transport settings.
 */

import { Buffer } from 'node:buffer';
import { optionValue } from '../codec/options.js';
import type { CoapUri } from '../codec/uri.js';
import { parseUri } from '../codec/uri.js';
import { CONTENT_FORMATS, parseContentFormat } from '../constants/content-formats.js';
import { optionByName, optionDefinition } from '../constants/options.js';
import { CoapError, UsageError } from '../errors.js';
import { type Parsed, str } from './args.js';
import type { Io } from './io.js';
import { clientPsk, type PskKey } from './psk.js';

/** Parses a URI for the client; any problem is a usage error `invalid URI "x": reason`. */
export function checkUri(input: string): CoapUri {
  let uri: CoapUri;
  try {
    uri = parseUri(input);
  } catch (err) {
    let reason = err instanceof Error ? err.message : String(err);
    // The parser's messages often end with the URI itself; it is already quoted in front.
    const tail = `: "${input.trim()}"`;
    if (reason.endsWith(tail)) reason = reason.slice(0, -tail.length);
    const hint = err instanceof CoapError ? err.hint : undefined;
    throw new UsageError(`invalid URI "${input}": ${reason}`, {
      hint:
        hint ??
        'expected coap://host[:port]/path, coaps://, coap+tcp://, coaps+tcp://, coap+ws:// or coaps+ws://',
    });
  }
  return uri;
}

/** A Content-Format given as name, media type or number; usage error when unknown. */
export function contentFormatArg(value: string, flag: string): number {
  const cf = parseContentFormat(value);
  if (cf === undefined) {
    const names = CONTENT_FORMATS.flatMap(([, , aliases]) => aliases.slice(0, 1)).join(', ');
    throw new UsageError(`unknown content format "${value}" for ${flag}`, {
      hint: `use a number (0-65535), a media type, or one of: ${names}`,
    });
  }
  return cf;
}

/** One -O NUM[,VALUE] argument as an option with its wire value. */
export function optionArg(arg: string): { number: number; value: Buffer } {
  const comma = arg.indexOf(',');
  const name = (comma === -1 ? arg : arg.slice(0, comma)).trim();
  const raw = comma === -1 ? undefined : arg.slice(comma + 1);
  let number: number;
  if (/^\d+$/.test(name)) {
    number = Number(name);
    if (number < 1 || number > 65535) throw new UsageError(`option number ${name} out of range (1-65535)`);
  } else {
    const def = optionByName(name);
    if (!def) {
      throw new UsageError(`unknown option "${name}" in -O ${arg}`, {
        hint: 'use an option number, or a name like Uri-Query, If-Match, ETag, Observe, Accept',
      });
    }
    number = def.number;
  }
  try {
    if (raw === undefined || raw === '') {
      return { number, value: optionValue(number, null) };
    }
    // Unregistered options have no format: 0xHEX is bytes, anything else UTF-8 text.
    if (optionDefinition(number) === undefined && /^0x([0-9a-f]{2})*$/i.test(raw)) {
      return { number, value: Buffer.from(raw.slice(2), 'hex') };
    }
    return { number, value: optionValue(number, raw) };
  } catch (err) {
    throw new UsageError(`bad value in -O ${arg}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Seconds from --timeout as milliseconds. */
export function timeoutMs(p: Parsed, fallback?: number): number | undefined {
  const v = str(p, 'timeout');
  if (v === undefined) return fallback;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`--timeout expects a positive number of seconds, got "${v}"`);
  }
  return Math.round(n * 1000);
}

/** The key for a coaps:// URI (usage error when missing and no certificate is given); undefined for coap://. */
export function pskFor(uri: CoapUri, p: Parsed, io: Io, certificates = false): PskKey | undefined {
  const psk = clientPsk(p, io.env);
  if (uri.scheme === 'coaps' && psk === undefined && !certificates) {
    throw new UsageError('coaps:// needs a pre-shared key or a certificate', {
      hint: 'add --identity ID with --psk SECRET, --psk-hex HEX or --psk-file FILE (or set COAPKIT_PSK_IDENTITY and COAPKIT_PSK), or --cert FILE --key FILE --ca FILE, or --rpk FILE',
    });
  }
  return psk;
}
