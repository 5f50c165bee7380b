/**
 * Escaping of text that comes from the network (paths, queries, PSK identities,
 * peers, diagnostic payloads, link-format, capture contents) before the CLI,
 * the tracer or the dissector prints or logs it: a Uri-Path holding "\n" or an ANSI escape must not forge
 * a log line or repaint the terminal.
 *
 * `escapeText` is the one function every printer uses. Its output never holds a
 * C0 control (U+0000-U+001F), DEL, a C1 control (U+0080-U+009F), a line or
 * paragraph separator (U+2028/2029), a bidi control (U+061C, U+200E/200F,
 * U+202A-U+202E, U+2066-U+2069) or a lone surrogate, and it is reversible
 * (`unescapeText`): a backslash is doubled, so "\n" in the output always means
 * an escaped newline, never the two characters the peer sent.
 *
 *   \\  backslash      \n \r \t  newline, carriage return, tab
 *   \xHH  other C0 controls and DEL
 *   \uHHHH  C1 controls, U+2028/2029, bidi controls, lone surrogates
 */

// Everything escapeText rewrites (the backslash too, so the result is unambiguous).
const NEEDS_ESCAPE =
  /[\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const NEEDS_ESCAPE_TEST = new RegExp(NEEDS_ESCAPE.source);

function escapeChar(c: string): string {
  switch (c) {
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
  }
  const code = c.charCodeAt(0);
  if (code < 0x20 || code === 0x7f) return `\\x${code.toString(16).padStart(2, '0')}`;
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * Text safe to print on one line of a log or terminal (see the module comment).
 * Returns the same string, without allocating, when nothing needs escaping.
 */
export function escapeText(s: string): string {
  if (!NEEDS_ESCAPE_TEST.test(s)) return s;
  return s.replace(NEEDS_ESCAPE, escapeChar);
}

/** The inverse of escapeText (for tests and tools that read the logs back). */
export function unescapeText(s: string): string {
  return s.replace(/\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})/g, (_, e: string) => {
    switch (e[0]) {
      case '\\':
        return '\\';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      default:
        return String.fromCharCode(Number.parseInt(e.slice(1), 16));
    }
  });
}

/** True when `s` holds a character escapeText would rewrite other than the backslash. */
export function hasControlChars(s: string): boolean {
  NEEDS_ESCAPE.lastIndex = 0;
  for (const m of s.matchAll(NEEDS_ESCAPE)) if (m[0] !== '\\') return true;
  return false;
}

// Characters JSON.stringify leaves raw inside strings but a terminal interprets.
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;
const JSON_UNSAFE_TEST = new RegExp(JSON_UNSAFE.source);

/**
 * JSON text (from JSON.stringify, which already escapes C0 controls) with DEL,
 * C1, separators and bidi controls written as \uHHHH escapes too: the parsed
 * value is identical, the text is safe on a terminal. Outside strings JSON
 * holds only ASCII, so the replacement only ever touches string contents.
 */
export function jsonSafe(json: string): string {
  if (!JSON_UNSAFE_TEST.test(json)) return json;
  return json.replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// An SGR sequence ("\x1b[1m", "\x1b[0m", "\x1b[38;5;2m"): the colours our own renderers add.
const SGR = /(\u001b\[[0-9;]*m)/;

/**
 * escapeText for a line that may already carry the renderer's own colours:
 * SGR sequences are kept, everything else is escaped. (A peer could smuggle a
 * colour change this way when colours are on, never a line break, cursor
 * movement or title change; without colours every ESC is escaped.)
 */
export function escapeKeepingSgr(s: string): string {
  if (!NEEDS_ESCAPE_TEST.test(s)) return s;
  if (!s.includes('\u001b')) return escapeText(s);
  return s
    .split(SGR)
    .map((part, i) => (i % 2 === 1 ? part : escapeText(part)))
    .join('');
}

/**
 * A copy of a JSON-like value (plain objects, arrays) with escapeText applied
 * to every string; typed arrays and other objects are kept as they are. For
 * renderers that print fields of decoded network data (coapkit dissect).
 */
export function escapeStrings<T>(value: T): T {
  const seen = new Map<object, unknown>();
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return escapeText(v);
    if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return v;
    const known = seen.get(v);
    if (known !== undefined) return known;
    if (Array.isArray(v)) {
      const out: unknown[] = [];
      seen.set(v, out);
      for (const x of v) out.push(walk(x));
      return out;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    const out: Record<string, unknown> = {};
    seen.set(v, out);
    for (const [k, x] of Object.entries(v)) out[k] = walk(x);
    return out;
  };
  return walk(value) as T;
}
