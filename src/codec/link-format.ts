/**
 * CoRE Link Format (RFC 6690): parsing, serialization and the query
 * filtering of /.well-known/core (§4.1). Pure functions.
 */
import { LinkFormatError } from '../errors.js';

export interface Link {
  /** The URI-reference between < and >. */
  target: string;
  /**
   * Attributes in order. A value of `true` means the attribute had no value
   * (e.g. `obs`). Attributes may repeat (e.g. several `rt`), hence arrays.
   */
  attributes: Array<[name: string, value: string | true]>;
}

/** First value of an attribute, `true` for a flag, undefined when absent. */
export function linkAttr(link: Link, name: string): string | true | undefined {
  for (const [n, v] of link.attributes) if (n === name) return v;
  return undefined;
}

/** All space-separated values of an attribute across its occurrences (for rt, if, ct). */
export function linkAttrValues(link: Link, name: string): string[] {
  const out: string[] = [];
  for (const [n, v] of link.attributes) {
    if (n === name && v !== true) out.push(...v.split(/\s+/).filter((x) => x !== ''));
  }
  return out;
}

const MAX_LINKS = 10_000;

/** Parses an application/link-format document. Throws LinkFormatError. */
export function parseLinkFormat(text: string): Link[] {
  const links: Link[] = [];
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && /[ \t\r\n]/.test(text[i]!)) i++;
  };
  ws();
  if (i === n) return links;
  for (;;) {
    ws();
    if (text[i] !== '<') throw new LinkFormatError(`expected '<' at offset ${i}`);
    const close = text.indexOf('>', i + 1);
    if (close === -1) throw new LinkFormatError(`unterminated link target at offset ${i}`);
    const target = text.slice(i + 1, close);
    if (/[<\s]/.test(target)) throw new LinkFormatError(`invalid link target "${target}"`);
    i = close + 1;
    const attributes: Link['attributes'] = [];
    ws();
    while (text[i] === ';') {
      i++;
      ws();
      const m = /^[A-Za-z0-9!#$&+\-.^_`|~]+\*?/.exec(text.slice(i, i + 256));
      if (!m) throw new LinkFormatError(`expected attribute name at offset ${i}`);
      const name = m[0];
      i += name.length;
      ws();
      if (text[i] === '=') {
        i++;
        ws();
        if (text[i] === '"') {
          let v = '';
          i++;
          for (;;) {
            if (i >= n) throw new LinkFormatError('unterminated quoted attribute value');
            const c = text[i]!;
            if (c === '\\' && i + 1 < n) {
              v += text[i + 1];
              i += 2;
            } else if (c === '"') {
              i++;
              break;
            } else {
              v += c;
              i++;
            }
          }
          attributes.push([name, v]);
        } else {
          const vm = /^[^;,\s"]*/.exec(text.slice(i))!;
          attributes.push([name, vm[0]]);
          i += vm[0].length;
        }
      } else attributes.push([name, true]);
      ws();
    }
    links.push({ target, attributes });
    if (links.length > MAX_LINKS) throw new LinkFormatError(`more than ${MAX_LINKS} links`);
    ws();
    if (i >= n) return links;
    if (text[i] !== ',') throw new LinkFormatError(`expected ',' or ';' at offset ${i}`);
    i++;
  }
}

function quoteIfNeeded(name: string, v: string): string {
  // ct and sz are numeric tokens; everything else is quoted when not a plain token.
  if ((name === 'ct' || name === 'sz') && /^[0-9 ]+$/.test(v) && !v.includes(' ')) return v;
  return `"${v.replace(/["\\]/g, '\\$&')}"`;
}

const NAME_RE = /^[A-Za-z0-9!#$&+\-.^_`|~]+\*?$/;

/**
 * Serializes links to application/link-format. The output always parses back
 * to the same links: characters a target cannot hold (RFC 6690 §2: a
 * URI-reference between < and >, so no '<', '>' or blanks) are
 * percent-encoded, and an attribute name that is not a token throws
 * LinkFormatError.
 */
export function serializeLinkFormat(links: readonly Link[]): string {
  return links
    .map((l) => {
      let s = `<${l.target.replace(/[<>\s]/g, encodeURIComponent)}>`;
      for (const [name, v] of l.attributes) {
        if (name.length > 255 || !NAME_RE.test(name))
          throw new LinkFormatError(`invalid attribute name "${name}"`);
        s += v === true ? `;${name}` : `;${name}=${quoteIfNeeded(name, v)}`;
      }
      return s;
    })
    .join(',');
}

/**
 * RFC 6690 §4.1 filtering: `query` is a single "name=value" Uri-Query (value
 * may end in '*' for prefix match). `href` matches the target; rt/if/ct and
 * other space-separated relation types match any of their values.
 * Returns the links that match; all links when query is undefined.
 */
export function filterLinks(links: readonly Link[], query: string | undefined): Link[] {
  if (query === undefined || query === '') return [...links];
  const eq = query.indexOf('=');
  const name = eq === -1 ? query : query.slice(0, eq);
  const pattern = eq === -1 ? undefined : query.slice(eq + 1);
  const match = (v: string): boolean => {
    if (pattern === undefined) return true;
    if (pattern.endsWith('*')) return v.startsWith(pattern.slice(0, -1));
    return v === pattern;
  };
  return links.filter((l) => {
    if (name === 'href') return match(l.target);
    let found = false;
    for (const [n, v] of l.attributes) {
      if (n !== name) continue;
      if (v === true) {
        if (pattern === undefined || pattern === '' || pattern === '*') found = true;
        continue;
      }
      const values = name === 'rt' || name === 'if' || name === 'ct' || name === 'rel' ? v.split(/\s+/) : [v];
      if (values.some(match) || match(v)) found = true;
    }
    return found;
  });
}
