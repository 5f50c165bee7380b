#!/usr/bin/env node
// Runs every test file under test/ (Node 20's test runner has no glob support).
// Usage: node scripts/test.mjs [dir-or-file ...]   (default: test)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(p, out) {
  const st = statSync(p);
  if (st.isFile()) {
    if (/\.test\.(ts|mjs|js)$/.test(p)) out.push(p);
    return out;
  }
  for (const e of readdirSync(p).sort()) collect(join(p, e), out);
  return out;
}

const roots = process.argv.slice(2);
const files = (roots.length ? roots : ['test']).flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
const r = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    // spec ends with a "failing tests" list, so the tail of a CI log names what failed
    '--test-reporter=spec',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=180000',
    ...files,
  ],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
