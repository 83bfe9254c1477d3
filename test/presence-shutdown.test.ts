import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presenceSubject } from '../src/protocol/index.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { findProject, heartbeatPayload } from './helpers/presence.ts';
import { waitFor } from './helpers/wait.ts';

describe('graceful shutdown', () => {
  let database: TestDatabase;
  let nats: TestNatsServer;

  beforeAll(async () => {
    database = await createPostgresDatabase();
    nats = await startNatsServer();
  });
  afterAll(async () => {
    await nats?.destroy();
    await database?.drop();
  });

  it('writes every pending heartbeat before closing, none lost', async () => {
    // A flush interval far longer than the test: only the shutdown flush can write them.
    const env = { DATABASE_URL: database.url, NATS_URL: nats.url, FED_FLUSH_INTERVAL_MS: '10000' };
    const app = await buildTestApp(env);
    const viaHttp = Array.from({ length: 25 }, () => uniqueSlug('shut-http'));
    const viaNats = Array.from({ length: 25 }, () => uniqueSlug('shut-nats'));
    for (const slug of viaHttp) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/fed/heartbeats',
        payload: heartbeatPayload(slug),
      });
      expect(res.statusCode).toBe(202);
    }
    const nc = await connect({ servers: nats.url });
    for (const slug of viaNats) nc.publish(presenceSubject(slug), JSON.stringify(heartbeatPayload(slug)));
    await nc.flush();
    await nc.close();
    expect(app.heartbeatWriter.pending).toBeGreaterThanOrEqual(viaHttp.length);
    expect(await findProject(app, viaHttp[0] as string)).toBeUndefined();

    await app.close();

    const reopened = await buildTestApp({ ...env, NATS_URL: 'none' });
    try {
      for (const slug of [...viaHttp, ...viaNats]) {
        const p = await findProject(reopened, slug);
        expect(p?.last_heartbeat_at, slug).toBeTruthy();
      }
    } finally {
      await reopened.close();
    }
  });

  it('stops the sweeper when closing', async () => {
    const app = await buildTestApp({ DATABASE_URL: database.url, NATS_URL: nats.url });
    await waitFor(() => app.sweeper.lastSweepAt !== undefined, { what: 'a first sweep' });
    expect(app.sweeper.running).toBe(true);
    await app.close();
    expect(app.sweeper.running).toBe(false);
  });

  it('ends open SSE streams so that closing does not hang', async () => {
    const app = await buildTestApp({ DATABASE_URL: database.url, NATS_URL: 'none' });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    const res = await fetch(`http://127.0.0.1:${address.port}/api/fed/events`);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await app.close();
    let done = false;
    while (!done) done = (await reader.read()).done;
    expect(done).toBe(true);
  });
});
