#!/usr/bin/env node
// Builds the `coapkit console` page: console/*.ts (plus the CoAP-over-WebSockets framing it
// shares with the server, src/console/frame.ts) -> dist/console-page/ with lib dom, and copies
// the HTML and CSS beside it. Run by `npm run build`.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'console-page');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'console', 'tsconfig.json')], { stdio: 'inherit' });
mkdirSync(out, { recursive: true });
for (const f of ['index.html', 'console.css']) copyFileSync(join(root, 'console', f), join(out, f));
