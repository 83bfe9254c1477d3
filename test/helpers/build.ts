import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const BUNDLE = join(ROOT, 'scripts/bundle-server.mjs');

function newestSourceMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMs(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts'))
      newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Tests that run bin/federation.js (dist/bundle/) or import the package (dist/) run built JavaScript.
 * `npm ci` builds both (prepare); this rebuilds them when a source under src/ is newer, so a test
 * never runs stale JavaScript.
 */
export function ensureBuilt(): void {
  const stamp = join(ROOT, 'dist/.tsbuildinfo');
  let builtMs = 0;
  try {
    builtMs = statSync(stamp).mtimeMs;
  } catch {}
  const bundled = existsSync(join(ROOT, 'dist/bundle/cli.js'));
  if (bundled && builtMs >= newestSourceMs(join(ROOT, 'src'))) return;
  execFileSync(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.build.json')], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  execFileSync(process.execPath, [BUNDLE], { cwd: ROOT, stdio: 'inherit' });
  // tsc leaves the file alone when no output changed; touch it so the next check is a no-op.
  const now = new Date();
  utimesSync(stamp, now, now);
}
