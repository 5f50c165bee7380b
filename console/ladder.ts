/**
 * A request's life as a ladder diagram (SVG): the page, the console's proxy
 * and the CoAP server as three vertical lines, one arrow or note per row,
 * in order, with the time of each step. The steps between proxy and server
 * come from the console's diagnostics events (the same `coapkit:*` channels
 * `--trace` prints); the page adds its own WebSocket request and response.
 */

export type Column = 0 | 1 | 2;

export interface LadderRow {
  /** ms since the request was sent by the page (steps from the proxy: since it got it). */
  t: number;
  from: Column;
  /** Same as `from`: a note on that line. */
  to: Column;
  label: string;
  detail?: string;
  /** coap, retransmit, dtls, dns, error, match, ws. */
  kind: string;
  bytes?: number;
}

const SVG = 'http://www.w3.org/2000/svg';
const X = [120, 400, 680] as const;
const NAMES = ['page (browser)', 'coapkit console (proxy)', 'CoAP server'];
const ROW = 30;
const TOP = 46;

function el<K extends keyof SVGElementTagNameMap>(
  name: K,
  attrs: Record<string, string | number>,
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function text(x: number, y: number, s: string, cls: string, anchor = 'middle'): SVGTextElement {
  const t = el('text', { x, y, class: cls, 'text-anchor': anchor });
  t.textContent = s;
  return t;
}

/** Rows kept at each end of a long exchange (a block-wise transfer of many blocks). */
const KEEP = 24;

/** A long ladder keeps its beginning and end; the middle becomes one note (as --trace mutes middle blocks). */
export function foldRows(rows: readonly LadderRow[]): readonly LadderRow[] {
  if (rows.length <= KEEP * 2 + 8) return rows;
  const head = rows.slice(0, KEEP);
  const tail = rows.slice(rows.length - KEEP);
  const middle = rows.slice(KEEP, rows.length - KEEP);
  const arrows = middle.filter((r) => r.from !== r.to).length;
  const fold: LadderRow = {
    t: middle[0]!.t,
    from: 1,
    to: 1,
    kind: 'fold',
    label: `… ${middle.length} more steps (${arrows} messages) until ${middle[middle.length - 1]!.t.toFixed(1)} ms …`,
  };
  return [...head, fold, ...tail];
}

/** Draws the rows into `svg` (replacing what was there). */
export function drawLadder(svg: SVGSVGElement, all: readonly LadderRow[], serverName: string): void {
  const rows = foldRows(all);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const height = TOP + Math.max(rows.length, 1) * ROW + 20;
  svg.setAttribute('viewBox', `0 0 800 ${height}`);
  svg.setAttribute('height', String(height));
  const defs = el('defs', {});
  for (const kind of ['coap', 'retransmit', 'dtls', 'error', 'ws']) {
    const m = el('marker', {
      id: `arrow-${kind}`,
      viewBox: '0 0 10 10',
      refX: 10,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: 'auto-start-reverse',
    });
    m.appendChild(el('path', { d: 'M0,0 L10,5 L0,10 z', class: `head-${kind}` }));
    defs.appendChild(m);
  }
  svg.appendChild(defs);
  const names = [NAMES[0]!, NAMES[1]!, serverName || NAMES[2]!];
  names.forEach((n, i) => {
    svg.appendChild(text(X[i]!, 18, n, 'col-name'));
    svg.appendChild(el('line', { x1: X[i]!, y1: 26, x2: X[i]!, y2: height - 8, class: 'lifeline' }));
  });
  rows.forEach((r, i) => {
    const y = TOP + i * ROW + 10;
    const g = el('g', { class: `row kind-${r.kind}` });
    const title = el('title', {});
    title.textContent = `${r.label}${r.detail ? `\n${r.detail}` : ''}${r.bytes !== undefined ? `\n${r.bytes} B on the wire` : ''}`;
    g.appendChild(title);
    g.appendChild(text(4, y + 4, `${r.t.toFixed(1)} ms`, 'time', 'start'));
    if (r.from === r.to) {
      const x = X[r.from]!;
      const label = text(x + 10, y + 4, r.label, 'note-text', 'start');
      g.appendChild(el('rect', { x: x - 4, y: y - 8, width: 8, height: 16, class: 'note-mark' }));
      g.appendChild(label);
    } else {
      const x1 = X[r.from]!;
      const x2 = X[r.to]!;
      const kind = ['coap', 'retransmit', 'dtls', 'error', 'ws'].includes(r.kind) ? r.kind : 'coap';
      g.appendChild(
        el('line', {
          x1,
          y1: y,
          x2,
          y2: y,
          class: `arrow arrow-${kind}`,
          'marker-end': `url(#arrow-${kind})`,
        }),
      );
      const label = r.bytes !== undefined ? `${r.label}  ·  ${r.bytes} B` : r.label;
      g.appendChild(text((x1 + x2) / 2, y - 5, label, 'arrow-text'));
    }
    svg.appendChild(g);
  });
}
