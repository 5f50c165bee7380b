/**
 * OSCORE on the command line: `--oscore FILE` for the request commands and
 * `coapkit serve --oscore FILE` (repeatable, one file per client) with
 * `--oscore-required PATH`. FILE is a security context in aiocoap's JSON
 * format, from this endpoint's point of view (sender-id is our own ID), so a
 * context moves between the two tools:
 *
 *   { "secret_hex": "0102...", "salt_hex": "9e7c...", "sender-id_hex": "01",
 *     "recipient-id_hex": "", "id-context_hex": "37cb...",
 *     "algorithm": "AES-CCM-16-64-128", "kdf-hashfun": "sha256" }
 *
 * (`_ascii` forms for secret, salt, sender-id, recipient-id and id-context.)
 * The sender sequence number is kept beside it in FILE.seq (RFC 8613 §7.5);
 * `coapkit serve` with --data or --store takes it from the store instead, in
 * reserved ranges (several servers sharing one PostgreSQL store and one
 * context never send the same Partial IV), starting above FILE.seq if the
 * file exists; FILE.seq then records that the numbers moved to the store.
 */
import { Buffer } from 'node:buffer';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CoapError, OscoreSequenceError, UsageError } from '../errors.js';
import { OscoreContext, type SequenceSource } from '../oscore/context.js';
import { FileSequenceStore } from '../oscore/store.js';
import { compilePattern } from '../server/oscore.js';
import type { StateStore } from '../store/types.js';
import type { FlagSpecs, Parsed } from './args.js';
import { str, strs } from './args.js';

/** `--oscore FILE` of the request commands. */
export const OSCORE_CLIENT_FLAGS: FlagSpecs = { oscore: { type: 'string' } };

/** `--oscore FILE` (repeatable) and `--oscore-required PATH` (repeatable) of `coapkit serve`. */
export const OSCORE_SERVE_FLAGS: FlagSpecs = {
  oscore: { type: 'string', multiple: true },
  'oscore-required': { type: 'string', multiple: true },
};

const BYTE_FIELDS = ['secret', 'salt', 'sender-id', 'recipient-id', 'id-context'] as const;
const KNOWN = new Set<string>([
  ...BYTE_FIELDS.flatMap((f) => [`${f}_hex`, `${f}_ascii`]),
  'algorithm',
  'kdf-hashfun',
]);

function bytesField(json: Record<string, unknown>, name: string, file: string): Buffer | undefined {
  const hex = json[`${name}_hex`];
  const ascii = json[`${name}_ascii`];
  if (hex !== undefined && ascii !== undefined)
    throw new UsageError(`${file}: both ${name}_hex and ${name}_ascii are given`);
  if (hex !== undefined) {
    if (typeof hex !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(hex))
      throw new UsageError(`${file}: ${name}_hex must be a string of hex digit pairs`);
    return Buffer.from(hex, 'hex');
  }
  if (ascii !== undefined) {
    if (typeof ascii !== 'string' || !/^[\x20-\x7e]*$/.test(ascii))
      throw new UsageError(`${file}: ${name}_ascii must be printable ASCII text`);
    return Buffer.from(ascii, 'latin1');
  }
  return undefined;
}

/**
 * Sender sequence numbers from a durable store (`coapkit serve --data/--store`):
 * ranges reserved under the name "SENDER-ID:ID-CONTEXT" (hex), atomically, so
 * servers sharing the store never get the same number. The store is put in
 * the shared `binding` once it is open (`readyOscore`); the first reservation starts no lower
 * than FILE.seq when that file exists (a context moving from FILE.seq).
 */
class StoreSequenceSource implements SequenceSource {
  private floor: number | undefined;

  constructor(
    /** The counter's name in the store. */
    readonly name: string,
    /** FILE.seq of the context file: the migration floor, then marked as moved to the store. */
    readonly seqFile: string,
    /** Holds the durable store, set by `readyOscore` before the context's `ready()`. */
    private readonly binding: StoreBinding,
  ) {}

  async reserve(count: number): Promise<number> {
    const store = this.binding.store;
    if (store?.reserveSequence === undefined)
      throw new OscoreSequenceError('this store cannot reserve OSCORE sequence numbers');
    // Before the first number from the store: FILE.seq now says they moved, so using the
    // context from the file alone again is refused instead of reusing them.
    this.floor ??= new FileSequenceStore(this.seqFile).moveToStore();
    return store.reserveSequence(this.name, count, this.floor);
  }
}

/** The durable store of the StoreSequenceSources of `coapkit serve`, once it is open. */
export interface StoreBinding {
  store: StateStore | undefined;
}

/** The store counter's name of a context: its Sender ID and ID Context in hex. */
function oscoreSequenceName(ctx: Pick<OscoreContext, 'senderId' | 'idContext'>): string {
  return `${ctx.senderId.toString('hex')}:${ctx.idContext?.toString('hex') ?? ''}`;
}

/**
 * Reads a security context file (aiocoap's field names); UsageError saying what is wrong.
 * `sequence: false` (for reading captures) leaves FILE.seq alone; `sequence: BINDING` takes
 * the numbers from a StoreSequenceSource, from the store put in BINDING later (`readyOscore`).
 */
export function loadOscoreContext(
  file: string,
  opts: { sequence?: boolean | StoreBinding } = {},
): OscoreContext {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--oscore ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--oscore ${file}: not JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new UsageError(
      `--oscore ${file}: expected a JSON object with secret_hex, sender-id_hex, recipient-id_hex...`,
    );
  const o = json as Record<string, unknown>;
  const label = `--oscore ${file}`;
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k))
      throw new UsageError(`--oscore ${file}: unknown field "${k}"`, {
        hint: `known fields: ${[...KNOWN].join(', ')}`,
      });
  }
  const secret = bytesField(o, 'secret', label);
  const senderId = bytesField(o, 'sender-id', label);
  const recipientId = bytesField(o, 'recipient-id', label);
  if (secret === undefined) throw new UsageError(`--oscore ${file}: secret_hex (or secret_ascii) is missing`);
  if (senderId === undefined)
    throw new UsageError(`--oscore ${file}: sender-id_hex (or sender-id_ascii) is missing`);
  if (recipientId === undefined)
    throw new UsageError(`--oscore ${file}: recipient-id_hex (or recipient-id_ascii) is missing`);
  const algorithm = o.algorithm ?? 'AES-CCM-16-64-128';
  const kdf = o['kdf-hashfun'] ?? 'sha256';
  if (typeof algorithm !== 'string') throw new UsageError(`--oscore ${file}: algorithm must be a string`);
  const idContext = bytesField(o, 'id-context', label);
  const sequence =
    opts.sequence === false
      ? {}
      : typeof opts.sequence === 'object'
        ? {
            sequenceSource: new StoreSequenceSource(
              oscoreSequenceName({ senderId, idContext }),
              `${file}.seq`,
              opts.sequence,
            ),
          }
        : { sequenceStore: new FileSequenceStore(`${file}.seq`) };
  if (kdf !== 'sha256')
    throw new UsageError(`--oscore ${file}: kdf-hashfun ${JSON.stringify(kdf)} is not supported (sha256)`);
  try {
    return new OscoreContext({
      masterSecret: secret,
      masterSalt: bytesField(o, 'salt', label),
      senderId,
      recipientId,
      idContext,
      algorithm,
      ...sequence,
    });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (err instanceof CoapError) {
      const e = new UsageError(`--oscore ${file}: ${err.message}`, { cause: err });
      if (err.hint !== undefined) e.hint = err.hint;
      throw e;
    }
    throw err;
  }
}

/** The request option of `--oscore FILE` (empty without it). */
export function oscoreRequestOption(p: Parsed): { oscore?: OscoreContext } {
  const file = str(p, 'oscore');
  return file === undefined ? {} : { oscore: loadOscoreContext(file) };
}

/** What `coapkit serve --oscore ...` turns on. */
export interface ServeOscore {
  contexts: OscoreContext[];
  required: string[];
  /** With --data/--store: the contexts take their sequence numbers from this store (set by `readyOscore`). */
  storeBinding?: StoreBinding;
  /** With --store (servers sharing the context): every protected response has its own Partial IV. */
  ownPartialIv?: boolean;
  /** The context files, as given (the banner looks beside them for the clients' files). */
  files: string[];
}

/** Reads `--oscore` and `--oscore-required` of `coapkit serve`. */
export function serveOscoreArgs(p: Parsed): ServeOscore | undefined {
  const files = strs(p, 'oscore');
  const required = strs(p, 'oscore-required');
  if (files.length === 0) {
    if (required.length > 0) throw new UsageError('--oscore-required needs at least one --oscore FILE');
    return undefined;
  }
  for (const r of required)
    if (!r.startsWith('/'))
      throw new UsageError(`--oscore-required ${r}: a path starts with "/" (e.g. /secure/** or /**)`);
  // With a durable store the sequence numbers come from it (FILE.seq: the floor, then marked as moved).
  if (str(p, 'data') !== undefined || str(p, 'store') !== undefined) {
    const storeBinding: StoreBinding = { store: undefined };
    const contexts = files.map((f) => loadOscoreContext(f, { sequence: storeBinding }));
    // Servers sharing a PostgreSQL store share the context but not their replay windows.
    return {
      contexts,
      required,
      files,
      storeBinding,
      ...(str(p, 'store') !== undefined ? { ownPartialIv: true } : {}),
    };
  }
  return { contexts: files.map((f) => loadOscoreContext(f)), required, files };
}

/**
 * Before the server listens: binds the contexts of `--oscore` to the durable
 * store (when there is one) and waits until each holds a reserved range of
 * sequence numbers (OscoreSequenceError when the store cannot give one).
 */
export async function readyOscore(o: ServeOscore, store: StateStore | undefined): Promise<void> {
  if (o.storeBinding !== undefined) {
    if (store === undefined) throw new OscoreSequenceError('OSCORE sequence numbers need the durable store');
    o.storeBinding.store = store;
  }
  await Promise.all(o.contexts.map((c) => c.ready()));
}

/** The banner line of `coapkit serve` about OSCORE. */
export function oscoreBanner(o: ServeOscore): string {
  const kids = o.contexts.map((c) =>
    c.recipientId.length === 0 ? '(empty)' : c.recipientId.toString('hex'),
  );
  const req =
    o.required.length > 0
      ? `; required on ${o.required.join(' ')}`
      : '; required nowhere (--oscore-required)';
  const seq = o.storeBinding !== undefined ? '; sequence numbers from the store' : '';
  return `  OSCORE: ${o.contexts.length} context${o.contexts.length === 1 ? '' : 's'} (client kid ${kids.join(', ')})${req}${seq}`;
}

/** How many *.json files beside a server context file the banner looks at, and their largest size. */
const SCAN_FILES = 64;
const SCAN_BYTES = 16 * 1024;

/** True when `c` is `server` seen from the other side (the client's context of the same keys). */
function mirrors(c: OscoreContext, server: OscoreContext): boolean {
  return (
    c.algorithm.id === server.algorithm.id &&
    c.senderId.equals(server.recipientId) &&
    c.recipientId.equals(server.senderId) &&
    c.senderKey.equals(server.recipientKey) &&
    c.recipientKey.equals(server.senderKey) &&
    c.commonIv.equals(server.commonIv)
  );
}

/** A client's context file beside `file` (the server's, holding `server`), or undefined. */
function clientFileBeside(file: string, server: OscoreContext): string | undefined {
  const dir = dirname(file);
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => n.endsWith('.json'))
      .sort()
      .slice(0, SCAN_FILES);
  } catch {
    return undefined;
  }
  const own = resolve(file);
  for (const name of names) {
    const candidate = join(dir, name);
    if (resolve(candidate) === own) continue;
    try {
      if (statSync(candidate).size > SCAN_BYTES) continue;
      if (mirrors(loadOscoreContext(candidate, { sequence: false }), server)) return candidate;
    } catch {}
  }
  return undefined;
}

/** `arg` as one shell word. */
function shellWord(arg: string): string {
  return /^[\w./:@%+=,-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/**
 * What the "Try:" lines of `coapkit serve` add for OSCORE. Nothing when "/" (the path they
 * get) is not among the required paths. Else `--oscore FILE`: the client's context file when
 * one lies beside a server context file (*.json holding the same keys from the client's side),
 * or a placeholder, with a note saying what the client's own file holds.
 */
export function oscoreTryArgs(o: ServeOscore): { args: string; note?: string } {
  if (!o.required.some((r) => compilePattern(r)([]))) return { args: '' };
  for (let i = 0; i < o.files.length; i++) {
    const found = clientFileBeside(o.files[i]!, o.contexts[i]!);
    if (found !== undefined) return { args: ` --oscore ${shellWord(found)}` };
  }
  const c = o.contexts[0]!;
  const id = (b: Buffer) => (b.length === 0 ? '""' : b.toString('hex'));
  return {
    args: ' --oscore CLIENT.json',
    note:
      `  (OSCORE is required on /: CLIENT.json is the client's own context file, ${basename(o.files[0]!)} from ` +
      `the other side: the same secret and salt${c.idContext === undefined ? '' : ` and id-context_hex ${c.idContext.toString('hex')}`}, ` +
      `sender-id_hex ${id(c.recipientId)}, recipient-id_hex ${id(c.senderId)})`,
  };
}
