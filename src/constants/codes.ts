/** Message types (RFC 7252 §3). */
export const MessageType = { CON: 0, NON: 1, ACK: 2, RST: 3 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];
export const MESSAGE_TYPE_NAMES = ['CON', 'NON', 'ACK', 'RST'] as const;

/** Builds a code byte from class and detail: code(2, 5) === 0x45 (2.05). */
export function code(cls: number, detail: number): number {
  return ((cls & 0x07) << 5) | (detail & 0x1f);
}

/** Method codes (RFC 7252 §12.1.1, RFC 8132). */
export const Method = {
  GET: 0x01,
  POST: 0x02,
  PUT: 0x03,
  DELETE: 0x04,
  FETCH: 0x05,
  PATCH: 0x06,
  iPATCH: 0x07,
} as const;
export type MethodName = keyof typeof Method;

/** Response codes (RFC 7252 §12.1.2 and later registrations). */
export const ResponseCode = {
  Created: 0x41,
  Deleted: 0x42,
  Valid: 0x43,
  Changed: 0x44,
  Content: 0x45,
  Continue: 0x5f,
  BadRequest: 0x80,
  Unauthorized: 0x81,
  BadOption: 0x82,
  Forbidden: 0x83,
  NotFound: 0x84,
  MethodNotAllowed: 0x85,
  NotAcceptable: 0x86,
  RequestEntityIncomplete: 0x88,
  Conflict: 0x89,
  PreconditionFailed: 0x8c,
  RequestEntityTooLarge: 0x8d,
  UnsupportedContentFormat: 0x8f,
  UnprocessableEntity: 0x96,
  TooManyRequests: 0x9d,
  InternalServerError: 0xa0,
  NotImplemented: 0xa1,
  BadGateway: 0xa2,
  ServiceUnavailable: 0xa3,
  GatewayTimeout: 0xa4,
  ProxyingNotSupported: 0xa5,
} as const;

const CODE_NAMES = new Map<number, string>([
  [0x00, 'Empty'],
  [0x01, 'GET'],
  [0x02, 'POST'],
  [0x03, 'PUT'],
  [0x04, 'DELETE'],
  [0x05, 'FETCH'],
  [0x06, 'PATCH'],
  [0x07, 'iPATCH'],
  [0x41, 'Created'],
  [0x42, 'Deleted'],
  [0x43, 'Valid'],
  [0x44, 'Changed'],
  [0x45, 'Content'],
  [0x5f, 'Continue'],
  [0x80, 'Bad Request'],
  [0x81, 'Unauthorized'],
  [0x82, 'Bad Option'],
  [0x83, 'Forbidden'],
  [0x84, 'Not Found'],
  [0x85, 'Method Not Allowed'],
  [0x86, 'Not Acceptable'],
  [0x88, 'Request Entity Incomplete'],
  [0x89, 'Conflict'],
  [0x8c, 'Precondition Failed'],
  [0x8d, 'Request Entity Too Large'],
  [0x8f, 'Unsupported Content-Format'],
  [0x96, 'Unprocessable Entity'],
  [0x9d, 'Too Many Requests'],
  [0xa0, 'Internal Server Error'],
  [0xa1, 'Not Implemented'],
  [0xa2, 'Bad Gateway'],
  [0xa3, 'Service Unavailable'],
  [0xa4, 'Gateway Timeout'],
  [0xa5, 'Proxying Not Supported'],
]);

/** "2.05" for 0x45. */
export function formatCode(c: number): string {
  return `${c >> 5}.${String(c & 0x1f).padStart(2, '0')}`;
}

/** Registered name of a code ("Content", "GET"), or undefined. */
export function codeName(c: number): string | undefined {
  return CODE_NAMES.get(c);
}

/** "2.05 Content", "GET", "0.09" for unknown request codes. */
export function describeCode(c: number): string {
  const name = CODE_NAMES.get(c);
  if (c > 0 && c < 32) return name ?? formatCode(c);
  return name === undefined ? formatCode(c) : `${formatCode(c)} ${name}`;
}

/** Parses "2.05", "4.04", "GET", "Content" or a number into a code byte; undefined if invalid. */
export function parseCode(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 255 ? v : undefined;
  if (v.length === 4 && v.charCodeAt(1) === 0x2e) {
    // Fast path for "c.dd" (every response of a server whose handlers return string codes).
    const c = v.charCodeAt(0) - 0x30;
    const d1 = v.charCodeAt(2) - 0x30;
    const d2 = v.charCodeAt(3) - 0x30;
    if (c >= 0 && c <= 7 && d1 >= 0 && d1 <= 9 && d2 >= 0 && d2 <= 9) {
      const detail = d1 * 10 + d2;
      return detail <= 31 ? code(c, detail) : undefined;
    }
  }
  const m = /^([0-7])\.(\d\d)$/.exec(v);
  if (m) {
    const detail = Number(m[2]);
    return detail <= 31 ? code(Number(m[1]), detail) : undefined;
  }
  for (const [k, name] of CODE_NAMES) if (name.toLowerCase() === v.toLowerCase()) return k;
  return undefined;
}

export const isRequestCode = (c: number): boolean => c >= 1 && c <= 31;
export const isResponseCode = (c: number): boolean => c >= 64 && c <= 191;
export const isEmptyCode = (c: number): boolean => c === 0;
export const codeClass = (c: number): number => c >> 5;
