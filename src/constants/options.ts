/** Option numbers (RFC 7252 §5.10 and §12.2, plus RFC 7641, 7959, 7967, 8613, 9175). */
export const OptionNumber = {
  IfMatch: 1,
  UriHost: 3,
  ETag: 4,
  IfNoneMatch: 5,
  Observe: 6,
  UriPort: 7,
  LocationPath: 8,
  Oscore: 9,
  UriPath: 11,
  ContentFormat: 12,
  MaxAge: 14,
  UriQuery: 15,
  HopLimit: 16,
  Accept: 17,
  QBlock1: 19,
  LocationQuery: 20,
  EdhocOption: 21,
  Block2: 23,
  Block1: 27,
  Size2: 28,
  QBlock2: 31,
  ProxyUri: 35,
  ProxyScheme: 39,
  Size1: 60,
  Echo: 252,
  NoResponse: 258,
  RequestTag: 292,
} as const;

export type OptionFormat = 'empty' | 'opaque' | 'uint' | 'string';

export interface OptionDefinition {
  readonly number: number;
  readonly name: string;
  readonly format: OptionFormat;
  readonly minLength: number;
  readonly maxLength: number;
  readonly repeatable: boolean;
}

const defs: OptionDefinition[] = [
  { number: 1, name: 'If-Match', format: 'opaque', minLength: 0, maxLength: 8, repeatable: true },
  { number: 3, name: 'Uri-Host', format: 'string', minLength: 1, maxLength: 255, repeatable: false },
  { number: 4, name: 'ETag', format: 'opaque', minLength: 1, maxLength: 8, repeatable: true },
  { number: 5, name: 'If-None-Match', format: 'empty', minLength: 0, maxLength: 0, repeatable: false },
  { number: 6, name: 'Observe', format: 'uint', minLength: 0, maxLength: 3, repeatable: false },
  { number: 7, name: 'Uri-Port', format: 'uint', minLength: 0, maxLength: 2, repeatable: false },
  { number: 8, name: 'Location-Path', format: 'string', minLength: 0, maxLength: 255, repeatable: true },
  { number: 9, name: 'OSCORE', format: 'opaque', minLength: 0, maxLength: 255, repeatable: false },
  { number: 11, name: 'Uri-Path', format: 'string', minLength: 0, maxLength: 255, repeatable: true },
  { number: 12, name: 'Content-Format', format: 'uint', minLength: 0, maxLength: 2, repeatable: false },
  { number: 14, name: 'Max-Age', format: 'uint', minLength: 0, maxLength: 4, repeatable: false },
  { number: 15, name: 'Uri-Query', format: 'string', minLength: 0, maxLength: 255, repeatable: true },
  { number: 16, name: 'Hop-Limit', format: 'uint', minLength: 1, maxLength: 1, repeatable: false },
  { number: 17, name: 'Accept', format: 'uint', minLength: 0, maxLength: 2, repeatable: false },
  { number: 19, name: 'Q-Block1', format: 'uint', minLength: 0, maxLength: 3, repeatable: false },
  { number: 20, name: 'Location-Query', format: 'string', minLength: 0, maxLength: 255, repeatable: true },
  { number: 21, name: 'EDHOC', format: 'empty', minLength: 0, maxLength: 0, repeatable: false },
  { number: 23, name: 'Block2', format: 'uint', minLength: 0, maxLength: 3, repeatable: false },
  { number: 27, name: 'Block1', format: 'uint', minLength: 0, maxLength: 3, repeatable: false },
  { number: 28, name: 'Size2', format: 'uint', minLength: 0, maxLength: 4, repeatable: false },
  { number: 31, name: 'Q-Block2', format: 'uint', minLength: 0, maxLength: 3, repeatable: false },
  { number: 35, name: 'Proxy-Uri', format: 'string', minLength: 1, maxLength: 1034, repeatable: false },
  { number: 39, name: 'Proxy-Scheme', format: 'string', minLength: 1, maxLength: 255, repeatable: false },
  { number: 60, name: 'Size1', format: 'uint', minLength: 0, maxLength: 4, repeatable: false },
  { number: 252, name: 'Echo', format: 'opaque', minLength: 1, maxLength: 40, repeatable: false },
  { number: 258, name: 'No-Response', format: 'uint', minLength: 0, maxLength: 1, repeatable: false },
  { number: 292, name: 'Request-Tag', format: 'opaque', minLength: 0, maxLength: 8, repeatable: true },
];

const BY_NUMBER = new Map<number, OptionDefinition>(defs.map((d) => [d.number, d]));
const BY_NAME = new Map<string, OptionDefinition>(defs.map((d) => [d.name.toLowerCase(), d]));

export function optionDefinition(n: number): OptionDefinition | undefined {
  return BY_NUMBER.get(n);
}

export function optionByName(name: string): OptionDefinition | undefined {
  return BY_NAME.get(name.toLowerCase());
}

/** "Uri-Path" for 11, "Option 2049" for unregistered numbers. */
export function optionName(n: number): string {
  return BY_NUMBER.get(n)?.name ?? `Option ${n}`;
}

/** §5.4.6: odd option numbers are critical. */
export const isCritical = (n: number): boolean => (n & 1) === 1;
/** §5.4.6: bit 1 set means unsafe to forward. */
export const isUnsafe = (n: number): boolean => (n & 2) === 2;
/** §5.4.6: NoCacheKey when bits 2-4 are all set (n & 0x1e === 0x1c). */
export const isNoCacheKey = (n: number): boolean => (n & 0x1e) === 0x1c;

export const ALL_OPTION_DEFINITIONS: readonly OptionDefinition[] = defs;
