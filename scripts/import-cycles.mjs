#!/usr/bin/env node
/**
 * Import cycles in src/: walks every .ts file, follows each relative
 * `import ... from '...'`, `export ... from '...'` and `import('...')`
 * (type-only imports count too: a type-level cycle is a design cycle),
 * and prints each cycle once as `a.ts -> b.ts -> a.ts`. Exit 1 when any.
 *   node scripts/import-cycles.mjs [dir]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const IMPORT_RE = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;

/** All .ts files under `dir` (absolute paths). */
function walk(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** file (relative to root) -> the files it imports (relative to root). */
export function importGraph(root) {
  const graph = new Map();
  for (const file of walk(root)) {
    const text = readFileSync(file, 'utf8');
    const deps = new Set();
    for (const m of text.matchAll(IMPORT_RE)) {
      const target = resolve(dirname(file), m[1].replace(/\.js$/, '.ts'));
      deps.add(relative(root, target));
    }
    graph.set(relative(root, file), [...deps].sort());
  }
  return graph;
}

/** Elementary cycles found by DFS, each rotated to start at its smallest file, deduplicated. */
export function findCycles(graph) {
  const cycles = new Map();
  const state = new Map(); // 1 on the stack, 2 done
  const stack = [];
  const visit = (node) => {
    state.set(node, 1);
    stack.push(node);
    for (const dep of graph.get(node) ?? []) {
      if (!graph.has(dep)) continue;
      const s = state.get(dep);
      if (s === 1) {
        const cycle = stack.slice(stack.indexOf(dep));
        let min = 0;
        for (let i = 1; i < cycle.length; i++) if (cycle[i] < cycle[min]) min = i;
        const rotated = [...cycle.slice(min), ...cycle.slice(0, min)];
        cycles.set(rotated.join(' -> '), rotated);
      } else if (s === undefined) visit(dep);
    }
    stack.pop();
    state.set(node, 2);
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return [...cycles.values()];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? 'src');
  const cycles = findCycles(importGraph(root));
  for (const c of cycles) console.log([...c, c[0]].join(' -> '));
  if (cycles.length > 0) process.exit(1);
  console.log(`no import cycles in ${relative(process.cwd(), root) || '.'}`);
}
