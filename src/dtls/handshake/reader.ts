/** Bounds-checked big-endian reader for handshake structures; throws DtlsError (decode_error). */
import { Buffer } from 'node:buffer';
import { alertError, type DtlsError } from '../errors.js';

export function decodeError(message: string): DtlsError {
  return alertError(50, message);
}

export class Reader {
  offset = 0;
  constructor(readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number, what: string): void {
    if (this.buf.length - this.offset < n) throw decodeError(`truncated ${what}`);
  }

  u8(what = 'uint8'): number {
    this.need(1, what);
    return this.buf[this.offset++]!;
  }

  u16(what = 'uint16'): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  u24(what = 'uint24'): number {
    this.need(3, what);
    const v = this.buf.readUIntBE(this.offset, 3);
    this.offset += 3;
    return v;
  }

  bytes(n: number, what = 'bytes'): Buffer {
    this.need(n, what);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }

  /** opaque x<min..max> with a `lenBytes`-byte length prefix. */
  vector(lenBytes: 1 | 2 | 3, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): Buffer {
    const n = lenBytes === 1 ? this.u8(what) : lenBytes === 2 ? this.u16(what) : this.u24(what);
    if (n < min || n > max) throw decodeError(`bad ${what} length ${n}`);
    return this.bytes(n, what);
  }

  end(what: string): void {
    if (this.remaining !== 0) throw decodeError(`trailing bytes after ${what}`);
  }
}

export function u16(v: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(v, 0);
  return b;
}

export function vec(lenBytes: 1 | 2 | 3, data: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(lenBytes + data.length);
  b.writeUIntBE(data.length, 0, lenBytes);
  b.set(data, lenBytes);
  return b;
}
