import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { ManualClock } from '../src/clock.ts';
import { query } from '../src/db/connection.ts';
import type { EdgeResponse } from '../src/edges/schemas.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { ENGINES, type TestDatabase } from './helpers/postgres.ts';

const ADMIN = 'edges-admin-token';
const START = new Date('2025-06-01T12:00:00Z');
const auth = { authorization: `Bearer ${ADMIN}` };

async function register(app: App, slug: string): Promise<void> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/fed/projects',
    headers: auth,
    payload: {
      slug,
      name: `Project ${slug}`,
      hub_url: `http://${slug}.local:8000`,
      mesh_namespace: `hub.${slug}`,
    },
  });
  expect(res.statusCode).toBe(201);
}

async function metricValue(app: App, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await app.metricsRegistry.getSingleMetric(name)?.get();
  const value = metric?.values.find((v) =>
    Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l),
  );
  return value?.value ?? 0;
}

describe.each(ENGINES)('edges API on $name', (engine) => {
  let database: TestDatabase;
  let app: App;
  let clock: ManualClock;
  let a: string;
  let b: string;
  let c: string;

  // One app per engine; every test works on projects of its own (fresh slugs) at a reset clock.
  beforeAll(async () => {
    database = await engine.create();
    clock = new ManualClock(START);
    app = await buildTestApp({ DATABASE_URL: database.url, FED_ADMIN_TOKEN: ADMIN }, { clock });
  });
  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  beforeEach(async () => {
    clock.set(START);
    [a, b, c] = [uniqueSlug('ea'), uniqueSlug('eb'), uniqueSlug('ec')];
    for (const s of [a, b, c]) await register(app, s);
  });

  const post = (payload: unknown, headers: Record<string, string> = auth) =>
    app.inject({ method: 'POST', url: '/api/fed/edges', headers, payload: payload as object });

  it('creates an edge (201), then updates the same edge (200, same id) and keeps omitted fields', async () => {
    const created = await post({ from: a, to: b, kind: 'api', strength: 0.8, details: { path: '/v1' } });
    expect(created.statusCode).toBe(201);
    const edge = created.json<EdgeResponse>();
    expect(edge).toMatchObject({
      from: a,
      to: b,
      kind: 'api',
      strength: 0.8,
      source: 'api',
      details: { path: '/v1' },
    });
    expect(edge.last_seen_at).toBe('2025-06-01T12:00:00.000Z');

    clock.advance(5000);
    const updated = await post({ from: a, to: b, kind: 'api', strength: 0.3 });
    expect(updated.statusCode).toBe(200);
    expect(updated.json<EdgeResponse>()).toMatchObject({
      id: edge.id,
      strength: 0.3,
      details: { path: '/v1' },
      last_seen_at: '2025-06-01T12:00:05.000Z',
    });

    const defaulted = await post({ from: b, to: a, kind: 'queue' });
    expect(defaulted.statusCode).toBe(201);
    expect(defaulted.json<EdgeResponse>()).toMatchObject({ strength: 0.5, details: null });
  });

  it('answers 404 naming an unknown project', async () => {
    const ghost = uniqueSlug('ghost');
    const res = await post({ from: a, to: ghost, kind: 'api' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ error: 'not_found', details: { projects: [ghost] } });
    expect(res.json<{ message: string }>().message).toContain(ghost);
  });

  it.each([
    ['a kind outside the list', { kind: 'telepathy' }],
    ['a strength above 1', { kind: 'api', strength: 1.5 }],
    ['a negative strength', { kind: 'api', strength: -0.1 }],
    ['no kind', {}],
  ])('answers 400 for %s', async (_what, extra) => {
    const res = await post({ from: a, to: b, ...extra });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: string }>().error).toBe('validation_failed');
  });

  it('accepts the documented extension kinds', async () => {
    expect((await post({ from: a, to: b, kind: 'event' })).statusCode).toBe(201);
    expect((await post({ from: a, to: b, kind: 'library' })).statusCode).toBe(201);
    expect((await post({ from: a, to: b, kind: 'shared-schema' })).statusCode).toBe(201);
  });

  it('answers 400 for an edge from a project to itself', async () => {
    const res = await post({ from: a, to: a, kind: 'api' });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ message: string }>().message).toContain('itself');
  });

  it('refuses writes without the admin token (401) and stores nothing', async () => {
    expect((await post({ from: a, to: b, kind: 'api' }, {})).statusCode).toBe(401);
    expect((await post({ from: a, to: b, kind: 'api' }, { authorization: 'Bearer wrong' })).statusCode).toBe(
      401,
    );
    const created = await post({ from: a, to: b, kind: 'api' });
    const id = created.json<EdgeResponse>().id;
    expect((await app.inject({ method: 'DELETE', url: `/api/fed/edges/${id}` })).statusCode).toBe(401);
    const list = await app.inject({ method: 'GET', url: `/api/fed/edges?project=${a}` });
    expect(list.json<EdgeResponse[]>()).toHaveLength(1);
  });

  it('deletes an edge (204), then 404 for it and for a malformed id (400)', async () => {
    const id = (await post({ from: a, to: b, kind: 'api' })).json<EdgeResponse>().id;
    const del = await app.inject({ method: 'DELETE', url: `/api/fed/edges/${id}`, headers: auth });
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    const again = await app.inject({ method: 'DELETE', url: `/api/fed/edges/${id}`, headers: auth });
    expect(again.statusCode).toBe(404);
    expect(again.json<{ error: string }>().error).toBe('not_found');
    const bad = await app.inject({ method: 'DELETE', url: '/api/fed/edges/abc', headers: auth });
    expect(bad.statusCode).toBe(400);
  });

  it('filters the list by project (either end), kind and source', async () => {
    await post({ from: a, to: b, kind: 'api' });
    await post({ from: b, to: c, kind: 'queue' });
    await post({ from: c, to: a, kind: 'api' });
    await app.integrationSinks[0]?.([{ slug: a, integrations: [{ to: c, kind: 'event' }], at: clock.now() }]);

    const list = async (qs: string) => {
      const res = await app.inject({ method: 'GET', url: `/api/fed/edges?${qs}` });
      expect(res.statusCode).toBe(200);
      return res
        .json<EdgeResponse[]>()
        .filter((e) => [a, b, c].includes(e.from))
        .map((e) => `${e.from}>${e.to}:${e.kind}:${e.source}`)
        .sort();
    };
    expect(await list(`project=${b}`)).toEqual([`${a}>${b}:api:api`, `${b}>${c}:queue:api`].sort());
    expect(await list(`project=${a}&kind=api`)).toEqual([`${a}>${b}:api:api`, `${c}>${a}:api:api`].sort());
    expect(await list(`project=${a}&source=discovered`)).toEqual([`${a}>${c}:event:discovered`]);
    expect(await list(`project=${c}&kind=queue&source=api`)).toEqual([`${b}>${c}:queue:api`]);
    expect(await list(`project=${uniqueSlug('nobody')}`)).toEqual([]);
    expect((await app.inject({ method: 'GET', url: '/api/fed/edges?kind=telepathy' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/api/fed/edges?source=rumour' })).statusCode).toBe(400);
  });

  it('stores discovered edges from the integrations sink, skipping and counting unknown and self targets', async () => {
    expect(app.integrationSinks).toHaveLength(1);
    const sink = app.integrationSinks[0];
    if (!sink) throw new Error('edges registered no integrations sink');
    const unknownBefore = await metricValue(app, 'federation_edges_discovery_skipped_total', {
      reason: 'unknown_project',
    });
    const selfBefore = await metricValue(app, 'federation_edges_discovery_skipped_total', { reason: 'self' });

    await sink([
      {
        slug: a,
        integrations: [
          { to: b, kind: 'api', strength: 0.9 },
          { to: uniqueSlug('ghost'), kind: 'api' },
          { to: a, kind: 'queue' },
        ],
        at: clock.now(),
      },
    ]);
    const edges = (await app.inject({ method: 'GET', url: `/api/fed/edges?project=${a}` })).json<
      EdgeResponse[]
    >();
    expect(edges).toHaveLength(1);
    expect(edges[0]).toMatchObject({ from: a, to: b, kind: 'api', strength: 0.9, source: 'discovered' });

    expect(
      await metricValue(app, 'federation_edges_discovery_skipped_total', { reason: 'unknown_project' }),
    ).toBe(unknownBefore + 1);
    expect(await metricValue(app, 'federation_edges_discovery_skipped_total', { reason: 'self' })).toBe(
      selfBefore + 1,
    );
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('federation_edges_discovery_skipped_total{reason="unknown_project"}');
  });

  it('never downgrades an api edge to discovered, but refreshes when it was seen', async () => {
    const apiEdge = (await post({ from: a, to: b, kind: 'api', strength: 0.2 })).json<EdgeResponse>();
    clock.advance(60_000);
    await app.integrationSinks[0]?.([
      { slug: a, integrations: [{ to: b, kind: 'api', strength: 0.9 }], at: clock.now() },
    ]);
    const [edge] = (await app.inject({ method: 'GET', url: `/api/fed/edges?project=${a}` })).json<
      EdgeResponse[]
    >();
    expect(edge).toMatchObject({
      id: apiEdge.id,
      source: 'api',
      strength: 0.2,
      last_seen_at: '2025-06-01T12:01:00.000Z',
    });
  });

  it('turns a discovered edge into an api edge when the API writes it', async () => {
    await app.integrationSinks[0]?.([{ slug: a, integrations: [{ to: b, kind: 'queue' }], at: clock.now() }]);
    const res = await post({ from: a, to: b, kind: 'queue', strength: 0.7 });
    expect(res.statusCode).toBe(200);
    expect(res.json<EdgeResponse>()).toMatchObject({ source: 'api', strength: 0.7 });
  });

  it('serves the graph: every project with live status, heartbeat age and latest metrics, and every edge', async () => {
    // c heartbeats first and goes quiet (degraded after 45 s); a heartbeats now (online); b never did (offline).
    await app.catalog.updateHeartbeat(c, { version: '1.0.0' });
    clock.advance(60_000);
    await app.catalog.updateHeartbeat(a, { version: '2.0.0' });
    clock.advance(1500);

    const projectId = async (slug: string) => (await app.catalog.getProject(slug)).id;
    const aId = await projectId(a);
    const t = (s: number) => new Date(Date.UTC(2025, 5, 1, 11, 0, s)).toISOString();
    await query(
      app.db,
      sql`insert into project_metrics (project_id, metric_type, value_number, value_text, observed_at) values
          (${aId}, 'coverage', 0.61, null, ${t(1)}),
          (${aId}, 'coverage', 0.74, null, ${t(2)}),
          (${aId}, 'audit_status', null, 'passing', ${t(3)})`,
    );
    for (let i = 0; i < 15; i++) {
      await query(
        app.db,
        sql`insert into project_metrics (project_id, metric_type, value_number, observed_at)
            values (${await projectId(c)}, ${`m${String(i).padStart(2, '0')}`}, ${i}, ${t(i)})`,
      );
    }
    await post({ from: a, to: b, kind: 'api', strength: 0.8 });
    await post({ from: c, to: a, kind: 'shared-schema' });

    const res = await app.inject({ method: 'GET', url: '/api/fed/graph' });
    expect(res.statusCode).toBe(200);
    const graph = res.json<{
      nodes: Array<{
        slug: string;
        status: string;
        version: string | null;
        heartbeat_age_s: number | null;
        metrics: Record<string, { value: number | string | null; observed_at: string }>;
      }>;
      edges: EdgeResponse[];
    }>();
    const node = (slug: string) => {
      const n = graph.nodes.find((x) => x.slug === slug);
      if (!n) throw new Error(`no node ${slug}`);
      return n;
    };
    expect(node(a)).toMatchObject({ status: 'online', version: '2.0.0', heartbeat_age_s: 1.5 });
    expect(node(b)).toMatchObject({ status: 'offline', heartbeat_age_s: null, metrics: {} });
    expect(node(c)).toMatchObject({ status: 'degraded', heartbeat_age_s: 61.5 });
    expect(node(a).metrics).toEqual({
      coverage: { value: 0.74, observed_at: t(2) },
      audit_status: { value: 'passing', observed_at: t(3) },
    });
    // Capped at the 12 most recently observed types.
    expect(Object.keys(node(c).metrics).sort()).toEqual(
      Array.from({ length: 12 }, (_, i) => `m${String(i + 3).padStart(2, '0')}`),
    );
    const mine = graph.edges.filter((e) => [a, b, c].includes(e.from));
    expect(mine.map((e) => `${e.from}>${e.to}:${e.kind}`).sort()).toEqual(
      [`${a}>${b}:api`, `${c}>${a}:shared-schema`].sort(),
    );
  });

  it('documents every edges route in OpenAPI', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/api/fed/openapi.json' })).json<{
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    }>();
    expect(Object.keys(doc.paths['/api/fed/edges']?.post?.responses ?? {})).toEqual(
      expect.arrayContaining(['200', '201', '400', '401', '404']),
    );
    expect(Object.keys(doc.paths['/api/fed/edges/{id}']?.delete?.responses ?? {})).toEqual(
      expect.arrayContaining(['204', '404']),
    );
    expect(doc.paths['/api/fed/graph']?.get?.responses).toHaveProperty('200');
  });
});
