/**
 * The coapkit console page: a CoAP browser. It talks CoAP over WebSockets to
 * the console (client.ts), which forwards every request to the coap:// or
 * coaps:// URI given here; see README "coapkit console".
 */
import {
  ConsoleConnection,
  codeText,
  fromHex,
  Opt,
  readUint,
  type SideEvent,
  type WsMessage,
  type WsOption,
} from './client.js';
import { drawLadder, type LadderRow } from './ladder.js';
import { linkTree, parseLinks, type TreeNode } from './links.js';

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`#${id} missing`);
  return e as T;
};

const METHOD_CODES: Record<string, number> = { GET: 1, POST: 2, PUT: 3, DELETE: 4, FETCH: 5 };
const METHOD_NAMES = ['', 'GET', 'POST', 'PUT', 'DELETE', 'FETCH', 'PATCH', 'iPATCH'];
const CF_NAMES: Record<number, string> = {
  0: 'text/plain',
  40: 'application/link-format',
  41: 'application/xml',
  42: 'application/octet-stream',
  47: 'application/exi',
  50: 'application/json',
  60: 'application/cbor',
};
const OPTION_NAMES: Record<number, string> = {
  1: 'If-Match',
  4: 'ETag',
  5: 'If-None-Match',
  6: 'Observe',
  8: 'Location-Path',
  12: 'Content-Format',
  14: 'Max-Age',
  17: 'Accept',
  20: 'Location-Query',
  23: 'Block2',
  27: 'Block1',
  28: 'Size2',
  60: 'Size1',
};
const UINT_OPTIONS = new Set([6, 12, 14, 17, 28, 60]);
const STRING_OPTIONS = new Set([8, 20]);

const enc = new TextEncoder();

/** One request as the ladder panel keeps it. */
interface RequestRecord {
  title: string;
  sent: number;
  server: string;
  rows: LadderRow[];
}

const history: RequestRecord[] = [];
let shown: RequestRecord | undefined;

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/.well-known/coap${location.search}`;
const conn = new ConsoleConnection(wsUrl);
conn.onStatus = (s) => {
  const st = $('status');
  st.textContent = s;
  st.className = s === 'connected' ? 'ok' : 'bad';
};

function parseTarget(): URL | undefined {
  const raw = $<HTMLInputElement>('uri').value.trim();
  try {
    const u = new URL(raw);
    if (!/^coaps?(\+tcp|\+ws)?:$/.test(u.protocol)) throw new Error('scheme');
    return u;
  } catch {
    showError(`not a coap://, coaps:// (or +tcp, +ws) URI: ${raw}`);
    return undefined;
  }
}

function showError(text: string): void {
  $('response-code').textContent = text;
  $('response-code').className = 'code bad';
}

/** The DTLS credentials of the fields, for a coaps:// request (sent to the console only when they changed). */
function sendCredentials(u: URL): void {
  // coaps:// (DTLS), and coaps+tcp:// / coaps+ws:// (TLS: the certificate fields).
  if (!u.protocol.startsWith('coaps')) return;
  const value = (id: string) => $<HTMLTextAreaElement>(id).value;
  const mode = $<HTMLSelectElement>('dtls-mode').value;
  if (mode === 'cert') {
    conn.setCertificateCredentials({
      mode: 'cert',
      cert: value('cert-pem'),
      key: value('key-pem'),
      ca: value('ca-pem'),
    });
  } else if (mode === 'rpk') {
    conn.setCertificateCredentials({ mode: 'rpk', rpk: value('rpk-pem'), rpkTrust: value('rpk-trust') });
  } else {
    conn.setCredentials($<HTMLInputElement>('psk-identity').value, $<HTMLInputElement>('psk-key').value);
  }
}

function showDtlsMode(): void {
  const mode = $<HTMLSelectElement>('dtls-mode').value;
  for (const e of document.querySelectorAll<HTMLElement>('.psk-field')) e.hidden = mode !== 'psk';
  for (const e of document.querySelectorAll<HTMLElement>('.cert-field')) e.hidden = mode !== 'cert';
  for (const e of document.querySelectorAll<HTMLElement>('.rpk-field')) e.hidden = mode !== 'rpk';
  $('dtls-fields').hidden = mode === 'psk';
}

conn.onCredentials = (answer) => {
  const st = $('dtls-status');
  st.textContent =
    answer.error !== undefined ? `credentials: ${answer.error}` : `credentials: ${answer.summary}`;
  st.className = answer.error !== undefined ? 'bad' : 'ok';
};

/** Largest PEM file read into a field (the console takes 32 KiB characters a field). */
const MAX_PEM_FILE = 32 * 1024;

/** A chosen PEM file is read here, in the page (FileReader), into its text field: no path goes anywhere. */
function readPemFile(input: HTMLInputElement): void {
  const f = input.files?.[0];
  const target = $<HTMLTextAreaElement>(input.dataset.target ?? '');
  if (!f) return;
  const st = $('dtls-status');
  if (f.size > MAX_PEM_FILE) {
    st.textContent = `${f.name} is ${f.size} B: a PEM file here is at most ${MAX_PEM_FILE} B`;
    st.className = 'bad';
    input.value = '';
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    target.value = String(reader.result ?? '');
    input.value = '';
  };
  reader.onerror = () => {
    st.textContent = `cannot read ${f.name}: ${reader.error?.message ?? 'error'}`;
    st.className = 'bad';
  };
  reader.readAsText(f);
}

function formatOption(o: WsOption): string {
  const name = OPTION_NAMES[o.number] ?? `Option ${o.number}`;
  let v: string;
  if (UINT_OPTIONS.has(o.number)) {
    const n = readUint(o.value);
    v = o.number === 12 ? `${n} (${CF_NAMES[n] ?? '?'})` : String(n);
  } else if (STRING_OPTIONS.has(o.number)) v = new TextDecoder().decode(o.value);
  else v = `0x${Array.from(o.value, (b) => b.toString(16).padStart(2, '0')).join('')}`;
  return `${name}: ${v}`;
}

function bodyText(msg: WsMessage): string {
  if (msg.payload.length === 0) return '(no payload)';
  const cfOpt = msg.options.find((o) => o.number === Opt.ContentFormat);
  const cf = cfOpt ? readUint(cfOpt.value) : undefined;
  const textual = cf === undefined || cf === 0 || cf === 40 || cf === 41 || cf === 50;
  if (textual) {
    try {
      const t = new TextDecoder('utf-8', { fatal: true }).decode(msg.payload.subarray(0, 65536));
      return msg.payload.length > 65536 ? `${t}\n… (${msg.payload.length} bytes in all)` : t;
    } catch {
      // binary: hex below
    }
  }
  const head = Array.from(msg.payload.subarray(0, 256), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `${msg.payload.length} bytes: ${head}${msg.payload.length > 256 ? ' …' : ''}`;
}

let downloadUrl: string | undefined;

function showResponse(msg: WsMessage, rec: RequestRecord): void {
  const code = $('response-code');
  code.textContent = `${codeText(msg.code)}  ·  ${msg.payload.length} B  ·  ${(performance.now() - rec.sent).toFixed(1)} ms`;
  code.className = `code ${msg.code >> 5 === 2 ? 'ok' : 'bad'}`;
  $('response-options').textContent = msg.options.map(formatOption).join('\n');
  $('response-body').textContent = bodyText(msg);
  const slot = $('download');
  slot.textContent = '';
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = undefined;
  if (msg.payload.length > 0) {
    downloadUrl = URL.createObjectURL(new Blob([msg.payload.slice().buffer as ArrayBuffer]));
    const link = document.createElement('a');
    link.id = 'download-link';
    link.href = downloadUrl;
    link.download = rec.title.split('/').pop() || 'body';
    link.textContent = `Save body (${msg.payload.length} B)`;
    slot.appendChild(link);
  }
}

function setProgress(ev: SideEvent): void {
  const bytes = Number(ev.bytes);
  const total = ev.totalBytes === undefined ? undefined : Number(ev.totalBytes);
  const bar = $<HTMLProgressElement>('progress');
  const label = $('progress-text');
  $('progress-box').hidden = false;
  if (total !== undefined && total > 0) {
    const pct = Math.min(100, Math.floor((bytes / total) * 100));
    bar.max = total;
    bar.value = Math.min(bytes, total);
    label.textContent = `${ev.direction} ${bytes} / ${total} B (${pct}%), ${ev.blocks} blocks`;
  } else {
    bar.removeAttribute('value');
    label.textContent = `${ev.direction} ${bytes} B, ${ev.blocks} blocks`;
  }
}

function record(title: string, server: string, frameBytes: number): RequestRecord {
  const rec: RequestRecord = { title, sent: performance.now(), server, rows: [] };
  rec.rows.push({ t: 0, from: 0, to: 1, label: title, kind: 'ws', bytes: frameBytes });
  history.unshift(rec);
  if (history.length > 50) history.pop();
  const sel = $<HTMLSelectElement>('history');
  const opt = document.createElement('option');
  opt.textContent = title;
  sel.insertBefore(opt, sel.firstChild);
  while (sel.options.length > 50) sel.remove(sel.options.length - 1);
  sel.selectedIndex = 0;
  show(rec);
  return rec;
}

let redraw = 0;
function show(rec: RequestRecord): void {
  shown = rec;
  if (redraw !== 0) return;
  redraw = requestAnimationFrame(() => {
    redraw = 0;
    if (shown) drawLadder($('ladder') as unknown as SVGSVGElement, shown.rows, shown.server);
  });
}

function onSideEvent(rec: RequestRecord, ev: SideEvent): void {
  if (ev.type === 'step') {
    const dir = ev.dir as string;
    rec.rows.push({
      t: Number(ev.t),
      from: dir === 'in' ? 2 : 1,
      to: dir === 'out' ? 2 : 1,
      label: String(ev.label),
      kind: String(ev.kind),
      ...(typeof ev.detail === 'string' ? { detail: ev.detail } : {}),
      ...(typeof ev.bytes === 'number' ? { bytes: ev.bytes } : {}),
    });
  } else if (ev.type === 'progress') {
    setProgress(ev);
  } else if (ev.type === 'end' && typeof ev.error === 'string') {
    rec.rows.push({ t: Number(ev.ms), from: 1, to: 1, label: ev.error, kind: 'error' });
  }
  if (shown === rec) show(rec);
}

interface SendOptions {
  method: number;
  uri: URL;
  payload?: Uint8Array;
  contentFormat?: number;
  observe?: number;
  token?: Uint8Array;
  onResponse?: (msg: WsMessage, rec: RequestRecord) => void;
}

/** Sends one request through the console; resolves with its (first) response. */
function send(o: SendOptions): { token: string; done: Promise<WsMessage> } {
  sendCredentials(o.uri);
  const options: WsOption[] = [{ number: Opt.ProxyUri, value: enc.encode(o.uri.href) }];
  if (o.observe !== undefined)
    options.push({
      number: Opt.Observe,
      value: o.observe === 0 ? new Uint8Array(0) : Uint8Array.of(o.observe),
    });
  if (o.contentFormat !== undefined && o.payload && o.payload.length > 0) {
    options.push({
      number: Opt.ContentFormat,
      value:
        o.contentFormat === 0
          ? new Uint8Array(0)
          : o.contentFormat < 256
            ? Uint8Array.of(o.contentFormat)
            : Uint8Array.of(o.contentFormat >> 8, o.contentFormat & 255),
    });
  }
  const payload = o.payload ?? new Uint8Array(0);
  const title = `${METHOD_NAMES[o.method] ?? o.method}${o.observe === 0 ? ' (observe)' : ''} ${o.uri.pathname}${o.uri.search}`;
  const rec = record(title, o.uri.host, 0);
  let resolve!: (m: WsMessage) => void;
  const done = new Promise<WsMessage>((r) => {
    resolve = r;
  });
  let first = true;
  const { token, bytes } = conn.request(
    { code: o.method, options, payload },
    {
      onResponse: (msg, wireBytes) => {
        const obs = msg.options.find((x) => x.number === Opt.Observe);
        rec.rows.push({
          t: performance.now() - rec.sent,
          from: 1,
          to: 0,
          label: `${codeText(msg.code)}${obs ? ` Observe ${readUint(obs.value)}` : ''}`,
          kind: msg.code >> 5 === 2 ? 'ws' : 'error',
          bytes: wireBytes,
        });
        if (shown === rec) show(rec);
        o.onResponse?.(msg, rec);
        if (first) {
          first = false;
          resolve(msg);
        }
        if (!obs) conn.forget(token);
      },
      onEvent: (ev) => onSideEvent(rec, ev),
    },
    o.token,
  );
  rec.rows[0]!.bytes = bytes;
  return { token, done };
}

// ----------------------------------------------------------------- discovery

function renderNode(k: TreeNode, base: URL): HTMLLIElement {
  const li = document.createElement('li');
  const b = document.createElement('button');
  b.type = 'button';
  b.className = k.link ? 'res' : 'dir';
  b.textContent = k.name;
  b.dataset.path = k.path || '/';
  li.append(b);
  if (k.link) {
    const a = k.link.attrs;
    const tags = [a.rt && `rt=${a.rt}`, a.ct !== undefined && `ct=${a.ct}`, 'obs' in a && 'obs', a.title]
      .filter(Boolean)
      .join(' · ');
    if (tags) {
      const s = document.createElement('span');
      s.className = 'attrs';
      s.textContent = tags;
      b.title = tags;
      li.append(s);
    }
    b.onclick = () => {
      const u = new URL(base.href);
      u.pathname = k.path || '/';
      u.search = '';
      $<HTMLInputElement>('uri').value = u.href;
      for (const x of document.querySelectorAll('#tree button.selected')) x.classList.remove('selected');
      b.classList.add('selected');
    };
  }
  if (k.children.size > 0) li.appendChild(renderTree(k, base));
  return li;
}

function renderTree(node: TreeNode, base: URL): HTMLUListElement {
  const ul = document.createElement('ul');
  const kids = [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const k of kids) ul.appendChild(renderNode(k, base));
  return ul;
}

async function discover(): Promise<void> {
  const target = parseTarget();
  if (!target) return;
  const wk = new URL(target.href);
  wk.pathname = '/.well-known/core';
  wk.search = '';
  const { done } = send({ method: 1, uri: wk, onResponse: (m, rec) => showResponse(m, rec) });
  const msg = await done;
  const tree = $('tree');
  tree.textContent = '';
  if (msg.code >> 5 !== 2) {
    tree.textContent = `discovery failed: ${codeText(msg.code)} ${new TextDecoder().decode(msg.payload)}`;
    return;
  }
  const links = parseLinks(new TextDecoder().decode(msg.payload));
  const base = new URL(target.href);
  const root = linkTree(links);
  const ul = renderTree(root, base);
  // The root resource itself, without its children (listed below it).
  if (root.link) ul.prepend(renderNode({ ...root, children: new Map() }, base));
  tree.appendChild(ul);
  $('tree-count').textContent = `${links.length} resources`;
}

// ----------------------------------------------------------------- requests

let fileBytes: Uint8Array | undefined;

async function sendRequest(): Promise<void> {
  const uri = parseTarget();
  if (!uri) return;
  const method = METHOD_CODES[$<HTMLSelectElement>('method').value] ?? 1;
  const cfText = $<HTMLSelectElement>('content-format').value;
  const withBody = method === 2 || method === 3 || method === 5;
  const payload = withBody ? (fileBytes ?? enc.encode($<HTMLTextAreaElement>('payload').value)) : undefined;
  $('progress-box').hidden = true;
  $<HTMLProgressElement>('progress').value = 0;
  $('progress-text').textContent = '';
  if (payload && payload.length + 1024 > conn.maxMessageSize) {
    showError(`the body (${payload.length} B) is over the console's limit of ${conn.maxMessageSize} B`);
    return;
  }
  const code = $('response-code');
  code.textContent = 'waiting for the response…';
  code.className = 'code muted';
  send({
    method,
    uri,
    ...(payload ? { payload } : {}),
    ...(cfText !== '' ? { contentFormat: Number(cfText) } : {}),
    onResponse: (m, rec) => showResponse(m, rec),
  });
}

let observing: { token: string; uri: URL } | undefined;

function toggleObserve(): void {
  const button = $<HTMLButtonElement>('observe');
  if (observing) {
    // RFC 7641 §3.6: a GET with Observe: 1 and the same token deregisters.
    send({
      method: 1,
      uri: observing.uri,
      observe: 1,
      token: fromHex(observing.token),
      onResponse: (m, r) => showResponse(m, r),
    });
    observing = undefined;
    button.textContent = 'Observe';
    button.classList.remove('active');
    return;
  }
  const uri = parseTarget();
  if (!uri) return;
  $('notifications').textContent = '';
  const started = performance.now();
  const { token } = send({
    method: 1,
    uri,
    observe: 0,
    onResponse: (m, rec) => {
      showResponse(m, rec);
      const li = document.createElement('li');
      const obs = m.options.find((x) => x.number === Opt.Observe);
      li.textContent = `+${((performance.now() - started) / 1000).toFixed(2)} s  ${codeText(m.code)}${obs ? `  #${readUint(obs.value)}` : ''}  ${bodyText(m).slice(0, 200)}`;
      $('notifications').prepend(li);
      $('notification-count').textContent = String($('notifications').children.length);
    },
  });
  observing = { token, uri };
  button.textContent = 'Stop observing';
  button.classList.add('active');
}

// ----------------------------------------------------------------- wiring

$('discover').onclick = () => void discover();
$<HTMLSelectElement>('dtls-mode').onchange = () => showDtlsMode();
for (const id of ['cert-file', 'key-file', 'ca-file', 'rpk-file', 'rpk-trust-file']) {
  const input = $<HTMLInputElement>(id);
  input.onchange = () => readPemFile(input);
}
showDtlsMode();
$('send').onclick = () => void sendRequest();
$('observe').onclick = () => toggleObserve();
$<HTMLInputElement>('uri').onkeydown = (e) => {
  if (e.key === 'Enter') void sendRequest();
};
$<HTMLInputElement>('file').onchange = async () => {
  const f = $<HTMLInputElement>('file').files?.[0];
  fileBytes = f ? new Uint8Array(await f.arrayBuffer()) : undefined;
  $('file-info').textContent = f ? `${f.name}: ${fileBytes?.length ?? 0} B (sent instead of the text)` : '';
};
$('clear-file').onclick = () => {
  $<HTMLInputElement>('file').value = '';
  fileBytes = undefined;
  $('file-info').textContent = '';
};
$<HTMLSelectElement>('history').onchange = () => {
  const rec = history[$<HTMLSelectElement>('history').selectedIndex];
  if (rec) show(rec);
};
const params = new URLSearchParams(location.search);
const initial = params.get('uri');
if (initial) $<HTMLInputElement>('uri').value = initial;

conn.connect().catch((err: Error) => {
  $('status').textContent = err.message;
  $('status').className = 'bad';
});
