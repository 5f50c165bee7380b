import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Groups, Tally } from '../../src/util/keyed.js';

test('Tally: counts per key; a key at zero is deleted', () => {
  const t = new Tally<string>();
  assert.equal(t.of('a'), 0);
  assert.equal(t.add('a'), 1);
  assert.equal(t.add('a', 2), 3);
  assert.equal(t.add('b'), 1);
  assert.equal(t.size, 2);
  assert.equal(t.subtract('a', 3), 0);
  assert.equal(t.size, 1, 'a is gone');
  assert.equal(t.subtract('b', 5), 0, 'never negative');
  assert.equal(t.size, 0);
});

test('Groups: values per key in insertion order; an empty group is deleted', () => {
  const g = new Groups<string, number>();
  assert.equal(g.add('x', 1), 1);
  assert.equal(g.add('x', 2), 2);
  assert.equal(g.add('y', 3), 1);
  assert.deepEqual([...g.get('x')!], [1, 2]);
  assert.equal(g.delete('x', 9), false);
  assert.equal(g.delete('x', 1), true);
  assert.equal(g.sizeOf('x'), 1);
  assert.equal(g.delete('x', 2), true);
  assert.equal(g.get('x'), undefined);
  assert.equal(g.size, 1);
  g.clear();
  assert.equal(g.size, 0);
});
