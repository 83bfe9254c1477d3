import { randomBytes } from 'node:crypto';
import { type App, buildApp } from '../../src/app.ts';
import type { Clock } from '../../src/clock.ts';
import { testConfig } from '../../src/config.ts';

/** A unique slug per test, because every test file shares the NATS server on 4222. */
export const uniqueSlug = (prefix = 't'): string => `${prefix}-${randomBytes(4).toString('hex')}`;

/** Builds exactly the production app on an in-memory database with NATS off, unless `env` says otherwise. */
export async function buildTestApp(
  env: Record<string, string> = {},
  opts: { clock?: Clock } = {},
): Promise<App> {
  return buildApp({ config: testConfig(env), logger: false, ...opts });
}
