import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { presenceSubject, STATUS_WILDCARD, type StatusEvent } from '../src/protocol/index.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { heartbeatPayload, metricsText, openEventStream } from './helpers/presence.ts';
import { waitFor } from './helpers/wait.ts';

// Fewer than MASS_OFFLINE_MIN, so that the mass-offline guard does not hold them back.
const PROJECTS = 8;
const EXPECTED = ['offline>online', 'online>degraded', 'degraded>offline'];

async function listen(app: App): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

describe('two instances on one PostgreSQL database and one NATS', () => {
  let database: TestDatabase;
  let nats: TestNatsServer;
  let apps: App[] = [];
  let urls: string[] = [];
  let nc: NatsConnection;

  beforeAll(async () => {
    database = await createPostgresDatabase();
    nats = await startNatsServer();
    const env = {
      DATABASE_URL: database.url,
      NATS_URL: nats.url,
      FED_DEGRADED_AFTER_S: '1',
      FED_OFFLINE_AFTER_S: '2.5',
      // Sweep often so that both instances race for the same transitions.
      FED_SWEEP_INTERVAL_S: '0.05',
    };
    apps = [await buildTestApp(env), await buildTestApp(env)];
    urls = await Promise.all(apps.map(listen));
    nc = await connect({ servers: nats.url });
  });
  afterAll(async () => {
    await nc?.close();
    await Promise.all(apps.map((a) => a.close()));
    await nats?.destroy();
    await database?.drop();
  });

  it('stores and publishes each transition exactly once, and SSE on either instance sees all', async () => {
    const slugs = Array.from({ length: PROJECTS }, () => uniqueSlug('replica'));
    const streams = await Promise.all(urls.map((u) => openEventStream(`${u}/api/fed/events`)));
    const published: StatusEvent[] = [];
    nc.subscribe(STATUS_WILDCARD, {
      callback: (_err, msg) => {
        const e = msg.json<StatusEvent>();
        if (slugs.includes(e.slug)) published.push(e);
      },
    });
    await nc.flush();

    for (const slug of slugs) nc.publish(presenceSubject(slug), JSON.stringify(heartbeatPayload(slug)));
    const total = PROJECTS * EXPECTED.length;
    const ours = (events: StatusEvent[]) => events.filter((e) => slugs.includes(e.slug));
    await waitFor(
      () =>
        published.length >= total &&
        streams.every((s) => ours(s.statuses() as StatusEvent[]).length >= total),
      { timeoutMs: 20_000, what: `${total} transitions on NATS and on both SSE streams` },
    );
    // Let both sweepers run a few more times: nothing new may appear.
    const after = Date.now();
    await waitFor(() => apps.every((a) => (a.sweeper.lastSweepAt?.getTime() ?? 0) > after + 200));

    const key = (e: StatusEvent) => `${e.slug}:${e.from}>${e.to}`;
    const want = slugs.flatMap((s) => EXPECTED.map((t) => `${s}:${t}`)).sort();
    expect(published.map(key).sort()).toEqual(want);
    for (const s of streams)
      expect((ours(s.statuses() as StatusEvent[]) as StatusEvent[]).map(key).sort()).toEqual(want);

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ slug: string; from_status: string; to_status: string }>(
        `select p.slug, e.from_status, e.to_status from project_status_events e join projects p on p.id = e.project_id
         where p.slug = any($1::text[])`,
        [slugs],
      );
      expect(rows.map((r) => `${r.slug}:${r.from_status}>${r.to_status}`).sort()).toEqual(want);
    } finally {
      await client.end();
    }

    // Each transition was claimed by exactly one of the two instances.
    const claimed = await Promise.all(
      apps.map(async (a) =>
        (await metricsText(a))
          .split('\n')
          .filter((l) => l.startsWith('federation_status_transitions_total{'))
          .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0),
      ),
    );
    expect(claimed.reduce((a, b) => a + b, 0)).toBe(total);
    for (const s of streams) await s.close();
  });
});
