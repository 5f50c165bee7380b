/**
 * Cheap Buffer views. `buf.subarray()` goes through the TypedArray species
 * protocol and costs ~55 ns in Node 20; constructing Node's own Buffer class
 * (FastBuffer, exposed as `Buffer[Symbol.species]`) directly costs ~25 ns.
 * The decoder makes one view per token, option value and payload, so this
 * halves its cost. Where the species is not a Buffer constructor (another
 * runtime), BufferView falls back to Buffer.from(arrayBuffer, offset, length).
 *
 * Use: `const ab = buf.buffer, bo = buf.byteOffset;` once (the `buffer`
 * getter is not free), then `new BufferView(ab, bo + start, length)`.
 *
 * In util/ because the CoAP codec and the DTLS record layer both use it; it
 * imports nothing of the project.
 */
import { Buffer } from 'node:buffer';

export type BufferViewCtor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => Buffer;

function probe(): BufferViewCtor | undefined {
  const ctor = (Buffer as unknown as { [Symbol.species]?: unknown })[Symbol.species];
  if (typeof ctor !== 'function' || ctor === Buffer) return undefined;
  try {
    const ab = new ArrayBuffer(4);
    const v = new (ctor as BufferViewCtor)(ab, 1, 2);
    return Buffer.isBuffer(v) && v.byteOffset === 1 && v.length === 2 && v.buffer === ab
      ? (ctor as BufferViewCtor)
      : undefined;
  } catch {
    return undefined;
  }
}

function fallback(buffer: ArrayBufferLike, byteOffset: number, length: number): Buffer {
  return Buffer.from(buffer as ArrayBuffer, byteOffset, length);
}

/** `new BufferView(arrayBuffer, byteOffset, length)`: a Buffer sharing that memory (callers check bounds). */
export const BufferView: BufferViewCtor = probe() ?? (fallback as unknown as BufferViewCtor);
