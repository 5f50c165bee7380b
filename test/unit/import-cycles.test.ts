/**
 * No import cycles in src/ (runtime or type-level), found by
 * scripts/import-cycles.mjs. (The server builds block-wise and observe in;
 * they depend on server/request.ts and describe the host they need as an
 * interface, so they never import the server.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
// @ts-expect-error: a plain .mjs script without types
import { findCycles, importGraph } from '../../scripts/import-cycles.mjs';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

describe('import graph of src/', () => {
  const graph = importGraph(SRC) as Map<string, string[]>;
  const cycles = findCycles(graph) as string[][];

  it('reads the imports (sanity: the client imports the multicast layer, not the other way)', () => {
    assert.ok(graph.size > 50);
    assert.ok(graph.get('client/client.ts')?.includes('multicast/client.ts'));
    assert.ok(graph.get('server/server.ts')?.includes('multicast/server.ts'));
    for (const f of ['multicast/client.ts', 'multicast/server.ts', 'multicast/transport.ts']) {
      const up = graph.get(f)?.filter((d) => d.startsWith('client/') || d.startsWith('server/'));
      assert.deepEqual(up, [], `${f} imports ${up}`);
    }
  });

  it('has no import cycle', () => {
    assert.deepEqual(
      cycles.map((c) => [...c, c[0]].join(' -> ')),
      [],
      'import cycle(s): move the shared part into a lower module',
    );
  });

  it('finds a cycle when there is one', () => {
    const g = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    assert.deepEqual(findCycles(g), [['a.ts', 'b.ts', 'c.ts']]);
  });
});
