/**
 * The sender sequence number in a file (RFC 8613 §7.5.1): FILE.seq beside a
 * context file holds the bound below which numbers may have been used. Each
 * save writes a temporary file, flushes it to disk and renames it over the
 * old one, so a crash leaves either the old or the new bound, never a torn one.
 *
 * When `coapkit serve --data/--store` takes the context's numbers from a
 * durable store instead, FILE.seq says so (`store N`, N the bound it had):
 * the file no longer knows which numbers were used, and using the context
 * from the file alone again is refused instead of reusing them.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { OscoreSequenceError } from '../errors.js';
import type { SequenceStore } from './context.js';
import { MAX_SEQUENCE_NUMBER } from './context.js';

/** A {@link SequenceStore} in a file of its own (one decimal number). */
export class FileSequenceStore implements SequenceStore {
  /** Number of saves (each one a write and an fsync), for tests. */
  saves = 0;

  constructor(
    /** The file (conventionally the context file's name + ".seq"). */
    readonly path: string,
  ) {}

  /**
   * The stored bound; undefined when the file does not exist yet.
   * OscoreSequenceError when the numbers moved to a durable store (see markMoved).
   */
  load(): number | undefined {
    const f = this.read();
    if (f?.moved)
      throw new OscoreSequenceError(
        `${this.path}: this context's sequence numbers are kept in a durable store since coapkit serve --data/--store used it; the file does not know which numbers were used after that`,
        {
          hint: 'use the context with the same --data or --store again, or derive a new context (never reuse a nonce)',
        },
      );
    return f?.bound;
  }

  /** The bound, also when the numbers moved to a store (the floor a store's counter starts at). */
  floor(): number | undefined {
    return this.read()?.bound;
  }

  /** True once markMoved wrote this file. */
  moved(): boolean {
    return this.read()?.moved === true;
  }

  /** Writes `next` durably (temporary file, fsync, rename). */
  save(next: number): void {
    this.write(`${next}\n`);
  }

  /** Records durably that the numbers are taken from a store from now on, above `floor`. */
  markMoved(floor: number): void {
    this.write(`store ${floor}\n`);
  }

  /**
   * The numbers move to a durable store: returns the floor its counter starts at (the
   * bound, 0 without the file) after marking the file moved, in one read. A file that
   * cannot be written (a read-only mount) is left as it is: the file-only mode cannot
   * use it either.
   */
  moveToStore(): number {
    const f = this.read();
    const floor = f?.bound ?? 0;
    if (f?.moved !== true) {
      try {
        this.markMoved(floor);
      } catch {
        // see above
      }
    }
    return floor;
  }

  private read(): { bound: number; moved: boolean } | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new OscoreSequenceError(`cannot read ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    const t = text.trim();
    const m = /^(store )?(\d{1,13})$/.exec(t);
    const n = Number(m?.[2]);
    if (m === null || n > MAX_SEQUENCE_NUMBER + 1)
      throw new OscoreSequenceError(
        `${this.path} does not hold a sequence number (0..2^40): ${JSON.stringify(t.slice(0, 40))}`,
        {
          hint: 'a sequence number file that cannot be trusted means a new context is needed (never reuse a nonce)',
        },
      );
    return { bound: n, moved: m[1] !== undefined };
  }

  private write(text: string): void {
    // One temporary file per process: workers of one server may write at the same time.
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    this.saves++;
  }
}
