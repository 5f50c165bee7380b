import { Buffer } from 'node:buffer';
import type { CoapMessage, CoapOption } from '../codec/message.js';
import { getOption, getOptions, getUintOption } from '../codec/options.js';
import { describeCode, type MessageType } from '../constants/codes.js';
import { OptionNumber } from '../constants/options.js';
import type { Peer } from '../transport/transport.js';

/** A response as the client hands it to the application. */
export class CoapResponse {
  readonly code: number;
  readonly type: MessageType;
  readonly messageId: number;
  readonly token: Buffer;
  readonly options: CoapOption[];
  payload: Buffer;

  constructor(
    message: CoapMessage,
    readonly peer: Peer,
    /** True when the response came piggybacked on the ACK. */
    readonly piggybacked: boolean,
    /** Time from the (first) request transmission to this response, in ms. */
    readonly rttMs: number,
  ) {
    this.code = message.code;
    this.type = message.type;
    this.messageId = message.messageId;
    // Copy: the message's buffers are views into a datagram.
    this.token = Buffer.from(message.token);
    this.options = message.options.map((o) => ({ number: o.number, value: Buffer.from(o.value) }));
    this.payload = Buffer.from(message.payload);
  }

  /** "2.05 Content". */
  get codeText(): string {
    return describeCode(this.code);
  }

  /** True for 2.xx responses. */
  get ok(): boolean {
    return this.code >> 5 === 2;
  }

  get contentFormat(): number | undefined {
    return getUintOption(this.options, OptionNumber.ContentFormat);
  }

  get etag(): Buffer | undefined {
    return getOption(this.options, OptionNumber.ETag);
  }

  get maxAge(): number {
    return getUintOption(this.options, OptionNumber.MaxAge) ?? 60;
  }

  /** The Observe option (RFC 7641): the notification's sequence number, if any. */
  get observe(): number | undefined {
    return getUintOption(this.options, OptionNumber.Observe);
  }

  get locationPath(): string[] {
    return getOptions(this.options, OptionNumber.LocationPath).map((b) => b.toString('utf8'));
  }

  option(n: number): Buffer | undefined {
    return getOption(this.options, n);
  }

  optionAll(n: number): Buffer[] {
    return getOptions(this.options, n);
  }

  text(): string {
    return this.payload.toString('utf8');
  }

  json(): unknown {
    return JSON.parse(this.text());
  }
}
