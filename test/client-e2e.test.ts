import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { FederationHeartbeat } from '../src/client/index.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { waitFor } from './helpers/wait.ts';

interface ProjectBody {
  slug: string;
  name: string;
  status: string;
  version: string | null;
  tags: string[];
  hub_url: string;
  mesh_namespace: string;
  last_heartbeat_at: string | null;
}

// A NATS server of its own: every app on the shared server is in the `federation` queue group, so a
// heartbeat published there may be handled by another test file's app. A private server also lets
// this test restart NATS under the publisher.
let nats: TestNatsServer;
let app: App;

async function project(slug: string): Promise<ProjectBody | undefined> {
  const res = await app.inject({ method: 'GET', url: `/api/fed/projects/${slug}` });
  return res.statusCode === 200 ? (res.json() as ProjectBody) : undefined;
}

beforeAll(async () => {
  nats = await startNatsServer();
  app = await buildTestApp({ NATS_URL: nats.url });
  await waitFor(() => app.nats.connected, { what: 'the app to connect to NATS' });
});

afterAll(async () => {
  await app?.close();
  await nats?.destroy();
});

describe('FederationHeartbeat → Federation Service', () => {
  it('brings a project online, reports its health, survives a NATS restart and goes offline when stopped', async () => {
    const slug = uniqueSlug('e2e');
    const hb = new FederationHeartbeat({
      slug: slug,
      hubUrl: 'http://127.0.0.1:8123',
      natsUrl: nats.url,
      intervalS: 0.2,
      version: '3.1.4',
      name: 'End To End',
      tags: ['e2e'],
      env: {},
      logger: { warn: () => {} },
    });
    await hb.start();
    try {
      const online = await waitFor(
        async () => ((await project(slug))?.status === 'online' ? project(slug) : undefined),
        {
          what: 'the project to be registered and online',
        },
      );
      expect(online).toMatchObject({
        slug,
        name: 'End To End',
        version: '3.1.4',
        tags: ['e2e'],
        hub_url: 'http://127.0.0.1:8123',
        mesh_namespace: `hub.${slug}`,
      });

      hb.setHealth('degraded');
      await waitFor(async () => (await project(slug))?.status === 'degraded', { what: 'status degraded' });
      hb.setHealth('ok');
      await waitFor(async () => (await project(slug))?.status === 'online', { what: 'status online again' });

      // NATS goes away and comes back: both sides reconnect and heartbeats flow again.
      await nats.stop();
      const restartedAt = Date.now();
      await nats.start();
      await waitFor(
        async () => {
          const p = await project(slug);
          return (
            p?.last_heartbeat_at != null &&
            Date.parse(p.last_heartbeat_at) > restartedAt &&
            p.status === 'online'
          );
        },
        { timeoutMs: 20_000, what: 'heartbeats after the NATS restart' },
      );
    } finally {
      await hb.stop();
    }
    // interval_s = 0.2 makes this project's offline threshold 0.6 s.
    await waitFor(async () => (await project(slug))?.status === 'offline', { what: 'offline after stop()' });
  });

  it('stop() says the project is leaving: offline at once with reason shutdown, not after 90 s of silence', async () => {
    const slug = uniqueSlug('leave');
    const hb = new FederationHeartbeat({
      slug,
      natsUrl: nats.url,
      intervalS: 30,
      env: {},
      logger: { warn: () => {} },
    });
    await hb.start();
    await waitFor(async () => (await project(slug))?.status === 'online', { what: 'online' });
    await hb.stop();
    // interval_s 30: silence would take 90 s; the leaving heartbeat takes a flush.
    await waitFor(async () => (await project(slug))?.status === 'offline', {
      timeoutMs: 3000,
      what: 'offline at once',
    });
    const history = (await app.inject(`/api/fed/projects/${slug}/history`)).json() as {
      transitions: Array<{ to: string; reason: string }>;
    };
    expect(history.transitions.at(-1)).toMatchObject({ to: 'offline', reason: 'shutdown' });

    // stop({ leave: false }) is a crash as far as the service can tell: it stays online until the silence counts.
    const quiet = uniqueSlug('crash');
    const other = new FederationHeartbeat({
      slug: quiet,
      natsUrl: nats.url,
      intervalS: 30,
      env: {},
      logger: { warn: () => {} },
    });
    await other.start();
    await waitFor(async () => (await project(quiet))?.status === 'online', { what: 'online' });
    await other.stop({ leave: false });
    await app.heartbeatWriter.flush();
    expect((await project(quiet))?.status).toBe('online');
  });
});
