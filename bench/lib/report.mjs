// Table and SVG chart rendering (no dependencies).

/** @param {number} n */
export function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return 'n/a';
  const a = Math.abs(n);
  if (a >= 100) return Math.round(n).toLocaleString('en-US');
  if (a >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** @param {number} bytes */
export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return 'n/a';
  const a = Math.abs(bytes);
  if (a >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  if (a >= 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${Math.round(bytes)} B`;
}

/** @param {number} us */
export function fmtUs(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return 'n/a';
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${Math.round(us)} us`;
}

/**
 * Renders rows as a fixed-width text table (also valid GitHub markdown).
 * @param {string[]} header @param {string[][]} rows
 */
export function renderTable(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells) => `| ${cells.map((c, i) => (c ?? '').padEnd(widths[i] ?? 0)).join(' | ')} |`;
  const sep = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const COLORS = {
  coapkit: '#2b7bb9',
  coaps: '#1d5a8a',
  bare: '#8c8c8c',
  libcoap: '#e08a1e',
  'node-coap': '#c0392b',
  'coap-packet': '#c0392b',
};

/**
 * A horizontal bar chart panel.
 * @param {{ title: string, unit: (v: number) => string, groups: { label: string, bars: { key: string, label: string, value: number | null }[] }[] }} panel
 * @param {number} y0 @param {number} width
 */
function barPanel(panel, y0, width) {
  const labelW = 190;
  const barH = 16;
  const gap = 4;
  const groupGap = 14;
  const maxV = Math.max(1, ...panel.groups.flatMap((g) => g.bars.map((b) => b.value ?? 0)));
  const plotW = width - labelW - 110;
  let y = y0 + 28;
  const parts = [`<text x="10" y="${y0 + 16}" class="title">${esc(panel.title)}</text>`];
  for (const g of panel.groups) {
    parts.push(`<text x="10" y="${y + 11}" class="group">${esc(g.label)}</text>`);
    y += 16;
    for (const b of g.bars) {
      const v = b.value;
      const w = v === null || Number.isNaN(v) ? 0 : Math.max(1, (v / maxV) * plotW);
      parts.push(
        `<text x="${labelW - 6}" y="${y + 12}" class="label" text-anchor="end">${esc(b.label)}</text>`,
      );
      if (w > 0) {
        parts.push(
          `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${COLORS[b.key] ?? '#555'}" rx="2"/>`,
        );
      }
      const text = v === null || Number.isNaN(v) ? 'n/a' : panel.unit(v);
      parts.push(`<text x="${(labelW + w + 6).toFixed(1)}" y="${y + 12}" class="value">${esc(text)}</text>`);
      y += barH + gap;
    }
    y += groupGap;
  }
  return { svg: parts.join('\n'), height: y - y0 };
}

/**
 * @param {{ title: string, subtitle: string, panels: Parameters<typeof barPanel>[0][] }} chart
 */
export function renderSvg(chart) {
  const width = 760;
  let y = 52;
  const bodies = [];
  for (const p of chart.panels) {
    const { svg, height } = barPanel(p, y, width);
    bodies.push(svg);
    y += height + 6;
  }
  const height = y + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" role="img" aria-labelledby="chart-title">
<title id="chart-title">${esc(chart.title)}: ${esc(chart.panels.map((p) => p.title).join('; '))}</title>
<style>
.h1 { font-size: 17px; font-weight: bold; fill: #222; }
.sub { font-size: 11px; fill: #666; }
.title { font-size: 14px; font-weight: bold; fill: #222; }
.group { font-size: 12px; font-style: italic; fill: #444; }
.label { font-size: 12px; fill: #333; }
.value { font-size: 12px; fill: #222; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="22" class="h1">${esc(chart.title)}</text>
<text x="10" y="40" class="sub">${esc(chart.subtitle)}</text>
${bodies.join('\n')}
</svg>
`;
}
