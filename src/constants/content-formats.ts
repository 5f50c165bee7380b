/** CoAP Content-Formats (RFC 7252 §12.3 and the IANA registry). */
const FORMATS: ReadonlyArray<readonly [number, string, readonly string[]]> = [
  [0, 'text/plain;charset=utf-8', ['text', 'plain', 'text/plain']],
  [16, 'application/cose;cose-type="cose-encrypt0"', []],
  [17, 'application/cose;cose-type="cose-mac0"', []],
  [18, 'application/cose;cose-type="cose-sign1"', []],
  [40, 'application/link-format', ['link', 'link-format']],
  [41, 'application/xml', ['xml']],
  [42, 'application/octet-stream', ['octet', 'binary', 'octet-stream']],
  [47, 'application/exi', ['exi']],
  [50, 'application/json', ['json']],
  [51, 'application/json-patch+json', ['json-patch']],
  [52, 'application/merge-patch+json', ['merge-patch']],
  [60, 'application/cbor', ['cbor']],
  [61, 'application/cwt', ['cwt']],
  [62, 'application/multipart-core', ['multipart-core']],
  [63, 'application/cbor-seq', ['cbor-seq']],
  [110, 'application/senml+json', ['senml+json', 'senml-json']],
  [111, 'application/sensml+json', []],
  [112, 'application/senml+cbor', ['senml+cbor', 'senml-cbor']],
  [113, 'application/sensml+cbor', []],
  [256, 'application/coap-group+json', []],
  [320, 'application/senml+xml', []],
  [432, 'application/td+json', []],
  [11050, 'application/json deflate', []],
  [11542, 'application/vnd.oma.lwm2m+tlv', ['lwm2m+tlv', 'tlv']],
  [11543, 'application/vnd.oma.lwm2m+json', ['lwm2m+json']],
  [11544, 'application/vnd.oma.lwm2m+cbor', ['lwm2m+cbor']],
];

export const ContentFormat = {
  TextPlain: 0,
  LinkFormat: 40,
  Xml: 41,
  OctetStream: 42,
  Exi: 47,
  Json: 50,
  Cbor: 60,
  SenmlJson: 110,
  SenmlCbor: 112,
} as const;

const BY_ID = new Map<number, string>(FORMATS.map(([id, mime]) => [id, mime]));
const BY_NAME = new Map<string, number>();
for (const [id, mime, aliases] of FORMATS) {
  BY_NAME.set(mime.toLowerCase(), id);
  for (const a of aliases) BY_NAME.set(a, id);
}

/** Media type for a Content-Format number, or undefined when unregistered. */
export function contentFormatName(id: number): string | undefined {
  return BY_ID.get(id);
}

/**
 * Parses a Content-Format given as a number ("50"), a media type
 * ("application/json") or a short alias ("json"). Undefined if unknown.
 */
export function parseContentFormat(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v <= 65535 ? v : undefined;
  // The registry (RFC 7252 §12.3) writes "text/plain; charset=utf-8": ignore blanks around ';'.
  const t = v
    .trim()
    .toLowerCase()
    .replace(/\s*;\s*/g, ';');
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return n <= 65535 ? n : undefined;
  }
  return BY_NAME.get(t);
}

/** True when payloads of this format are text worth printing as-is. */
export function isTextual(id: number | undefined): boolean {
  if (id === undefined) return true;
  const m = BY_ID.get(id);
  if (m === undefined) return false;
  return m.startsWith('text/') || m.includes('json') || m.includes('xml') || m === 'application/link-format';
}

export const CONTENT_FORMATS: ReadonlyArray<readonly [number, string, readonly string[]]> = FORMATS;
