/** RFC 6690 link format, parsed for the resource tree (tolerant: a bad link is skipped). */

export interface PageLink {
  href: string;
  attrs: Record<string, string>;
}

/** Splits `</a>;rt="x",</b>;ct=0` into links. */
export function parseLinks(text: string): PageLink[] {
  const out: PageLink[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /[\s,]/.test(text[i]!)) i++;
    if (text[i] !== '<') break;
    const close = text.indexOf('>', i);
    if (close === -1) break;
    const link: PageLink = { href: text.slice(i + 1, close), attrs: {} };
    i = close + 1;
    while (text[i] === ';') {
      i++;
      let name = '';
      while (i < text.length && !/[=;,]/.test(text[i]!)) name += text[i++];
      let value = '';
      if (text[i] === '=') {
        i++;
        if (text[i] === '"') {
          i++;
          while (i < text.length && text[i] !== '"') {
            if (text[i] === '\\' && i + 1 < text.length) i++;
            value += text[i++];
          }
          i++;
        } else {
          while (i < text.length && !/[;,]/.test(text[i]!)) value += text[i++];
        }
      }
      if (name.trim() !== '') link.attrs[name.trim()] = value;
    }
    out.push(link);
  }
  return out;
}

export interface TreeNode {
  name: string;
  /** Set when a link points here. */
  link?: PageLink;
  /** The path from the root, `/a/b`. */
  path: string;
  children: Map<string, TreeNode>;
}

/** The links as a tree of path segments. */
export function linkTree(links: PageLink[]): TreeNode {
  const root: TreeNode = { name: '/', path: '', children: new Map() };
  for (const l of links) {
    let href = l.href;
    try {
      // Absolute links (coap://other/x) keep their path.
      if (/^[a-z][a-z0-9+.-]*:/i.test(href)) href = new URL(href).pathname;
    } catch {
      continue;
    }
    const segs = href.split('/').filter((s) => s !== '');
    let node = root;
    for (const s of segs) {
      let next = node.children.get(s);
      if (next === undefined) {
        next = { name: s, path: `${node.path}/${s}`, children: new Map() };
        node.children.set(s, next);
      }
      node = next;
    }
    node.link = l;
  }
  return root;
}
