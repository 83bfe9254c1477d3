import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { ManualClock } from '../src/clock.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { ENGINES, type TestDatabase } from './helpers/postgres.ts';

const DAY = 86_400_000;
const T0 = new Date('2025-06-01T12:00:00.000Z');
const at = (minutes: number) => new Date(T0.getTime() + minutes * 60_000);

describe.each(ENGINES)('metrics API on $name', (engine) => {
  let db: TestDatabase;
  let app: App;
  const clock = new ManualClock(at(60));
  const alpha = uniqueSlug('alpha');
  const quiet = uniqueSlug('quiet');
  const digits = String(900_000 + Math.floor(Math.random() * 99_999));
  let alphaId: number;

  const register = async (slug: string): Promise<number> => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: { slug, name: slug, hub_url: 'http://localhost:8000', mesh_namespace: `hub.${slug}` },
    });
    expect(res.statusCode).toBe(201);
    return res.json().id;
  };
  const store = (projectId: number, metricType: string, value: number | string, observedAt: Date) =>
    app.metricsService.insertObservations([{ projectId, metricType, value, observedAt }], clock.now());

  beforeAll(async () => {
    db = await engine.create();
    app = await buildTestApp({ DATABASE_URL: db.url, FED_METRICS_RETENTION_DAYS: '30' }, { clock });
    alphaId = await register(alpha);
    await register(quiet);
    for (let i = 0; i < 5; i++) await store(alphaId, 'coverage.percent', 80 + i, at(i * 10));
    await store(alphaId, 'audit.ok_count', 12, at(5));
    await store(alphaId, 'build.state', 'green', at(7));
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('answers the latest value of each metric by slug, numbers as numbers and text as text', async () => {
    const res = await app.inject({ url: `/api/fed/metrics/${alpha}` });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      project: alpha,
      project_id: alphaId,
      latest: {
        'audit.ok_count': { value: 12, observed_at: at(5).toISOString() },
        'build.state': { value: 'green', observed_at: at(7).toISOString() },
        'coverage.percent': { value: 84, observed_at: at(40).toISOString() },
      },
    });
  });

  it('answers the same by numeric id', async () => {
    const res = await app.inject({ url: `/api/fed/metrics/${alphaId}` });
    expect(res.statusCode).toBe(200);
    expect(res.json().project).toBe(alpha);
    expect(res.json().latest['coverage.percent'].value).toBe(84);
  });

  it('prefers a slug made of digits over an id', async () => {
    const id = await register(digits);
    await store(id, 'x', 1, at(1));
    const res = await app.inject({ url: `/api/fed/metrics/${digits}` });
    expect(res.json().project).toBe(digits);
  });

  it('filters history by metric, since and until, newest first', async () => {
    const byMetric = await app.inject({ url: `/api/fed/metrics/${alpha}?metric=coverage.percent` });
    expect(byMetric.statusCode).toBe(200);
    expect(byMetric.json().history.map((p: { value: number }) => p.value)).toEqual([84, 83, 82, 81, 80]);

    const since = encodeURIComponent(at(10).toISOString());
    const until = encodeURIComponent(at(30).toISOString());
    const window = await app.inject({ url: `/api/fed/metrics/${alpha}?since=${since}&until=${until}` });
    expect(window.json().history).toEqual([
      { metric_type: 'coverage.percent', value: 83, observed_at: at(30).toISOString() },
      { metric_type: 'coverage.percent', value: 82, observed_at: at(20).toISOString() },
      { metric_type: 'coverage.percent', value: 81, observed_at: at(10).toISOString() },
    ]);

    const onlySince = await app.inject({
      url: `/api/fed/metrics/${alpha}?since=${encodeURIComponent(at(6).toISOString())}`,
    });
    expect(onlySince.json().history.map((p: { metric_type: string }) => p.metric_type)).toEqual([
      'coverage.percent',
      'coverage.percent',
      'coverage.percent',
      'coverage.percent',
      'build.state',
    ]);

    const limited = await app.inject({ url: `/api/fed/metrics/${alpha}?metric=coverage.percent&limit=2` });
    expect(limited.json().history.map((p: { value: number }) => p.value)).toEqual([84, 83]);

    const plain = await app.inject({ url: `/api/fed/metrics/${alpha}` });
    expect(plain.json().history).toBeUndefined();
  });

  it('answers 404 for an unknown project and 400 for bad filters, as JSON', async () => {
    const missing = await app.inject({ url: `/api/fed/metrics/${uniqueSlug('nope')}` });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found' });
    expect((await app.inject({ url: '/api/fed/metrics/999999999' })).statusCode).toBe(404);

    for (const qs of [
      'since=yesterday',
      'until=2025-13-01T00:00:00Z',
      `since=${at(30).toISOString()}&until=${at(10).toISOString()}`,
      'metric=bad%20name',
      'limit=0',
      'limit=100001',
      'limit=abc',
    ]) {
      const res = await app.inject({ url: `/api/fed/metrics/${alpha}?${qs}` });
      expect(res.statusCode, qs).toBe(400);
      expect(res.json().message, qs).toEqual(expect.any(String));
    }
    expect((await app.inject({ url: '/api/fed/metrics/Not_A_Slug' })).statusCode).toBe(400);
  });

  it('lists the latest values of every project, with {} for one without metrics', async () => {
    const res = await app.inject({ url: '/api/fed/metrics' });
    expect(res.statusCode).toBe(200);
    const body = res.json() as Array<{ project: string; latest: Record<string, unknown> }>;
    expect(body.find((p) => p.project === quiet)?.latest).toEqual({});
    expect(body.find((p) => p.project === alpha)?.latest).toMatchObject({
      'coverage.percent': { value: 84 },
      'build.state': { value: 'green' },
    });
  });

  it('stores a redelivered observation once', async () => {
    const first = await store(alphaId, 'dup.metric', 1, at(3));
    const again = await store(alphaId, 'dup.metric', 2, at(3));
    expect(first.size).toBe(1);
    expect(again.size).toBe(0);
    const res = await app.inject({ url: `/api/fed/metrics/${alpha}?metric=dup.metric` });
    expect(res.json().history).toEqual([
      { metric_type: 'dup.metric', value: 1, observed_at: at(3).toISOString() },
    ]);
  });

  it('prunes rows older than the retention window', async () => {
    const id = await register(uniqueSlug('old'));
    await store(id, 'age', 1, new Date(clock.now().getTime() - 40 * DAY));
    await store(id, 'age', 2, new Date(clock.now().getTime() - 20 * DAY));
    expect(await app.metricsRetention.pruneNow()).toBe(1);
    clock.advance(15 * DAY);
    expect(await app.metricsRetention.pruneNow()).toBeGreaterThanOrEqual(1);
    const left = await app.inject({ url: `/api/fed/metrics/${id}?metric=age` });
    expect(left.json().history).toEqual([]);
    clock.set(at(60));
  });

  it('reports metrics intake as off in health when NATS is disabled', async () => {
    const res = await app.inject({ url: '/api/fed/health' });
    expect(res.json().checks.metrics).toMatchObject({ status: 'ok', intake: 'off' });
  });
});
