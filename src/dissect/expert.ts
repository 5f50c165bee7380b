/**
 * Expert info for the dissector: protocol violations and oddities seen in a
 * capture, in the spirit of Wireshark's expert info. Every rule names the RFC
 * section it rests on. Pure: takes the decoded messages and their grouping.
 */

import { optionDefinition } from '../constants/options.js';
import type { BlockTransfer, BlockValue, CoapExchange, CoapMessageInfo } from './coap.js';

/** Wireshark's levels: error (a MUST broken), warning (likely a problem), note (worth knowing). */
export type ExpertSeverity = 'error' | 'warning' | 'note';

/** One protocol violation (or remark) the dissector found in a frame, like Wireshark's expert info. */
export interface ExpertInfo {
  /** How serious it is. */
  severity: ExpertSeverity;
  /** Stable rule id, e.g. "coap.ack-carries-request". */
  rule: string;
  /** What was seen, with the frame numbers involved. */
  message: string;
  /** "RFC 7252 §4.2". */
  rfc: string;
  /** Index into result.coap.messages of the message it is about (absent for undecodable messages). */
  coapMessage?: number;
}

export interface ExpertRule {
  id: string;
  severity: ExpertSeverity;
  rfc: string;
  /** One-line statement of the rule. */
  title: string;
}

/** Every rule dissect checks (also the documentation table). */
export const EXPERT_RULES: readonly ExpertRule[] = [
  {
    id: 'coap.empty-with-content',
    severity: 'error',
    rfc: 'RFC 7252 §4.1',
    title:
      'a message with code 0.00 (Empty) carries nothing after the Message ID; anything else is a message format error',
  },
  {
    id: 'coap.ack-carries-request',
    severity: 'error',
    rfc: 'RFC 7252 §4.2',
    title: 'an Acknowledgement carries a response or is Empty, never a request',
  },
  {
    id: 'coap.rst-not-empty',
    severity: 'error',
    rfc: 'RFC 7252 §4.2',
    title: 'a Reset message is Empty',
  },
  {
    id: 'coap.non-empty-message',
    severity: 'error',
    rfc: 'RFC 7252 §4.3',
    title: 'a Non-confirmable message carries a request or a response, it is never Empty',
  },
  {
    id: 'coap.ack-of-non',
    severity: 'error',
    rfc: 'RFC 7252 §4.3',
    title: 'a Non-confirmable message is not acknowledged (it may only be rejected with a Reset)',
  },
  {
    id: 'coap.mid-reused',
    severity: 'error',
    rfc: 'RFC 7252 §4.5',
    title:
      'a Message ID is not reused towards the same endpoint within EXCHANGE_LIFETIME (247 s; NON_LIFETIME 145 s for NON) for a different message',
  },
  {
    id: 'coap.reserved-code',
    severity: 'error',
    rfc: 'RFC 7252 §3',
    title: 'code classes 1, 3, 6 and 7 are reserved',
  },
  {
    id: 'coap.option-length',
    severity: 'warning',
    rfc: 'RFC 7252 §5.4.3',
    title: 'an option value outside its length range is treated like an unrecognized option',
  },
  {
    id: 'coap.option-repeated',
    severity: 'warning',
    rfc: 'RFC 7252 §5.4.5',
    title: 'a non-repeatable option that occurs more than once is treated like an unrecognized option',
  },
  {
    id: 'coap.late-empty-ack',
    severity: 'note',
    rfc: 'RFC 7252 §5.2.2',
    title:
      'an empty ACK seen after its separate response: the datagrams were reordered, the response already acknowledged the request',
  },
  {
    id: 'coap.piggybacked-after-empty-ack',
    severity: 'error',
    rfc: 'RFC 7252 §5.2.2',
    title: 'once a server has sent an empty ACK, the response is sent separately, never piggybacked',
  },
  {
    id: 'coap.unmatched-response',
    severity: 'warning',
    rfc: 'RFC 7252 §5.3.2',
    title: 'a response echoes the token of its request; this one matches no request in the capture',
  },
  {
    id: 'observe.not-fresh',
    severity: 'warning',
    rfc: 'RFC 7641 §3.4, §4.4',
    title:
      'Observe sequence numbers of notifications increase; a notification that is not newer than the last one is discarded by the client',
  },
  {
    id: 'block.continue-without-block1',
    severity: 'error',
    rfc: 'RFC 7959 §2.9.1',
    title: '2.31 Continue acknowledges a non-final block of a Block1 request and carries Block1',
  },
  {
    id: 'block.out-of-sequence',
    severity: 'warning',
    rfc: 'RFC 7959 §2.4, §2.5',
    title: 'a block-wise transfer proceeds block after block (the server answers 4.08 to a Block1 gap)',
  },
  {
    id: 'block.size-mismatch',
    severity: 'warning',
    rfc: 'RFC 7959 §2.2',
    title:
      'every block but the last carries exactly the block size (a multiple of 1024 for BERT); the last no more',
  },
];

const RULES = new Map(EXPERT_RULES.map((r) => [r.id, r]));

function finding(rule: string, message: string, coapMessage?: number): ExpertInfo {
  const r = RULES.get(rule);
  if (r === undefined) throw new Error(`unknown expert rule ${rule}`);
  const e: ExpertInfo = { severity: r.severity, rule, message, rfc: r.rfc };
  if (coapMessage !== undefined) e.coapMessage = coapMessage;
  return e;
}

/** The finding for bytes that failed to decode because an Empty message carried more (RFC 7252 §4.1). */
export function emptyWithContent(bytes: Uint8Array): ExpertInfo | undefined {
  if (bytes.length <= 4 || (bytes[0] as number) >> 6 !== 1 || bytes[1] !== 0) return undefined;
  const type = ['CON', 'NON', 'ACK', 'RST'][((bytes[0] as number) >> 4) & 3];
  return finding(
    'coap.empty-with-content',
    `${type} with code 0.00 (Empty) has ${bytes.length - 4} byte(s) after the Message ID (token, options or payload): a message format error, the receiver rejects it`,
  );
}

const CON_LIFETIME = 247; // EXCHANGE_LIFETIME, RFC 7252 §4.8.2
const NON_LIFETIME = 145;
const OBSERVE_WINDOW = 1 << 23;
const OBSERVE_MAX_AGE = 128; // seconds, RFC 7641 §3.4

const contentKey = (m: CoapMessageInfo): string =>
  `${m.type}|${m.code}|${m.token}|${m.options.map((o) => `${o.number}=${o.raw}`).join(',')}|${m.payload.hex}`;

/** Runs every CoAP rule; returns the findings in message order. */
export function coapExpert(
  messages: readonly CoapMessageInfo[],
  exchanges: readonly CoapExchange[],
  blockTransfers: readonly BlockTransfer[],
): ExpertInfo[] {
  const out: ExpertInfo[] = [];
  const add = (m: CoapMessageInfo, rule: string, text: string): void => {
    out.push(finding(rule, text, m.index));
  };
  // CON / NON messages by sender, receiver and Message ID (the sender's MID space).
  const sent = new Map<string, CoapMessageInfo>();
  for (const m of messages) {
    const type = m.typeName;
    // Message-level rules (RFC 7252 §3, §4).
    if (m.type === 2 && m.kind === 'request')
      add(
        m,
        'coap.ack-carries-request',
        `ACK carries a request (${m.codeName}); an ACK carries a response or is Empty`,
      );
    if (m.type === 3 && m.code !== 0)
      add(
        m,
        'coap.rst-not-empty',
        `RST carries code ${m.codeName}; a Reset is Empty (code 0.00, no token, options or payload)`,
      );
    if (m.type === 1 && m.code === 0)
      add(
        m,
        'coap.non-empty-message',
        'NON message is Empty (code 0.00); a NON carries a request or a response',
      );
    if (m.kind === 'other')
      add(
        m,
        'coap.reserved-code',
        `code ${m.codeText} is in reserved class ${m.code >> 5} (0 request, 2/4/5 response)`,
      );
    const counts = new Map<number, number>();
    // Signaling options (RFC 8323 §5) are numbered per signaling code: not RFC 7252 options.
    for (const o of m.kind === 'signaling' ? [] : m.options) {
      counts.set(o.number, (counts.get(o.number) ?? 0) + 1);
      const def = optionDefinition(o.number);
      const len = o.raw.length / 2;
      if (def && (len < def.minLength || len > def.maxLength)) {
        add(
          m,
          'coap.option-length',
          `${def.name} (${o.number}) is ${len} byte(s), outside ${def.minLength}-${def.maxLength}; ${o.number & 1 ? 'critical: a request is answered 4.02 Bad Option, a response rejected' : 'elective: it is ignored'}`,
        );
      }
    }
    for (const [n, c] of counts) {
      const def = optionDefinition(n);
      if (def && !def.repeatable && c > 1)
        add(m, 'coap.option-repeated', `${def.name} (${n}) occurs ${c} times but is not repeatable`);
    }
    // Block sizes (RFC 7959 §2.2): Block1 in requests, Block2 in responses describe the payload.
    const blk = m.kind === 'request' ? m.block1 : m.kind === 'response' ? m.block2 : undefined;
    if (blk && m.payload.length > 0) {
      const name = m.kind === 'request' ? 'Block1' : 'Block2';
      const n = m.payload.length;
      if (blk.szx === 7) {
        if (blk.more && n % 1024 !== 0)
          add(
            m,
            'block.size-mismatch',
            `BERT ${name} block ${blk.num} with M=1 carries ${n} bytes, not a multiple of 1024`,
          );
      } else if (blk.more && n !== blk.size) {
        add(
          m,
          'block.size-mismatch',
          `${name} block ${blk.num} with M=1 carries ${n} bytes, the block size is ${blk.size}`,
        );
      } else if (!blk.more && n > blk.size) {
        add(
          m,
          'block.size-mismatch',
          `last ${name} block ${blk.num} carries ${n} bytes, more than the block size ${blk.size}`,
        );
      }
    }
    // Message ID reuse (RFC 7252 §4.5): only CON and NON Message IDs are the sender's own.
    if (m.type === 0 || m.type === 1) {
      const key = `${m.src}|${m.dst}|${m.messageId}`;
      const prev = sent.get(key);
      if (prev !== undefined) {
        const life = prev.type === 0 ? CON_LIFETIME : NON_LIFETIME;
        if (m.relTime - prev.relTime <= life && contentKey(prev) !== contentKey(m)) {
          add(
            m,
            'coap.mid-reused',
            `${type} MID=${m.messageId} reuses the Message ID of #${prev.frame} (${prev.typeName} ${prev.codeName}, ${(m.relTime - prev.relTime).toFixed(3)} s earlier) with different content; the receiver takes it for a duplicate`,
          );
        }
      }
      sent.set(key, m);
    }
    // ACK / RST: what they acknowledge.
    if (m.type === 2) {
      const target = sent.get(`${m.dst}|${m.src}|${m.messageId}`);
      if (target?.type === 1)
        add(
          m,
          'coap.ack-of-non',
          `ACK MID=${m.messageId} acknowledges the NON message #${target.frame}; a NON is never acknowledged`,
        );
    }
  }

  for (const ex of exchanges) {
    const list = ex.messages.map((x) => ({ m: messages[x.index] as CoapMessageInfo, role: x.role }));
    const req = list[0]?.m.kind === 'request' ? list[0].m : undefined;
    let emptyAck: CoapMessageInfo | undefined;
    let separate: CoapMessageInfo | undefined;
    let lastObs: { value: number; t: number; frame: number } | undefined;
    for (const { m, role } of list) {
      if (role === 'response without request') {
        const mid = m.type === 2 ? sent.get(`${m.dst}|${m.src}|${m.messageId}`) : undefined;
        add(
          m,
          'coap.unmatched-response',
          mid?.kind === 'request'
            ? `${m.codeName} acknowledges request #${mid.frame} by MID but its token ${m.token || '(empty)'} differs from the request's ${mid.token || '(empty)'}`
            : `${m.codeName} with token ${m.token || '(empty)'} matches no request in the capture (or the capture started after the request)`,
        );
      }
      if (req === undefined) continue;
      if (m.kind === 'empty' && m.type === 2 && role.startsWith('empty ACK')) {
        if (separate)
          add(
            m,
            'coap.late-empty-ack',
            `empty ACK for request #${req.frame} seen after its separate response #${separate.frame}: the datagrams were reordered; the response already acknowledged the request`,
          );
        emptyAck ??= m;
      }
      if (m.kind === 'response' && role !== 'retransmission') {
        if (role.startsWith('separate response') || role.startsWith('notification')) separate ??= m;
        if (role === 'piggybacked response' && emptyAck)
          add(
            m,
            'coap.piggybacked-after-empty-ack',
            `piggybacked ${m.codeName} after the empty ACK #${emptyAck.frame} for the same request #${req.frame}`,
          );
        if (m.code === 95) {
          if (!m.block1)
            add(
              m,
              'block.continue-without-block1',
              `2.31 Continue without a Block1 option (request #${req.frame})`,
            );
          else if (!req.block1?.more)
            add(
              m,
              'block.continue-without-block1',
              `2.31 Continue answers request #${req.frame}, which ${req.block1 ? 'sent its last block (M=0)' : 'has no Block1 option'}`,
            );
        }
        if (m.observe !== undefined && ex.kind === 'observe') {
          const v = m.observe;
          if (lastObs !== undefined) {
            const v1 = lastObs.value;
            const fresh =
              (v1 < v && v - v1 < OBSERVE_WINDOW) ||
              (v1 > v && v1 - v > OBSERVE_WINDOW) ||
              m.relTime > lastObs.t + OBSERVE_MAX_AGE;
            if (!fresh)
              add(
                m,
                'observe.not-fresh',
                `notification Observe=${v} is not newer than Observe=${v1} (#${lastObs.frame}); the client discards it as stale`,
              );
            else lastObs = { value: v, t: m.relTime, frame: m.frame };
          } else lastObs = { value: v, t: m.relTime, frame: m.frame };
        }
      }
    }
  }

  // Block order inside each transfer (RFC 7959 §2.4 Block2, §2.5 Block1): by byte offset,
  // so that a change of block size is not taken for a gap.
  for (const bt of blockTransfers) {
    let expected: number | undefined;
    for (const id of bt.exchanges) {
      const ex = exchanges[id - 1];
      if (ex === undefined) continue;
      const msgs = ex.messages.map((x) => messages[x.index] as CoapMessageInfo);
      const req = msgs[0];
      const resp = msgs.find((x) => x.kind === 'response');
      const blk: BlockValue | undefined =
        bt.option === 'Block1' ? req?.block1 : (resp?.block2 ?? req?.block2);
      const at = bt.option === 'Block1' ? req : (resp ?? req);
      if (blk === undefined || at === undefined) continue;
      const offset = blk.num * blk.size;
      if (expected !== undefined && offset !== expected) {
        add(
          at,
          'block.out-of-sequence',
          `${bt.option} block ${blk.num} (byte ${offset}) of ${bt.method} ${bt.uriPath || '/'} where byte ${expected} comes next${bt.option === 'Block1' ? '; the server answers 4.08 Request Entity Incomplete' : ''}`,
        );
      }
      // A block that got no successful answer may be sent again: keep waiting for it.
      const ok = resp !== undefined && resp.code >> 5 === 2;
      if (ok) expected = offset + (blk.szx === 7 ? Math.max(at.payload.length, 1024) : blk.size);
    }
  }
  out.sort((a, b) => (a.coapMessage ?? 0) - (b.coapMessage ?? 0));
  return out;
}
