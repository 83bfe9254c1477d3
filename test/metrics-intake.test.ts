import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { publishMetrics } from '../src/client/metrics.ts';
import type { FeedEvents } from '../src/events.ts';
import { metricsSubject } from '../src/protocol/index.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { waitFor } from './helpers/wait.ts';

/** Sum of one Prometheus series (all label sets matching `labels`) in an app's /metrics text. */
async function promValue(app: App, name: string, labels = ''): Promise<number> {
  const text = (await app.inject({ url: '/metrics' })).body;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '').includes(labels)) sum += Number(m[3]);
  }
  return sum;
}

describe('metrics intake through JetStream', () => {
  let nats: TestNatsServer;
  let db: TestDatabase;
  let nc: NatsConnection;
  const apps: App[] = [];
  const env = () => ({ NATS_URL: nats.url, DATABASE_URL: db.url });
  const start = async () => {
    const app = await buildTestApp(env());
    apps.push(app);
    await waitFor(() => app.metricsIntake.state === 'consuming', { what: 'metrics intake consuming' });
    return app;
  };
  const close = async (app: App) => {
    await app.close();
    apps.splice(apps.indexOf(app), 1);
  };
  const register = async (app: App, slug: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: { slug, name: slug, hub_url: 'http://localhost:8000', mesh_namespace: `hub.${slug}` },
    });
    expect(res.statusCode).toBe(201);
  };
  const history = async (app: App, slug: string, metric: string) =>
    (await app.inject({ url: `/api/fed/metrics/${slug}?metric=${metric}&limit=10000` })).json()
      .history as Array<{
      value: number | string;
      observed_at: string;
    }>;

  beforeAll(async () => {
    nats = await startNatsServer();
    db = await createPostgresDatabase();
    nc = await connect({ servers: nats.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  });
  afterAll(async () => {
    for (const app of apps.splice(0)) await app.close().catch(() => {});
    await nc?.close().catch(() => {});
    await nats?.destroy();
    await db?.drop();
  });

  it('stores every metric published while no instance runs, once it starts', async () => {
    const slug = uniqueSlug('down');
    const first = await start();
    await register(first, slug);
    await close(first);

    const base = Date.now() - 60_000;
    const n = 200;
    for (let i = 0; i < n; i++) {
      const ack = await publishMetrics(nc, slug, { 'audit.ok_count': i, 'build.state': `b${i}` }, 'audit', {
        observedAt: new Date(base + i),
      });
      expect(ack.stream).toBe('FED_METRICS');
    }

    const app = await start();
    await waitFor(async () => (await history(app, slug, 'audit.ok_count')).length === n, {
      what: `${n} stored`,
    });
    const latest = (await app.inject({ url: `/api/fed/metrics/${slug}` })).json().latest;
    expect(latest['audit.ok_count']).toEqual({
      value: n - 1,
      observed_at: new Date(base + n - 1).toISOString(),
    });
    expect(latest['build.state'].value).toBe(`b${n - 1}`);
    expect(await promValue(app, 'federation_metrics_stored_total')).toBe(n);
    await close(app);
  });

  it('stores a message published twice once, announces it once on the feed, and drops bad ones without blocking good ones', async () => {
    const app = await start();
    const slug = uniqueSlug('dup');
    await register(app, slug);
    const events: FeedEvents['metrics'][] = [];
    const off = app.feed.on('metrics', (e) => {
      if (e.project === slug) events.push(e);
    });

    const observedAt = new Date(Date.now() - 1000);
    await publishMetrics(nc, slug, { 'coverage.percent': 81.5 }, 'graph', { observedAt });
    await publishMetrics(nc, slug, { 'coverage.percent': 81.5 }, 'graph', { observedAt });

    const js = (await import('@nats-io/jetstream')).jetstream(nc);
    const subject = metricsSubject('audit', slug);
    const ghost = uniqueSlug('ghost');
    const good = (v: number) =>
      JSON.stringify({ project_slug: slug, observed_at: new Date().toISOString(), metrics: { after: v } });
    await js.publish(subject, 'not json at all');
    await js.publish(subject, JSON.stringify({ project_slug: slug, metrics: 'nope' }));
    await js.publish(
      subject,
      JSON.stringify({ project_slug: slug, observed_at: 'x', metrics: { big: 'y'.repeat(70_000) } }),
    );
    await js.publish(metricsSubject('audit', uniqueSlug('other')), good(0));
    await js.publish(
      metricsSubject('audit', ghost),
      JSON.stringify({ project_slug: ghost, observed_at: new Date().toISOString(), metrics: { a: 1 } }),
    );
    await js.publish(subject, good(1));

    await waitFor(async () => (await history(app, slug, 'after')).length === 1, { what: 'the good message' });
    await waitFor(async () => (await promValue(app, 'federation_metrics_duplicates_total')) === 1, {
      what: 'the duplicate counted',
    });
    expect(await history(app, slug, 'coverage.percent')).toEqual([
      { metric_type: 'coverage.percent', value: 81.5, observed_at: observedAt.toISOString() },
    ]);
    expect(events.filter((e) => e.kind === 'graph')).toEqual([
      {
        project: slug,
        kind: 'graph',
        observed_at: observedAt.toISOString(),
        metrics: { 'coverage.percent': 81.5 },
      },
    ]);
    expect(events.filter((e) => e.kind === 'audit')).toHaveLength(1);
    off();

    expect(await promValue(app, 'federation_metrics_rejected_total', 'reason="invalid_json"')).toBe(1);
    expect(await promValue(app, 'federation_metrics_rejected_total', 'reason="invalid_payload"')).toBe(1);
    expect(await promValue(app, 'federation_metrics_rejected_total', 'reason="oversize"')).toBe(1);
    expect(await promValue(app, 'federation_metrics_rejected_total', 'reason="slug_mismatch"')).toBe(1);
    // An unknown project gets a few retries (its heartbeat may be on the way), then is dropped.
    await waitFor(
      async () =>
        (await promValue(app, 'federation_metrics_rejected_total', 'reason="unknown_project"')) === 1,
      { timeoutMs: 20_000, what: 'unknown project dropped' },
    );
    expect(
      await promValue(app, 'federation_metrics_retried_total', 'reason="unknown_project"'),
    ).toBeGreaterThan(0);

    const health = (await app.inject({ url: '/api/fed/health' })).json().checks.metrics;
    expect(health).toMatchObject({
      status: 'ok',
      intake: 'consuming',
      stream: 'FED_METRICS',
      consumer: 'federation-metrics',
    });
    await waitFor(
      async () => {
        const h = (await app.inject({ url: '/api/fed/health' })).json().checks.metrics;
        return h.num_pending === 0 && h.num_ack_pending === 0;
      },
      { what: 'nothing left pending' },
    );
    await close(app);
  }, 40_000);

  it('lets a message that registers late through: the retry finds the project', async () => {
    const app = await start();
    const slug = uniqueSlug('late');
    await publishMetrics(nc, slug, { early: 1 });
    await waitFor(
      async () => (await promValue(app, 'federation_metrics_retried_total', 'reason="unknown_project"')) > 0,
    );
    await register(app, slug);
    await waitFor(async () => (await history(app, slug, 'early')).length === 1, {
      what: 'late project stored',
    });
    await close(app);
  });

  it('two instances sharing the durable consumer store each message once', async () => {
    const a = await start();
    const b = await start();
    const slug = uniqueSlug('pair');
    await register(a, slug);
    const n = 400;
    const base = Date.now() - 10_000;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        publishMetrics(nc, slug, { seq: i }, 'graph', { observedAt: new Date(base + i) }),
      ),
    );
    await waitFor(async () => (await history(a, slug, 'seq')).length === n, { what: `${n} stored` });
    const stored = async () =>
      (await promValue(a, 'federation_metrics_stored_total')) +
      (await promValue(b, 'federation_metrics_stored_total'));
    const dups = async () =>
      (await promValue(a, 'federation_metrics_duplicates_total')) +
      (await promValue(b, 'federation_metrics_duplicates_total'));
    await waitFor(async () => (await stored()) === n, { what: 'stored counters add up' });
    expect(await dups()).toBe(0);
    const values = (await history(b, slug, 'seq')).map((p) => p.value as number).sort((x, y) => x - y);
    expect(values).toEqual(Array.from({ length: n }, (_, i) => i));
    await close(a);
    await close(b);
  });

  it('keeps consuming after NATS restarts, and after its stream is deleted', async () => {
    const app = await start();
    const slug = uniqueSlug('restart');
    await register(app, slug);
    await publishMetrics(nc, slug, { n: 1 });
    await waitFor(async () => (await history(app, slug, 'n')).length === 1);

    await nats.stop();
    await waitFor(() => !app.nats.connected, { what: 'NATS seen down' });
    const degraded = (await app.inject({ url: '/api/fed/health' })).json().checks.metrics;
    expect(degraded.status).toBe('degraded');
    await nats.start();
    await waitFor(() => app.nats.connected && !nc.isClosed(), { what: 'NATS back' });
    await waitFor(
      async () => {
        await publishMetrics(nc, slug, { n: 2 }, 'graph', {
          observedAt: new Date(Date.now() - 5000),
          timeoutMs: 1000,
        });
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 200, what: 'publish after restart' },
    );
    await waitFor(async () => (await history(app, slug, 'n')).length === 2, {
      timeoutMs: 20_000,
      what: 'stored after restart',
    });

    const { jetstreamManager } = await import('@nats-io/jetstream');
    await (await jetstreamManager(nc)).streams.delete('FED_METRICS');
    await waitFor(
      async () => {
        await publishMetrics(nc, slug, { n: 3 }, 'graph', { timeoutMs: 1000 });
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 200, what: 'stream re-created' },
    );
    await waitFor(async () => (await history(app, slug, 'n')).length === 3, {
      timeoutMs: 20_000,
      what: 'stored after stream re-created',
    });
    await close(app);
  }, 60_000);

  it('publishes from the CLI: numbers as numbers, the rest as text', async () => {
    const app = await start();
    const slug = uniqueSlug('cli');
    await register(app, slug);
    const run = promisify(execFile);
    const { stdout } = await run(
      process.execPath,
      [
        'bin/federation.js',
        'metrics',
        '--slug',
        slug,
        '--kind',
        'audit',
        '--set',
        'audit.ok_count=12',
        '--set',
        'coverage.percent=81.5',
        '--set',
        'build.state=green',
      ],
      { env: { ...process.env, NATS_URL: nats.url } },
    );
    expect(stdout).toContain('stored in FED_METRICS');
    await waitFor(
      async () =>
        Object.keys((await app.inject({ url: `/api/fed/metrics/${slug}` })).json().latest).length === 3,
    );
    const latest = (await app.inject({ url: `/api/fed/metrics/${slug}` })).json().latest;
    expect(latest['audit.ok_count'].value).toBe(12);
    expect(latest['coverage.percent'].value).toBe(81.5);
    expect(latest['build.state'].value).toBe('green');

    const bad = await run(
      process.execPath,
      ['bin/federation.js', 'metrics', '--slug', 'Bad Slug', '--set', 'a=1'],
      {
        env: { ...process.env, NATS_URL: nats.url },
      },
    ).catch((err: { code: number; stderr: string }) => err);
    expect((bad as { code: number }).code).toBe(2);
    await close(app);
  });
});
