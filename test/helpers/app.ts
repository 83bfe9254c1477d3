import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type App, buildApp } from '../../src/app.ts';
import type { Clock } from '../../src/clock.ts';
import { testConfig } from '../../src/config.ts';
import { startNatsServer, type TestNatsServer } from './nats-server.ts';

/** A unique slug per test, because every test file shares the NATS server on 4222. */
export const uniqueSlug = (prefix = 't'): string => `${prefix}-${randomBytes(4).toString('hex')}`;

/** Builds exactly the production app on an in-memory database with NATS off, unless `env` says otherwise. */
export async function buildTestApp(
  env: Record<string, string> = {},
  opts: { clock?: Clock } = {},
): Promise<App> {
  return buildApp({ config: testConfig(env), logger: false, ...opts });
}

export interface AppWithOwnNats {
  app: App;
  nats: TestNatsServer;
  /** A client connection to the same server, for publishing as a project would. */
  nc: NatsConnection;
  close(): Promise<void>;
}

/**
 * The app on a nats-server of the test's own: on the shared one, another test file's app in the
 * `federation` queue group could receive this test's heartbeats instead.
 */
export async function buildAppWithOwnNats(env: Record<string, string> = {}): Promise<AppWithOwnNats> {
  const nats = await startNatsServer();
  const app = await buildTestApp({ ...env, NATS_URL: nats.url });
  const nc = await connect({ servers: nats.url });
  return {
    app,
    nats,
    nc,
    async close() {
      await nc.close();
      await app.close();
      await nats.destroy();
    },
  };
}
