/**
 * OSCORE in `coapkit dissect`: every message with an OSCORE option gets its
 * option decoded (kid, kid context, Partial IV); with security contexts given
 * (`--oscore FILE`, either side's file), requests are decrypted and so are
 * the responses of their exchanges, and the inner message is shown beside the
 * outer one. Nothing is checked for replay: this is a view of a capture.
 */
import { Buffer } from 'node:buffer';
import type { CoapOption } from '../codec/message.js';
import type { MessageType } from '../constants/codes.js';
import type { OscoreContext } from '../oscore/context.js';
import { type PeekedRequest, peekOption, peekRequest, peekResponse } from '../oscore/peek.js';
import type { PlainMessage } from '../oscore/protect.js';
import { type CoapExchange, type CoapMessageInfo, describeMessage, type OscoreMessageInfo } from './coap.js';

function optionsOf(m: CoapMessageInfo): CoapOption[] {
  return m.options.map((o) => ({ number: o.number, value: Buffer.from(o.raw, 'hex') }));
}

function describeInner(m: CoapMessageInfo, inner: PlainMessage): OscoreMessageInfo['inner'] {
  const d = describeMessage(
    {
      type: m.type as MessageType,
      code: inner.code,
      messageId: m.messageId,
      token: Buffer.from(m.token, 'hex'),
      options: inner.options,
      payload: inner.payload ?? Buffer.alloc(0),
    },
    0,
    { index: m.index, frame: m.frame, relTime: m.relTime, src: m.src, dst: m.dst, transport: m.transport },
  );
  return {
    codeName: d.codeName,
    uriPath: d.uriPath,
    ...(d.uriQuery !== undefined ? { uriQuery: d.uriQuery } : {}),
    options: d.options,
    payload: d.payload,
    summary: d.summary,
  };
}

/** Fills `oscore` of the protected messages; decrypts with `contexts` when given. */
export function dissectOscore(
  messages: CoapMessageInfo[],
  exchanges: CoapExchange[],
  contexts: readonly OscoreContext[],
): void {
  for (const m of messages) {
    const opt = peekOption(optionsOf(m));
    if (opt === undefined) continue;
    const info: OscoreMessageInfo = {};
    if (typeof opt === 'string') info.note = `malformed OSCORE option: ${opt}`;
    else {
      if (opt.kid !== undefined) info.kid = opt.kid.toString('hex');
      if (opt.kidContext !== undefined) info.kidContext = opt.kidContext.toString('hex');
      if (opt.partialIv !== undefined) info.partialIv = opt.partialIv.toString('hex');
      if (contexts.length === 0)
        info.note = 'encrypted (give the security context with --oscore FILE to decrypt)';
    }
    m.oscore = info;
  }
  if (contexts.length === 0) return;
  for (const ex of exchanges) {
    let req: PeekedRequest | undefined;
    for (const { index } of ex.messages) {
      const m = messages[index]!;
      if (m.oscore === undefined || m.oscore.note?.startsWith('malformed')) continue;
      const payload = Buffer.from(m.payload.hex, 'hex');
      if (m.kind === 'request') {
        const r = peekRequest(contexts, optionsOf(m), payload);
        if (typeof r === 'string') {
          m.oscore.note = r;
          req = undefined;
          continue;
        }
        req = r;
        m.oscore.inner = describeInner(m, r.inner);
      } else if (m.kind === 'response') {
        if (req === undefined) {
          m.oscore.note = 'its request is not in the capture or was not decrypted';
          continue;
        }
        const r = peekResponse(req, optionsOf(m), payload);
        if (typeof r === 'string') m.oscore.note = r;
        else m.oscore.inner = describeInner(m, r);
      }
      const inner = m.oscore.inner;
      if (inner !== undefined) {
        const path = inner.uriPath ? ` ${inner.uriPath}${inner.uriQuery ? `?${inner.uriQuery}` : ''}` : '';
        m.summary = `${m.summary} [OSCORE: ${inner.codeName}${path}]`;
      }
    }
  }
}
