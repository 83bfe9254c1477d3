import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CatalogService } from '../catalog/catalog-service.ts';
import { ManualClock } from '../clock.ts';
import { type DatabaseHandle, openDatabase, query } from '../db/connection.ts';
import { InputError, NotFoundError } from '../errors.ts';
import { EdgesService } from './edges-service.ts';

const slug = (p: string) => `${p}-${randomBytes(3).toString('hex')}`;

describe('EdgesService', () => {
  let database: DatabaseHandle;
  let catalog: CatalogService;
  let edges: EdgesService;
  const clock = new ManualClock(new Date('2025-01-01T00:00:00Z'));
  let a: string;
  let b: string;
  let c: string;

  beforeAll(async () => {
    database = await openDatabase({ databaseUrl: 'memory://', dataDir: '' });
    await database.migrate();
    catalog = new CatalogService({
      db: database.db,
      clock,
      thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
    });
    edges = new EdgesService({ db: database.db, clock, catalog });
  });
  afterAll(async () => {
    await database.close();
  });
  beforeEach(async () => {
    [a, b, c] = [slug('a'), slug('b'), slug('c')];
    for (const s of [a, b, c]) {
      await catalog.registerProject({ slug: s, name: s, hubUrl: `http://${s}`, meshNamespace: `hub.${s}` });
    }
  });

  const at = (s: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, s));
  const keys = async (project: string) =>
    (await edges.listEdges({ project }))
      .map((e) => `${e.from}>${e.to}:${e.kind}:${e.source}:${e.strength}`)
      .sort();

  it('refuses self edges and names every unknown project', async () => {
    await expect(edges.upsertApiEdge({ from: a, to: a, kind: 'api' })).rejects.toBeInstanceOf(InputError);
    const err = await edges.upsertApiEdge({ from: 'nope-1', to: 'nope-2', kind: 'api' }).catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('project nope-1 and nope-2 are not registered');
  });

  it('keeps only the latest report of a project in a batch, and one row per edge', async () => {
    const result = await edges.recordDiscovered([
      { slug: a, integrations: [{ to: b, kind: 'api', strength: 0.1 }], at: at(2) },
      {
        slug: a,
        integrations: [
          { to: b, kind: 'api', strength: 0.3 },
          { to: b, kind: 'api', strength: 0.4 },
        ],
        at: at(5),
      },
      { slug: a, integrations: [{ to: c, kind: 'api' }], at: at(1) },
    ]);
    expect(result.upserted).toBe(1);
    expect(await keys(a)).toEqual([`${a}>${b}:api:discovered:0.4`]);
  });

  it('skips invalid, self and unknown integrations without failing the batch', async () => {
    const result = await edges.recordDiscovered([
      {
        slug: a,
        integrations: [
          { to: b, kind: 'telepathy' },
          { to: b, kind: 'api', strength: 2 },
          { to: a, kind: 'api' },
          { to: 'not-registered', kind: 'api' },
          { to: c, kind: 'library' },
        ],
        at: at(1),
      },
      { slug: 'also-not-registered', integrations: [{ to: a, kind: 'api' }], at: at(1) },
    ]);
    expect(result.skipped).toEqual({ invalid: 2, self: 1, unknown_project: 2 });
    expect(await keys(a)).toEqual([`${a}>${c}:library:discovered:0.5`]);
  });

  it('prunes what a project stops reporting, unless newer evidence confirmed it', async () => {
    await edges.recordDiscovered([
      {
        slug: a,
        integrations: [
          { to: b, kind: 'api' },
          { to: c, kind: 'queue' },
        ],
        at: at(10),
      },
    ]);
    // A report older than the edge's last sighting (e.g. from a lagging replica) must not remove it.
    const stale = await edges.recordDiscovered([{ slug: a, integrations: [], at: at(5) }]);
    expect(stale.pruned).toBe(0);
    const fresh = await edges.recordDiscovered([
      { slug: a, integrations: [{ to: b, kind: 'api' }], at: at(20) },
    ]);
    expect(fresh.pruned).toBe(1);
    expect(await keys(a)).toEqual([`${a}>${b}:api:discovered:0.5`]);
  });

  it('never prunes or rewrites config and api edges from discovery', async () => {
    await edges.syncConfigEdges([{ from: a, to: b, kind: 'api', strength: 0.9 }]);
    await edges.upsertApiEdge({ from: a, to: c, kind: 'queue', strength: 0.1 });
    await edges.recordDiscovered([
      { slug: a, integrations: [{ to: b, kind: 'api', strength: 0.2 }], at: at(30) },
    ]);
    await edges.recordDiscovered([{ slug: a, integrations: [], at: at(40) }]);
    expect(await keys(a)).toEqual([`${a}>${b}:api:config:0.9`, `${a}>${c}:queue:api:0.1`]);
    const [configEdge] = await edges.listEdges({ project: a, source: 'config' });
    expect(configEdge?.lastSeenAt).toEqual(at(30));
  });

  it('gives each node its latest value per metric type, the most recent types first, capped', async () => {
    const { id } = await catalog.getProject(a);
    for (let i = 0; i < 5; i++) {
      await query(
        database.db,
        sql`insert into project_metrics (project_id, metric_type, value_number, observed_at)
            values (${id}, ${`t${i}`}, ${i}, ${at(i).toISOString()}), (${id}, ${`t${i}`}, ${i * 10}, ${at(i + 100).toISOString()})`,
      );
    }
    const latest = (await edges.latestMetrics(3)).get(id);
    expect(Object.fromEntries([...(latest ?? [])].map(([k, v]) => [k, v.value]))).toEqual({
      t2: 20,
      t3: 30,
      t4: 40,
    });
  });
});
