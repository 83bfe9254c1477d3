/**
 * `npm run openapi:check`: writes the service's OpenAPI document, lints it with Redocly CLI (its
 * recommended rules, redocly.yaml), generates TypeScript types from it with openapi-typescript and
 * typechecks scripts/openapi-consumer/consumer.ts against them. Offline: nothing leaves the machine.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../src/app.ts';
import { testConfig } from '../src/config.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT_DIR = join(ROOT, '.federation/openapi-check');
const DOC = join(OUT_DIR, 'openapi.json');
const CONSUMER_DIR = join(ROOT, 'scripts/openapi-consumer');
const bin = (pkgBin: string) => join(ROOT, 'node_modules', pkgBin);

function step(what: string, args: string[], cwd = ROOT): void {
  console.log(`== ${what}`);
  execFileSync(process.execPath, args, {
    cwd,
    stdio: 'inherit',
    // Redocly CLI: no usage telemetry, no update check (both would go to the network).
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
  });
}

try {
  const app = await buildApp({ config: testConfig(), logger: false });
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(DOC, `${JSON.stringify(app.swagger(), null, 2)}\n`);
  await app.close();
  console.log(`== wrote ${DOC}`);
  step('redocly lint (recommended rules)', [
    bin('@redocly/cli/bin/cli.js'),
    'lint',
    '--config',
    'redocly.yaml',
    '--max-problems',
    '50',
    DOC,
  ]);
  step('openapi-typescript', [
    bin('openapi-typescript/bin/cli.js'),
    DOC,
    '--output',
    join(CONSUMER_DIR, 'api.d.ts'),
  ]);
  step('typecheck a consumer of the generated types', [bin('typescript/bin/tsc'), '-p', CONSUMER_DIR]);
  console.log('openapi:check ok');
} catch (err) {
  console.error(`openapi:check failed: ${(err as Error).message.split('\n')[0]}`);
  process.exitCode = 1;
}
