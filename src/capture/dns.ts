/** DNS message decoder (RFC 1035, 3596, 6891). Pure, no I/O. */
import { CaptureFormatError } from '../errors.js';
import { ipv4ToString, ipv6ToString, need, toHex, u8, u16be, u32be } from './bytes.js';

export const DNS_TYPE_NAMES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  41: 'OPT',
  64: 'SVCB',
  65: 'HTTPS',
  255: 'ANY',
};

export const DNS_RCODE_NAMES: Record<number, string> = {
  0: 'NoError',
  1: 'FormErr',
  2: 'ServFail',
  3: 'NXDomain',
  4: 'NotImp',
  5: 'Refused',
};

export interface DnsQuestion {
  name: string;
  type: number;
  typeName: string;
  class: number;
}

export interface DnsSoa {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export interface DnsRecord {
  name: string;
  type: number;
  typeName: string;
  /** Class (for OPT: the requestor's UDP payload size). */
  class: number;
  ttl: number;
  rdLength: number;
  /** Decoded data: address / name / SOA / MX / TXT strings; hex for other types. */
  data: string | DnsSoa | { preference: number; exchange: string } | string[];
  /** Human-readable form of data. */
  display: string;
}

export interface DnsMessage {
  id: number;
  isResponse: boolean;
  opcode: number;
  authoritative: boolean;
  truncated: boolean;
  recursionDesired: boolean;
  recursionAvailable: boolean;
  rcode: number;
  rcodeName: string;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authority: DnsRecord[];
  additional: DnsRecord[];
}

const MAX_POINTER_JUMPS = 64;

/**
 * Reads a possibly-compressed domain name. Pointer loops and overlong names
 * throw CaptureFormatError. Returns the name and the offset after it in the
 * original (unjumped) stream.
 */
export function readName(msg: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let o = offset;
  let next = -1;
  let jumps = 0;
  let total = 0;
  for (;;) {
    const len = u8(msg, o, 'DNS name');
    if (len === 0) {
      o += 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      const ptr = u16be(msg, o, 'DNS name pointer') & 0x3fff;
      if (next < 0) next = o + 2;
      if (++jumps > MAX_POINTER_JUMPS || ptr >= msg.length) {
        throw new CaptureFormatError('DNS name compression loop or bad pointer');
      }
      o = ptr;
      continue;
    }
    if (kind !== 0) throw new CaptureFormatError(`unsupported DNS label type 0x${kind.toString(16)}`);
    need(msg, o + 1, len, 'DNS label');
    total += len + 1;
    if (total > 255) throw new CaptureFormatError('DNS name longer than 255 bytes');
    let label = '';
    for (let i = 0; i < len; i++) {
      const c = msg[o + 1 + i] as number;
      label +=
        c === 0x2e || c === 0x5c
          ? `\\${String.fromCharCode(c)}`
          : c > 0x20 && c < 0x7f
            ? String.fromCharCode(c)
            : `\\${c.toString().padStart(3, '0')}`;
    }
    labels.push(label);
    o += 1 + len;
  }
  return { name: labels.length === 0 ? '<Root>' : labels.join('.'), next: next >= 0 ? next : o };
}

function readRecord(msg: Uint8Array, offset: number): { rr: DnsRecord; next: number } {
  const { name, next: afterName } = readName(msg, offset);
  need(msg, afterName, 10, 'DNS resource record');
  const type = u16be(msg, afterName);
  const cls = u16be(msg, afterName + 2);
  const ttl = u32be(msg, afterName + 4);
  const rdLength = u16be(msg, afterName + 8);
  const rd = afterName + 10;
  need(msg, rd, rdLength, 'DNS record data');
  const rdata = msg.subarray(rd, rd + rdLength);
  let data: DnsRecord['data'];
  let display: string;
  switch (type) {
    case 1:
      if (rdLength !== 4) throw new CaptureFormatError(`bad A record length ${rdLength}`);
      data = ipv4ToString(rdata);
      display = data;
      break;
    case 28:
      if (rdLength !== 16) throw new CaptureFormatError(`bad AAAA record length ${rdLength}`);
      data = ipv6ToString(rdata);
      display = data;
      break;
    case 2:
    case 5:
    case 12:
      data = readName(msg, rd).name;
      display = data;
      break;
    case 6: {
      const m = readName(msg, rd);
      const r = readName(msg, m.next);
      need(msg, r.next, 20, 'SOA record');
      const soa: DnsSoa = {
        mname: m.name,
        rname: r.name,
        serial: u32be(msg, r.next),
        refresh: u32be(msg, r.next + 4),
        retry: u32be(msg, r.next + 8),
        expire: u32be(msg, r.next + 12),
        minimum: u32be(msg, r.next + 16),
      };
      data = soa;
      display = `${soa.mname} ${soa.rname} serial ${soa.serial} refresh ${soa.refresh} retry ${soa.retry} expire ${soa.expire} minimum ${soa.minimum}`;
      break;
    }
    case 15: {
      const preference = u16be(msg, rd);
      const exchange = readName(msg, rd + 2).name;
      data = { preference, exchange };
      display = `${preference} ${exchange}`;
      break;
    }
    case 16: {
      const strings: string[] = [];
      let p = 0;
      while (p < rdata.length) {
        const l = rdata[p] as number;
        need(rdata, p + 1, l, 'TXT string');
        strings.push(new TextDecoder().decode(rdata.subarray(p + 1, p + 1 + l)));
        p += 1 + l;
      }
      data = strings;
      display = strings.map((s) => JSON.stringify(s)).join(' ');
      break;
    }
    case 41:
      data = toHex(rdata);
      display = `udp payload size ${cls}, extended rcode ${ttl >>> 24}, version ${(ttl >>> 16) & 0xff}, DO ${(ttl >>> 15) & 1}${rdLength ? `, options ${data}` : ''}`;
      break;
    default:
      data = toHex(rdata);
      display = data;
  }
  return {
    rr: {
      name,
      type,
      typeName: DNS_TYPE_NAMES[type] ?? `TYPE${type}`,
      class: cls,
      ttl,
      rdLength,
      data,
      display,
    },
    next: rd + rdLength,
  };
}

/** Decodes a DNS message (as carried in one UDP datagram). */
export function decodeDns(msg: Uint8Array): DnsMessage {
  need(msg, 0, 12, 'DNS header');
  const flags = u16be(msg, 2);
  const counts = [u16be(msg, 4), u16be(msg, 6), u16be(msg, 8), u16be(msg, 10)] as const;
  const rcode = flags & 0x0f;
  const out: DnsMessage = {
    id: u16be(msg, 0),
    isResponse: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0x0f,
    authoritative: (flags & 0x0400) !== 0,
    truncated: (flags & 0x0200) !== 0,
    recursionDesired: (flags & 0x0100) !== 0,
    recursionAvailable: (flags & 0x0080) !== 0,
    rcode,
    rcodeName: DNS_RCODE_NAMES[rcode] ?? `RCODE${rcode}`,
    questions: [],
    answers: [],
    authority: [],
    additional: [],
  };
  let o = 12;
  for (let i = 0; i < counts[0]; i++) {
    const { name, next } = readName(msg, o);
    need(msg, next, 4, 'DNS question');
    const type = u16be(msg, next);
    out.questions.push({
      name,
      type,
      typeName: DNS_TYPE_NAMES[type] ?? `TYPE${type}`,
      class: u16be(msg, next + 2),
    });
    o = next + 4;
  }
  const sections = [out.answers, out.authority, out.additional];
  for (let s = 0; s < 3; s++) {
    const list = sections[s] as DnsRecord[];
    const n = counts[s + 1] as number;
    for (let i = 0; i < n; i++) {
      const { rr, next } = readRecord(msg, o);
      list.push(rr);
      o = next;
    }
  }
  return out;
}

/** One-line summary like Wireshark's Info column. */
export function summarizeDns(m: DnsMessage): string {
  const q = m.questions.map((x) => `${x.typeName} ${x.name}`).join(', ');
  if (!m.isResponse) return `query 0x${m.id.toString(16).padStart(4, '0')} ${q}`;
  const rrs = [...m.answers, ...m.authority].map((r) =>
    r.type === 6 ? `SOA ${(r.data as DnsSoa).mname}` : `${r.typeName} ${r.display}`,
  );
  const rc = m.rcode !== 0 ? ` ${m.rcodeName}` : '';
  return `response 0x${m.id.toString(16).padStart(4, '0')}${rc} ${q}${rrs.length ? ` → ${rrs.join(', ')}` : ' (no answer)'}`;
}
