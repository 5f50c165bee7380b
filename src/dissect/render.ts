/** Text (narrative) and JSON renderings of a DissectResult. */
import type { DnsRecord } from '../capture/dns.js';
import type { CoapMessageInfo } from './coap.js';
import type { DissectResult, FrameInfo } from './dissect.js';
import type { DtlsHandshake, DtlsRecord } from './dtls.js';
import type { ExpertInfo } from './expert.js';

export interface RenderOptions {
  color: boolean;
}

const ANSI = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36 } as const;
type Style = keyof typeof ANSI;

export function renderJson(result: DissectResult): string {
  return `${JSON.stringify(result, null, 2)}\n`;
}

export function renderText(result: DissectResult, options: RenderOptions = { color: false }): string {
  const c = (style: Style, s: string): string => (options.color ? `\x1b[${ANSI[style]}m${s}\x1b[0m` : s);
  const out: string[] = [];
  const frame = (n: number): FrameInfo | undefined => result.frames[n - 1];
  const t = (rel: number): string => rel.toFixed(6);
  const heading = (s: string): void => {
    out.push('');
    out.push(c('bold', s));
    out.push(c('bold', '='.repeat(s.length)));
  };

  const cap = result.capture;
  out.push(
    c(
      'bold',
      `Capture: ${cap.format} (${cap.byteOrder}${cap.precision ? `, ${cap.precision}second timestamps` : ''}), ${cap.frameCount} frame(s), link: ${cap.linkTypes.map((l) => `${l.name} (${l.type})`).join(', ') || 'none'}`,
    ),
  );
  if (cap.start) out.push(`Start: ${cap.start}`);
  if (result.error)
    out.push(c('red', `Capture error: ${result.error.message} — showing what was decoded before it`));

  // 1. DNS
  heading('1. Address resolution (DNS)');
  if (result.dns.length === 0) out.push('  (no DNS messages)');
  for (const n of result.dns) {
    const f = frame(n);
    if (!f?.dns) continue;
    const d = f.dns;
    out.push(
      `#${f.number} ${t(f.relTime)} ${endpoints(f)} ${c(d.isResponse ? 'green' : 'cyan', d.isResponse ? 'response' : 'query')} id 0x${d.id.toString(16).padStart(4, '0')}${d.isResponse ? ` ${d.rcodeName}` : ''}`,
    );
    for (const q of d.questions)
      out.push(`    question: ${q.name} ${q.typeName}${q.class !== 1 ? ` class ${q.class}` : ''}`);
    const rr = (label: string, r: DnsRecord): string =>
      `    ${label}: ${r.name} ${r.typeName}${r.type === 41 ? '' : ` ttl ${r.ttl}`} ${r.display}`;
    for (const r of d.answers) out.push(rr('answer', r));
    for (const r of d.authority) out.push(rr('authority', r));
    for (const r of d.additional) out.push(rr('additional', r));
    if (d.isResponse && d.answers.length === 0) out.push(c('dim', '    (no answer records)'));
    out.push(c('dim', `    bytes: ${layerBytes(f)}`));
  }

  // 2. DTLS
  heading('2. Secure channel (DTLS)');
  const seenSuites = new Map<string, number>();
  if (result.dtls.length === 0) out.push('  (no DTLS traffic)');
  for (const s of result.dtls) {
    out.push(c('bold', `Session ${s.id}: client ${s.client} ↔ server ${s.server}`));
    if (
      result.frames.some(
        (f) => f.dtls?.session === s.id && f.detectedBy !== undefined && f.detectedBy !== 'port',
      )
    )
      out.push(
        c(
          'dim',
          `  recognised as DTLS by content (not on 5684 or a --port): records cover each datagram exactly`,
        ),
      );
    if (s.cipherSuite) out.push(`  cipher suite: ${s.cipherSuite.name} (0x${hex4(s.cipherSuite.id)})`);
    if (s.version) out.push(`  version: ${s.version}`);
    if (s.resumed) out.push('  abbreviated handshake: resumes an earlier session (session id / ticket)');
    out.push(
      `  extended master secret: ${s.extendedMasterSecret ? 'yes' : 'no'}${s.encryptThenMac ? ', encrypt-then-MAC' : ''}`,
    );
    if (s.pskIdentity !== undefined) out.push(`  PSK identity: ${JSON.stringify(s.pskIdentity)}`);
    if (s.pskIdentityHint !== undefined)
      out.push(`  PSK identity hint: ${JSON.stringify(s.pskIdentityHint)}`);
    const st = s.decryption.status;
    out.push(
      `  decryption: ${c(st === 'decrypted' ? 'green' : st === 'nothing-encrypted' ? 'dim' : 'red', `${st} (${s.decryption.detail})`)}`,
    );
    for (const fl of s.flights) {
      const dir = fl.fromClient ? 'client → server' : 'server → client';
      out.push(fl.kind === 'handshake' ? `  Flight ${fl.number} (${dir})` : `  Alert (${dir})`);
      for (const n of fl.frames) {
        const f = frame(n);
        if (!f?.dtls) continue;
        out.push(`    #${f.number} ${t(f.relTime)} ${f.dtls.records.length} record(s) in one datagram`);
        for (const r of f.dtls.records) out.push(...renderRecord(r, c, seenSuites, f.number));
        if (f.dtls.error) out.push(c('red', `      ${f.dtls.error}`));
        out.push(c('dim', `      bytes: ${layerBytes(f)}`));
      }
    }
    out.push(`  application data records: ${s.applicationDataRecords}`);
  }

  // 3. CoAP
  heading('3. CoAP messages, by exchange');
  const msgs = result.coap.messages;
  if (msgs.length === 0) out.push('  (no CoAP messages decoded)');
  const firstMsg = msgs[0];
  const firstFrame = firstMsg ? frame(firstMsg.frame) : undefined;
  if (firstMsg && firstFrame && firstFrame.coap?.length === 1) {
    out.push(c('bold', `The first CoAP message (#${firstFrame.number}), layer by layer:`));
    out.push(...encapsulation(firstFrame, firstMsg, result));
  }
  for (const s of result.dtls) {
    if (s.applicationDataRecords > 0 && s.decryption.status !== 'decrypted') {
      out.push(
        c(
          'yellow',
          `  ${s.applicationDataRecords} application data record(s) of DTLS session ${s.id} not decrypted: ${s.decryption.detail}`,
        ),
      );
    }
  }
  // Server ports of the plain CoAP found by content: the receivers of CON/NON requests.
  const contentPorts = new Set<number>();
  const fallbackPorts = new Set<number>();
  for (const m of msgs) {
    const f = frame(m.frame);
    if (m.transport !== 'udp' || f?.udp === undefined || f.detectedBy === 'port') continue;
    if (m.kind === 'request' && m.type <= 1) contentPorts.add(f.udp.dstPort);
    else fallbackPorts.add(Math.min(f.udp.srcPort, f.udp.dstPort));
  }
  if (contentPorts.size === 0) for (const p of fallbackPorts) contentPorts.add(p);
  if (contentPorts.size > 0)
    out.push(
      c(
        'dim',
        `  CoAP recognised by content on UDP port(s) ${[...contentPorts].sort((a, b) => a - b).join(', ')} (5683, 5684 and --port are decoded by port)`,
      ),
    );
  for (const st of result.tcp?.streams ?? []) {
    const extra = [
      st.sawSyn ? '' : 'started before the capture',
      st.retransmissions ? `${st.retransmissions} retransmitted/overlapping segment(s)` : '',
      st.outOfOrder ? `${st.outOfOrder} out of order` : '',
      st.gaps ? `${st.gapBytes} B missing in ${st.gaps} gap(s)` : '',
      st.incompleteFrame
        ? `capture ends inside a frame (${st.incompleteFrame.have}${st.incompleteFrame.size !== undefined ? ` of ${st.incompleteFrame.size}` : ''} B)`
        : '',
    ].filter((x) => x !== '');
    out.push(
      c(
        'dim',
        `  TCP stream ${st.id}: ${st.src} → ${st.dst}, ${st.bytes} B in order, ${st.coapFrames} RFC 8323 frame(s)${st.closed ? ', closed' : ''}${extra.length > 0 ? `; ${extra.join(', ')}` : ''}`,
      ),
    );
  }
  const shownBlocks = new Set<number>();
  for (const ex of result.coap.exchanges) {
    if (ex.blockTransfer !== undefined) {
      if (shownBlocks.has(ex.blockTransfer)) continue;
      shownBlocks.add(ex.blockTransfer);
      const bt = result.coap.blockTransfers[ex.blockTransfer - 1];
      if (bt === undefined) continue;
      out.push('');
      out.push(
        c(
          'bold',
          `Block-wise transfer ${bt.id}: ${bt.method} ${bt.uriPath || '/'} (${bt.option}, ${bt.blocks} block(s) of ${bt.blockSize} B, ${bt.bytes} payload bytes, ${bt.complete ? 'complete' : 'incomplete'}) ${bt.client} → ${bt.server}`,
        ),
      );
      for (const id of bt.exchanges) {
        const e = result.coap.exchanges[id - 1];
        if (e) renderExchange(e, '  ');
      }
      continue;
    }
    out.push('');
    renderExchange(ex, '');
  }

  function renderExchange(ex: DissectResult['coap']['exchanges'][number], indent: string): void {
    const title = ex.method
      ? `Exchange ${ex.id}: ${ex.method}${ex.kind === 'signaling' || ex.kind === 'empty' ? '' : ` ${ex.uriPath || '/'}`} [${ex.kind}] ${ex.client} → ${ex.server}${ex.transport === 'dtls' ? ' (DTLS)' : ex.transport === 'tcp' ? ' (TCP)' : ''}`
      : `Exchange ${ex.id}: [${ex.kind}] ${ex.client} ↔ ${ex.server}`;
    out.push(indent + c('bold', title));
    for (const { index, role } of ex.messages) {
      const m = msgs[index];
      if (m) out.push(...renderMessage(m, role, `${indent}  `));
    }
  }

  function renderMessage(m: CoapMessageInfo, role: string, indent: string): string[] {
    const lines: string[] = [];
    const color: Style =
      m.type === 3
        ? 'red'
        : m.kind === 'request'
          ? 'cyan'
          : m.code >= 128
            ? 'red'
            : m.code >= 96
              ? 'yellow'
              : 'green';
    const arrow = `${m.src} → ${m.dst}`;
    lines.push(
      `${indent}#${m.frame} ${t(m.relTime)} ${c(color, m.summary)}  ${c('dim', `${arrow} — ${role}`)}`,
    );
    const d = `${indent}    `;
    for (const o of m.options) lines.push(`${d}${o.name} (${o.number}, ${o.format}): ${o.display}`);
    if (m.payload.length > 0) {
      lines.push(
        `${d}payload (${m.contentFormat ? m.contentFormat.name : 'no Content-Format'}, ${m.payload.length} B, ${m.payload.kind}): ${m.payload.preview}`,
      );
    }
    if (m.oscore) lines.push(...oscoreLines(m, d));
    const f = frame(m.frame);
    for (const e of f?.expert ?? []) if (e.coapMessage === m.index) lines.push(expertLine(e, d, c));
    if (m.tcp) {
      const segs = m.tcp.segments;
      lines.push(
        c(
          'dim',
          `${d}RFC 8323 frame ${m.tcp.frameLength} B (frame header ${m.tcp.frameHeaderLength} + token ${m.tokenLength} + options ${m.optionsLength}${m.payload.length > 0 ? ' + marker 1' : ''} + payload ${m.payload.length}), TCP stream ${m.tcp.stream}${segs.length > 1 ? `, reassembled from frames ${segs.map((n) => `#${n}`).join(', ')}` : ''}`,
        ),
      );
      return lines;
    }
    const hdr = `CoAP header 4 + token ${m.tokenLength} + options ${m.optionsLength}${m.payload.length > 0 ? ' + marker 1' : ''} = ${m.headerLength} B, payload ${m.payload.length} B`;
    lines.push(c('dim', `${d}${hdr}${f ? ` | frame: ${layerBytes(f)}` : ''}`));
    return lines;
  }

  // Everything else
  // TCP segments of the CoAP-over-TCP streams are summed up per stream, not listed one by one.
  const other = result.frames.filter(
    (f) =>
      f.protocol !== 'dns' && f.protocol !== 'dtls' && f.protocol !== 'coap' && f.tcp?.stream === undefined,
  );
  const errors = result.frames.filter((f) => f.errors.length > 0);
  if (other.length > 0 || errors.length > 0 || result.warnings.length > 0)
    heading('4. Other frames and problems');
  for (const f of other) out.push(`#${f.number} ${t(f.relTime)} ${f.summary}`);
  for (const f of errors) for (const e of f.errors) out.push(c('yellow', `#${f.number}: ${e}`));
  for (const w of result.warnings) out.push(c('yellow', `warning: ${w}`));

  // Expert info, all in one place (as Wireshark's Expert Information dialog).
  const expert = result.frames.flatMap((f) => f.expert.map((e) => ({ f, e })));
  if (expert.length > 0) {
    const count = (sev: string): number => expert.filter((x) => x.e.severity === sev).length;
    heading(
      `5. Expert info: ${count('error')} error(s), ${count('warning')} warning(s), ${count('note')} note(s)`,
    );
    for (const { f, e } of expert) out.push(expertLine(e, `#${f.number} `, c));
  }
  return `${out.join('\n')}\n`;
}

/** The encapsulation chain of one frame carrying one CoAP message, with the bytes each layer adds. */
function encapsulation(f: FrameInfo, m: CoapMessageInfo, result: DissectResult): string[] {
  const rows: [string, string, number][] = [];
  const b = f.bytes;
  if (f.link) rows.push([f.link.name, f.link.src ? `from ${f.link.src}` : '', b.link ?? 0]);
  if (f.ip) {
    rows.push([
      `IPv${f.ip.version}`,
      `${f.ip.src} → ${f.ip.dst}, TTL/hop limit ${f.ip.ttl}${f.ip.optionsLength ? `, ${f.ip.optionsLength} B options` : ''}`,
      b.ip ?? 0,
    ]);
  }
  if (f.udp)
    rows.push(['UDP', `port ${f.udp.srcPort} → ${f.udp.dstPort}, length ${f.udp.length}`, b.udp ?? 0]);
  if (f.tcp)
    rows.push([
      'TCP',
      `port ${f.tcp.srcPort} → ${f.tcp.dstPort}, seq ${f.tcp.seq}, [${f.tcp.flags.join(', ')}]`,
      b.tcp ?? 0,
    ]);
  if (f.dtls) {
    const rec = f.dtls.records.find((r) => r.contentType === 23);
    const suite = result.dtls[f.dtls.session - 1]?.cipherSuite?.name ?? 'unknown suite';
    if (rec) {
      rows.push([
        'DTLS record',
        `${rec.contentTypeName}, epoch ${rec.epoch}, seq ${rec.seq}`,
        rec.headerLength,
      ]);
      rows.push([
        'DTLS protection',
        `explicit nonce + authentication tag (${suite})`,
        rec.protectionOverhead ?? 0,
      ]);
    }
  }
  rows.push([
    'CoAP',
    m.tcp
      ? `RFC 8323 frame of ${m.tcp.frameLength} B, ${m.codeName}: frame header ${m.tcp.frameHeaderLength} + token ${m.tokenLength} + options ${m.optionsLength}${m.payload.length ? ' + marker 1' : ''}`
      : `${m.typeName} MID=${m.messageId} ${m.codeName}: header 4 + token ${m.tokenLength} + options ${m.optionsLength}${m.payload.length ? ' + marker 1' : ''}`,
    m.headerLength,
  ]);
  rows.push(['payload', m.contentFormat ? m.contentFormat.name : 'no Content-Format', m.payload.length]);
  const lines = rows.map(([layer, what, n]) => `  ${layer.padEnd(32)} ${String(n).padStart(5)} B  ${what}`);
  const total = f.capturedLength;
  const pct = total > 0 ? Math.round((m.payload.length / total) * 100) : 0;
  lines.push(
    `  ${'= on the wire'.padEnd(32)} ${String(total).padStart(5)} B  of which ${m.payload.length} B (${pct}%) are application payload`,
  );
  return lines;
}

const SEVERITY_STYLE: Record<string, Style> = { error: 'red', warning: 'yellow', note: 'cyan' };

/** "[expert warning] observe.not-fresh: ... (RFC 7641 §3.4, §4.4)". */
function expertLine(e: ExpertInfo, prefix: string, c: (s: Style, x: string) => string): string {
  return `${prefix}${c(SEVERITY_STYLE[e.severity] ?? 'yellow', `[expert ${e.severity}] ${e.rule}: ${e.message}`)} (${e.rfc})`;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

function endpoints(f: FrameInfo): string {
  if (!f.ip || !f.udp) return '';
  const e = (ip: string, port: number): string => (f.ip?.version === 6 ? `[${ip}]:${port}` : `${ip}:${port}`);
  return `${e(f.ip.src, f.udp.srcPort)} → ${e(f.ip.dst, f.udp.dstPort)}`;
}

/** "link 16 + IPv4 20 + UDP 8 + DTLS 13+24 + CoAP 11 + payload 87 = 179". */
export function layerBytes(f: FrameInfo): string {
  const b = f.bytes;
  const parts: string[] = [];
  if (b.link !== undefined) parts.push(`link ${b.link}`);
  if (b.ip !== undefined) parts.push(`IPv${f.ip?.version ?? ''} ${b.ip}`);
  if (b.udp !== undefined) parts.push(`UDP ${b.udp}`);
  if (b.tcp !== undefined) parts.push(`TCP ${b.tcp}`);
  if (b.tcpData) parts.push(`TCP stream data ${b.tcpData}`);
  if (b.dtlsHeaders !== undefined) parts.push(`DTLS headers ${b.dtlsHeaders}`);
  if (b.dtlsProtection) parts.push(`DTLS nonce+tag ${b.dtlsProtection}`);
  if (b.dtlsContent) parts.push(`DTLS handshake/CCS/alert ${b.dtlsContent}`);
  if (b.dns !== undefined) parts.push(`DNS ${b.dns}`);
  if (b.coapHeader !== undefined) parts.push(`CoAP header ${b.coapHeader}`);
  if (b.coapPayload) parts.push(`payload ${b.coapPayload}`);
  if (b.other) parts.push(`undecoded ${b.other}`);
  const reassembled = f.ip?.reassembledFrom;
  const note = reassembled
    ? ` (IP datagram reassembled from frames ${reassembled.map((n) => `#${n}`).join(', ')})`
    : '';
  return `${parts.join(' + ')} = ${b.frame} B${note}`;
}

function renderRecord(
  r: DtlsRecord,
  c: (s: Style, x: string) => string,
  seenSuites: Map<string, number>,
  frameNumber: number,
): string[] {
  const lines: string[] = [];
  const head = `      record ${r.contentTypeName} (${r.contentType}) ${r.versionName} epoch ${r.epoch} seq ${r.seq}${r.cid !== undefined ? ` cid ${r.cid}` : ''}${r.innerContentTypeName !== undefined ? ` (inner ${r.innerContentTypeName})` : ''} length ${r.length}${r.encrypted ? (r.decrypted ? ' [decrypted]' : ' [encrypted]') : ''}`;
  lines.push(head);
  if (r.note) lines.push(c('yellow', `        ${r.note}`));
  if (r.alert)
    lines.push(
      c('red', `        alert: ${r.alert.levelName} ${r.alert.descriptionName} (${r.alert.description})`),
    );
  if (r.changeCipherSpec)
    lines.push('        change_cipher_spec: following records of this sender use the new keys');
  for (const h of r.handshake ?? []) lines.push(...renderHandshake(h, c, seenSuites, frameNumber));
  return lines;
}

function renderHandshake(
  h: DtlsHandshake,
  c: (s: Style, x: string) => string,
  seenSuites: Map<string, number>,
  frameNumber: number,
): string[] {
  const p = '        ';
  const lines = [
    `${p}${c('bold', h.name)} (${h.msgType}) length ${h.length} message_seq ${h.messageSeq} fragment ${h.fragmentOffset}+${h.fragmentLength}${h.fragmented ? ' [fragment]' : ''}${h.reassembled ? ' [reassembled]' : ''}${h.retransmission ? ' [retransmission]' : ''}`,
  ];
  const q = `${p}  `;
  if (h.versionName) lines.push(`${q}version: ${h.versionName}`);
  if (h.random) lines.push(`${q}random: ${h.random}`);
  if (h.sessionId) lines.push(`${q}session id: ${h.sessionId}`);
  if (h.cookie !== undefined) lines.push(`${q}cookie: ${h.cookie || '(empty)'}`);
  if (h.cipherSuites) {
    const key = h.cipherSuites.map((s) => s.id).join(',');
    const before = seenSuites.get(key);
    if (before !== undefined && before !== frameNumber) {
      lines.push(`${q}offered cipher suites (${h.cipherSuites.length}): same as in #${before}`);
    } else {
      seenSuites.set(key, frameNumber);
      lines.push(`${q}offered cipher suites (${h.cipherSuites.length}):`);
      for (const s of h.cipherSuites) lines.push(`${q}  0x${hex4(s.id)} ${s.name}`);
    }
  }
  if (h.cipherSuite) lines.push(`${q}chosen cipher suite: 0x${hex4(h.cipherSuite.id)} ${h.cipherSuite.name}`);
  if (h.extensions) {
    lines.push(`${q}extensions (${h.extensions.length}):`);
    for (const e of h.extensions)
      lines.push(`${q}  ${e.name} (${e.type}), ${e.length} B${e.detail ? `: ${e.detail}` : ''}`);
  }
  if (h.pskIdentityHint !== undefined)
    lines.push(`${q}PSK identity hint: ${JSON.stringify(h.pskIdentityHint)}`);
  if (h.pskIdentity !== undefined) lines.push(`${q}PSK identity: ${JSON.stringify(h.pskIdentity)}`);
  if (h.curve) lines.push(`${q}curve: ${h.curve.name}`);
  for (const cert of h.certificates ?? []) lines.push(`${q}certificate: ${cert}`);
  if (h.certificates?.length === 0) lines.push(`${q}certificate: (none)`);
  if (h.signatureAlgorithm !== undefined)
    lines.push(
      `${q}signature algorithm: 0x${hex4(h.signatureAlgorithm)}${h.signatureAlgorithm === 0x0403 ? ' ecdsa_secp256r1_sha256' : ''}`,
    );
  if (h.ticketLength !== undefined) {
    lines.push(`${q}session ticket: ${h.ticketLength} B, lifetime hint ${h.ticketLifetimeHint ?? 0} s`);
  }
  if (h.publicKey) lines.push(`${q}public key: ${h.publicKey}`);
  if (h.verifyData) {
    const v =
      h.verified === undefined ? '' : h.verified ? c('green', ' (verified)') : c('red', ' (MISMATCH)');
    lines.push(`${q}verify_data: ${h.verifyData}${v}`);
  }
  if (h.error) lines.push(c('red', `${q}malformed: ${h.error}`));
  return lines;
}

/** The OSCORE fields of a message and its decrypted inner message. */
function oscoreLines(m: CoapMessageInfo, d: string): string[] {
  const o = m.oscore!;
  const fields = [
    o.kid !== undefined ? `kid ${o.kid === '' ? '(empty)' : `0x${o.kid}`}` : undefined,
    o.kidContext !== undefined ? `kid context 0x${o.kidContext}` : undefined,
    o.partialIv !== undefined ? `Partial IV 0x${o.partialIv}` : undefined,
  ].filter((x) => x !== undefined);
  const out = [
    `${d}OSCORE${fields.length > 0 ? `: ${fields.join(', ')}` : ''}${o.note ? ` (${o.note})` : ''}`,
  ];
  const inner = o.inner;
  if (inner === undefined) return out;
  const path = inner.uriPath ? ` ${inner.uriPath}${inner.uriQuery ? `?${inner.uriQuery}` : ''}` : '';
  out.push(`${d}inner (decrypted): ${inner.codeName}${path}`);
  for (const x of inner.options) out.push(`${d}  ${x.name} (${x.number}, ${x.format}): ${x.display}`);
  if (inner.payload.length > 0)
    out.push(`${d}  payload (${inner.payload.length} B, ${inner.payload.kind}): ${inner.payload.preview}`);
  return out;
}
