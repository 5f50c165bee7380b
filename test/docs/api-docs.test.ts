/**
 * The API reference (TypeDoc, from the TSDoc of what the package exports) cannot drift:
 * scripts/docs-check.mjs builds it without writing it and fails on any warning that is not
 * in docs/typedoc-baseline.txt (an undocumented export, a broken {@link}, exported API that
 * refers to a type that is not exported), and on a listed warning that is fixed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT } from '../integration/cli-helpers.js';

test('TypeDoc: no new warning on the exported API (scripts/docs-check.mjs)', { timeout: 120_000 }, () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/docs-check.mjs')], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});
