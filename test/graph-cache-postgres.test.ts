/**
 * The grouped overview and the problems list on real PostgreSQL, at a size where the planner's choice
 * matters: both read the projects that are not online through indexes (never a scan of the catalog),
 * the overview is shared and read again only when something changed — a transition in this instance
 * or in another replica, a project registered, time making a project due — and it always equals the
 * brute-force aggregate over every row (so it never shows a stale `online`).
 */
import { type SQL, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { CatalogService } from '../src/catalog/catalog-service.ts';
import { ManualClock } from '../src/clock.ts';
import { query } from '../src/db/connection.ts';
import {
  type GroupBy,
  groupedGraph,
  groupKeySql,
  notOnlineSql,
  problemsSql,
} from '../src/edges/graph-queries.ts';
import type { ProjectStatus } from '../src/protocol/index.ts';
import { buildTestApp } from './helpers/app.ts';
import { seedFleet } from './helpers/fleet.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';

const N = 20_000;
const BYS: GroupBy[] = ['tag', 'namespace', 'status'];

let database: TestDatabase;
let app: App;
let clock: ManualClock;
let slug: (i: number) => string;

beforeAll(async () => {
  database = await createPostgresDatabase();
  clock = new ManualClock(Date.parse('2026-03-01T12:00:00Z'));
  app = await buildTestApp(
    {
      DATABASE_URL: database.url,
      FED_DEGRADED_AFTER_S: '45',
      FED_OFFLINE_AFTER_S: '90',
      // Sweeps happen when a test says so.
      FED_SWEEP_INTERVAL_S: '3600',
    },
    { clock },
  );
  // One project in 50 offline (never beat), one in 100 degraded: problems are a small share, as in a fleet.
  ({ slugs: slug } = await seedFleet(app, {
    projects: N,
    edges: 2 * N,
    offlineEvery: 50,
    degradedEvery: 100,
    teams: 8,
  }));
  // The seed writes rows directly: give them their deadlines and counts as start-up would.
  await app.catalog.reconcile();
  await query(app.db, sql`analyze projects`);
  await query(app.db, sql`analyze integration_edges`);
}, 120_000);

afterAll(async () => {
  await app?.close();
  await database?.drop();
});

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

async function scansOfProjects(statement: SQL): Promise<string[]> {
  const [row] = await query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
    app.db,
    sql`explain (format json) ${statement}`,
  );
  const found: string[] = [];
  const walk = (n: PlanNode) => {
    if (n['Relation Name'] === 'projects') found.push(n['Node Type']);
    for (const c of n.Plans ?? []) walk(c);
  };
  for (const p of row?.['QUERY PLAN'] ?? []) walk(p.Plan);
  return found;
}

/** The overview the slow way, over every row, with the rule applied now: what the cache must equal. */
const bruteForce = (by: GroupBy) => groupedGraph(app.db, by, app.catalog.statusSql());

const heartbeat = (s: string) => app.catalog.updateHeartbeat(s);

describe('problems and the overview read indexes, not the catalog', () => {
  it('plans the problems list without a sequential scan of projects', async () => {
    const now = clock.now();
    const scans = await scansOfProjects(
      problemsSql(app.catalog.statusSql(now), app.catalog.dueStatusSql(now), app.catalog.dueIdsSql(now), 100),
    );
    expect(scans.length).toBeGreaterThan(0);
    expect(scans).not.toContain('Seq Scan');
  });

  it('plans the not-online read of the overview without a sequential scan, for every grouping', async () => {
    const now = clock.now();
    for (const by of ['tag', 'namespace'] as const) {
      const key = groupKeySql(by, sql`status` as SQL<ProjectStatus>);
      const scans = await scansOfProjects(
        sql`select key, st, count(*) from (${notOnlineSql(key, app.catalog.statusSql(now), app.catalog.dueStatusSql(now), app.catalog.dueIdsSql(now))}) n group by 1, 2`,
      );
      expect(scans.length).toBeGreaterThan(0);
      expect(scans).not.toContain('Seq Scan');
    }
  });

  it('would see a sequential scan if a read did scan the catalog (the check can fail)', async () => {
    expect(await scansOfProjects(sql`select count(*) from projects where name like '%team-3%'`)).toContain(
      'Seq Scan',
    );
  });
});

describe('the overview is shared and follows changes', () => {
  it('equals the brute-force aggregate for every grouping', async () => {
    for (const by of BYS) expect(await app.edges.groupedGraph(by)).toEqual(await bruteForce(by));
  });

  it('answers again from the cache while nothing changed', async () => {
    await app.edges.groupedGraph('tag');
    const before = { ...app.edges.groupedCache.builds };
    for (let i = 0; i < 5; i++) await app.edges.groupedGraph('tag');
    expect(app.edges.groupedCache.builds).toEqual(before);
  });

  it('follows a transition of this instance without reading the structure again', async () => {
    const s = slug(50); // offline: never beat
    const res = await app.inject({ url: '/api/fed/graph?group_by=tag' });
    const group = (body: { groups: Array<{ key: string; status_counts: Record<ProjectStatus, number> }> }) =>
      body.groups.find((g) => g.key === 'team-2');
    const before = group(res.json());
    const builds = { ...app.edges.groupedCache.builds };
    await heartbeat(s);
    const after = group((await app.inject({ url: '/api/fed/graph?group_by=tag' })).json());
    expect(after?.status_counts.offline).toBe((before?.status_counts.offline ?? 0) - 1);
    expect(after?.status_counts.online).toBe((before?.status_counts.online ?? 0) + 1);
    expect(app.edges.groupedCache.builds.structure).toBe(builds.structure);
    expect(app.edges.groupedCache.builds.status).toBe(builds.status + 1);
    expect(await app.edges.groupedGraph('tag')).toEqual(await bruteForce('tag'));
  });

  it("follows another replica's transition, which this instance never heard of", async () => {
    const replica = new CatalogService({ db: app.db, clock, thresholds: app.catalog.thresholds });
    const s = slug(100); // offline: never beat
    const before = await app.edges.groupedGraph('status');
    await replica.updateHeartbeat(s);
    const after = await app.edges.groupedGraph('status');
    const count = (g: typeof before, k: ProjectStatus) => g.groups.find((x) => x.key === k)?.count ?? 0;
    expect(count(after, 'offline')).toBe(count(before, 'offline') - 1);
    expect(count(after, 'online')).toBe(count(before, 'online') + 1);
    expect(after).toEqual(await bruteForce('status'));
  });

  it('never shows a stale online: projects past their deadline count as the rule says before any sweep', async () => {
    const before = await app.edges.groupedGraph('namespace');
    const online = before.groups.reduce((n, g) => n + g.statusCounts.online, 0);
    expect(online).toBeGreaterThan(0);
    // Past the degraded threshold: every online project is now degraded by the rule, none swept yet.
    clock.advance(50_000);
    const after = await app.edges.groupedGraph('namespace');
    expect(after.groups.reduce((n, g) => n + g.statusCounts.online, 0)).toBe(0);
    for (const by of BYS) expect(await app.edges.groupedGraph(by)).toEqual(await bruteForce(by));
    // The problems list agrees: the degraded ones are listed, the header counts have no online left.
    const problems = (await app.inject({ url: '/api/fed/problems?limit=5' })).json();
    expect(problems.counts.online).toBe(0);
    // Once swept, the stored statuses say the same.
    await app.catalog.sweepStatuses();
    for (const by of BYS) expect(await app.edges.groupedGraph(by)).toEqual(await bruteForce(by));
  });

  it('shows a project registered through the API at once, in a group of its own', async () => {
    const builds = app.edges.groupedCache.builds.structure;
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: {
        slug: 'cache-newcomer',
        name: 'Newcomer',
        hub_url: 'http://127.0.0.1:9/newcomer',
        mesh_namespace: 'mars.newcomer',
        tags: ['team-new'],
      },
    });
    expect(res.statusCode).toBe(201);
    const tag = await app.edges.groupedGraph('tag');
    expect(tag.groups.find((g) => g.key === 'team-new')).toMatchObject({
      count: 1,
      statusCounts: { online: 0, degraded: 0, offline: 1 },
    });
    expect(app.edges.groupedCache.builds.structure).toBeGreaterThan(builds);
    for (const by of BYS) expect(await app.edges.groupedGraph(by)).toEqual(await bruteForce(by));
  });

  it('shows a new edge between groups at once', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/edges',
      payload: { from: 'cache-newcomer', to: slug(1), kind: 'api' },
    });
    expect(res.statusCode).toBe(201);
    const tag = await app.edges.groupedGraph('tag');
    expect(tag.edges.find((e) => e.from === 'team-new')).toMatchObject({ to: 'team-1', count: 1 });
    for (const by of BYS) expect(await app.edges.groupedGraph(by)).toEqual(await bruteForce(by));
  });
});
