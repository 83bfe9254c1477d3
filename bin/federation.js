#!/usr/bin/env node
// Runs the bundled command (dist/bundle/, built by `npm run build`, which `npm ci` runs through
// `prepare`; see scripts/bundle-server.mjs). `npm run dev` runs the TypeScript sources under tsx instead.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/bundle/cli.js', import.meta.url);
if (!existsSync(entry)) {
  console.error(
    'federation: dist/bundle/cli.js is missing; run `npm run build` (or `npm run dev` for the sources)',
  );
  process.exit(1);
}
await import(entry.href);
