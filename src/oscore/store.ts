/**
 * The sender sequence number in a file (RFC 8613 §7.5.1): FILE.seq beside a
 * context file holds the bound below which numbers may have been used. Each
 * save writes a temporary file, flushes it to disk and renames it over the
 * old one, so a crash leaves either the old or the new bound, never a torn one.
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

  /** The stored bound; undefined when the file does not exist yet. */
  load(): number | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new OscoreSequenceError(`cannot read ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    const t = text.trim();
    const n = Number(t);
    if (!/^\d{1,13}$/.test(t) || n > MAX_SEQUENCE_NUMBER + 1)
      throw new OscoreSequenceError(
        `${this.path} does not hold a sequence number (0..2^40): ${JSON.stringify(t.slice(0, 40))}`,
        {
          hint: 'a sequence number file that cannot be trusted means a new context is needed (never reuse a nonce)',
        },
      );
    return n;
  }

  /** Writes `next` durably (temporary file, fsync, rename). */
  save(next: number): void {
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${next}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    this.saves++;
  }
}
