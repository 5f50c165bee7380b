/**
 * Byte mutations for property tests of decoders: a few bytes of a valid input
 * overwritten. The mutations (not the whole buffer) are what fast-check shows
 * for a counterexample.
 */
import fc from 'fast-check';

/** 1 to `maxLength` (offset, byte) pairs for an input of `length` bytes. */
export function byteMutations(length: number, maxLength: number): fc.Arbitrary<[number, number][]> {
  return fc.array(fc.tuple(fc.nat(length - 1), fc.integer({ min: 0, max: 255 })), {
    minLength: 1,
    maxLength,
  });
}

/** A copy of `data` with the mutations applied. */
export function mutate(data: Uint8Array, mutations: readonly [number, number][]): Buffer {
  const b = Buffer.from(data);
  for (const [i, v] of mutations) b[i] = v;
  return b;
}
