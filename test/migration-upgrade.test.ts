/**
 * Databases of earlier releases (migrations 0000–0001, 0000–0002, 0000–0004 and 0000–0005, with data) upgrade in place:
 * nothing is lost, counts start right, and every project that may still change has a deadline queued.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CatalogService } from '../src/catalog/catalog-service.ts';
import { ManualClock } from '../src/clock.ts';
import { MIGRATIONS_FOLDER, openDatabase } from '../src/db/connection.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';

let database: TestDatabase;
let database2: TestDatabase;
let database3: TestDatabase;
let database4: TestDatabase;
const folders: string[] = [];

/** The migrations folder as a release that had the first `count` migrations shipped it. */
function releaseWith(count: number): string {
  const folder = mkdtempSync(join(tmpdir(), 'fed-migrations-'));
  folders.push(folder);
  cpSync(MIGRATIONS_FOLDER, folder, { recursive: true });
  const journalPath = join(folder, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: unknown[] };
  journal.entries = journal.entries.slice(0, count);
  writeFileSync(journalPath, JSON.stringify(journal));
  return folder;
}

beforeAll(async () => {
  database = await createPostgresDatabase();
  database2 = await createPostgresDatabase();
  database3 = await createPostgresDatabase();
  database4 = await createPostgresDatabase();
});
afterAll(async () => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  await database?.drop();
  await database2?.drop();
  await database3?.drop();
  await database4?.drop();
});

const queuedSql = `select slug, status,
    exists (select 1 from project_deadlines d where p.id = any (d.project_ids)) as due
  from projects p order by slug`;

describe('upgrading a database of the previous release', () => {
  it('from 0001: keeps every row, counts the catalog and gives live projects a deadline', async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await migrate(drizzle({ client }), { migrationsFolder: releaseWith(2) });
    const now = new Date();
    const ago = (s: number) => new Date(now.getTime() - s * 1000).toISOString();
    await client.query(
      `insert into projects (slug, name, hub_url, mesh_namespace, status, last_heartbeat_at, reported_health, status_changed_at)
       values ('old-online', 'a', 'http://a', 'hub.a', 'online', $1, 'ok', $1),
              ('old-degraded', 'b', 'http://b', 'hub.b', 'degraded', $2, 'ok', $2),
              ('old-stale', 'c', 'http://c', 'hub.c', 'online', $3, 'ok', $3),
              ('old-offline', 'd', 'http://d', 'hub.d', 'offline', null, null, null)`,
      [ago(10), ago(50), ago(500)],
    );
    await client.query(
      `insert into project_status_events (project_id, from_status, to_status, at, reason)
       select id, 'offline', 'online', $1, 'heartbeat received' from projects where slug = 'old-online'`,
      [ago(10)],
    );
    await client.end();

    const handle = await openDatabase({ databaseUrl: database.url, dataDir: '' });
    try {
      await handle.migrate();
      const check = new pg.Client({ connectionString: database.url });
      await check.connect();
      const rows = (await check.query<{ slug: string; status: string; due: boolean }>(queuedSql)).rows;
      expect(rows).toEqual([
        { slug: 'old-degraded', status: 'degraded', due: true },
        { slug: 'old-offline', status: 'offline', due: false },
        { slug: 'old-online', status: 'online', due: true },
        { slug: 'old-stale', status: 'online', due: true },
      ]);
      const events = await check.query('select count(*)::int as n from project_status_events');
      expect(events.rows[0].n).toBe(1);
      await check.end();

      // The migration made them due at its own now(): look just after it.
      const clock = new ManualClock(Date.now() + 1000);
      const catalog = new CatalogService({
        db: handle.db,
        clock,
        thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
        guard: { state: () => ({ heardSince: new Date(0), holdAll: false }) },
      });
      // Counted once by the migration, before any sweep: stored statuses, corrected by the rule for what is due.
      expect(await catalog.countByStatus()).toEqual({ online: 1, degraded: 1, offline: 2 });
      // Release 0002 had made them all due at the migration's now(); start-up queues the deadlines
      // of this run's thresholds (the ones queued early are dropped when they come due).
      expect(await catalog.reconcile()).toBe(3);
      const swept = await catalog.sweepStatuses();
      expect(swept.map((t) => `${t.slug}:${t.from}>${t.to}`)).toEqual(['old-stale:online>offline']);
      expect(await catalog.countByStatus()).toEqual({ online: 1, degraded: 1, offline: 2 });
      // The live ones now wait for their own deadlines.
      clock.advance(40_001);
      expect((await catalog.sweepStatuses()).map((t) => `${t.slug}:${t.from}>${t.to}`).sort()).toEqual([
        'old-degraded:degraded>offline',
        'old-online:online>degraded',
      ]);
      // Start-up queues every live deadline again; none of them is due yet, and none is lost.
      expect(await catalog.reconcile()).toBe(1);
      expect(await catalog.sweepStatuses()).toEqual([]);
      clock.advance(60_000);
      expect((await catalog.sweepStatuses()).map((t) => `${t.slug}:${t.from}>${t.to}`)).toEqual([
        'old-online:degraded>offline',
      ]);
    } finally {
      await handle.close();
    }
  });

  it('from 0002: the deadlines stored in projects.due_at move to the queue, each at or after its own', async () => {
    const client = new pg.Client({ connectionString: database2.url });
    await client.connect();
    await migrate(drizzle({ client }), { migrationsFolder: releaseWith(3) });
    const now = new Date();
    const at = (s: number) => new Date(now.getTime() + s * 1000).toISOString();
    // As release 0002 left them: a live project due in 35 s (its degraded deadline), a degraded one
    // due in 5 s (offline), one overdue, and an offline one with nothing due.
    await client.query(
      `insert into projects (slug, name, hub_url, mesh_namespace, status, last_heartbeat_at, reported_health, status_changed_at, due_at)
       values ('v2-online', 'a', 'http://a', 'hub.a', 'online', $1, 'ok', $1, $2),
              ('v2-degraded', 'b', 'http://b', 'hub.b', 'degraded', $3, 'ok', $3, $4),
              ('v2-overdue', 'c', 'http://c', 'hub.c', 'online', $5, 'ok', $5, $6),
              ('v2-offline', 'd', 'http://d', 'hub.d', 'offline', null, null, null, null)`,
      [at(-10), at(35), at(-85), at(5), at(-50), at(-5)],
    );
    await client.end();

    const handle = await openDatabase({ databaseUrl: database2.url, dataDir: '' });
    try {
      await handle.migrate();
      const check = new pg.Client({ connectionString: database2.url });
      await check.connect();
      expect((await check.query(queuedSql)).rows).toEqual([
        { slug: 'v2-degraded', status: 'degraded', due: true },
        { slug: 'v2-offline', status: 'offline', due: false },
        { slug: 'v2-online', status: 'online', due: true },
        { slug: 'v2-overdue', status: 'online', due: true },
      ]);
      const columns = await check.query(
        `select column_name from information_schema.columns where table_name = 'projects' and column_name = 'due_at'`,
      );
      expect(columns.rows).toEqual([]);
      await check.end();

      const clock = new ManualClock(now.getTime() + 1000);
      const catalog = new CatalogService({
        db: handle.db,
        clock,
        thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
        guard: { state: () => ({ heardSince: new Date(0), holdAll: false }) },
      });
      const swept = async (s: number) => {
        clock.set(now.getTime() + s * 1000);
        return (await catalog.sweepStatuses()).map((t) => `${t.slug}:${t.from}>${t.to}`).sort();
      };
      expect(await swept(1)).toEqual(['v2-overdue:online>degraded']);
      expect(await swept(6)).toEqual(['v2-degraded:degraded>offline']);
      expect(await swept(36)).toEqual(['v2-online:online>degraded']);
      expect(await swept(41)).toEqual(['v2-overdue:degraded>offline']);
    } finally {
      await handle.close();
    }
  });
  it('from 0004: rows and their deadlines stay, no row is held, and the API reads them as before', async () => {
    const client = new pg.Client({ connectionString: database3.url });
    await client.connect();
    await migrate(drizzle({ client }), { migrationsFolder: releaseWith(5) });
    const now = new Date();
    const at = (s: number) => new Date(now.getTime() + s * 1000).toISOString();
    await client.query(
      `insert into projects (slug, name, hub_url, mesh_namespace, status, last_heartbeat_at, reported_health, status_changed_at)
       values ('v4-online', 'a', 'http://a', 'hub.a', 'online', $1, 'ok', $1),
              ('v4-late', 'b', 'http://b', 'hub.b', 'online', $2, 'ok', $2)`,
      [at(-10), at(-60)],
    );
    await client.query(
      `insert into project_deadlines (due_at, project_ids)
       select $1::timestamptz, array_agg(id) from projects where slug = 'v4-late'`,
      [at(-15)],
    );
    await client.end();

    const handle = await openDatabase({ databaseUrl: database3.url, dataDir: '' });
    try {
      await handle.migrate();
      const check = new pg.Client({ connectionString: database3.url });
      await check.connect();
      expect((await check.query('select slug, status, held_until from projects order by slug')).rows).toEqual(
        [
          { slug: 'v4-late', status: 'online', held_until: null },
          { slug: 'v4-online', status: 'online', held_until: null },
        ],
      );
      expect(Number((await check.query('select count(*) from project_deadlines')).rows[0].count)).toBe(1);
      await check.end();
      const catalog = new CatalogService({
        db: handle.db,
        clock: new ManualClock(now.getTime()),
        thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
        guard: { state: () => ({ heardSince: new Date(0), holdAll: false }) },
      });
      // Late past its degraded deadline, before any sweep: shown as the rule says.
      expect((await catalog.getProject('v4-late')).status).toBe('degraded');
      expect((await catalog.getProjects({ status: 'degraded' })).projects.map((p) => p.slug)).toEqual([
        'v4-late',
      ]);
    } finally {
      await handle.close();
    }
  });
  it('from 0005: queued deadlines stay (owned by no replica, so looked up) and recent offline flips are counted', async () => {
    const client = new pg.Client({ connectionString: database4.url });
    await client.connect();
    await migrate(drizzle({ client }), { migrationsFolder: releaseWith(6) });
    const now = new Date();
    const at = (s: number) => new Date(now.getTime() + s * 1000).toISOString();
    await client.query(
      `insert into projects (slug, name, hub_url, mesh_namespace, status, last_heartbeat_at, reported_health, status_changed_at)
       values ('v5-late', 'a', 'http://a', 'hub.a', 'online', $1, 'ok', $1),
              ('v5-gone', 'b', 'http://b', 'hub.b', 'offline', $2, 'ok', $3)`,
      [at(-50), at(-120), at(-10)],
    );
    await client.query(
      `insert into project_deadlines (due_at, project_ids)
       select $1::timestamptz, array_agg(id) from projects where slug = 'v5-late'`,
      [at(-5)],
    );
    await client.query(
      `insert into project_status_events (project_id, from_status, to_status, at, reason)
       select id, 'degraded', 'offline', $1, 'no heartbeat for more than 90s' from projects where slug = 'v5-gone'`,
      [at(-10)],
    );
    await client.end();

    const handle = await openDatabase({ databaseUrl: database4.url, dataDir: '' });
    try {
      await handle.migrate();
      const check = new pg.Client({ connectionString: database4.url });
      await check.connect();
      expect(
        (await check.query('select queued_by, cardinality(project_ids) as n from project_deadlines')).rows,
      ).toEqual([{ queued_by: null, n: 1 }]);
      await check.end();
      const catalog = new CatalogService({
        db: handle.db,
        clock: new ManualClock(now.getTime()),
        thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
        guard: { state: () => ({ heardSince: new Date(0), holdAll: false }) },
      });
      // The guard's count of recent offline flips reads the new partial index and finds the old one.
      const counts = await catalog.countPendingOffline();
      expect(counts.pending).toBeGreaterThanOrEqual(1);
      expect((await catalog.sweepStatuses()).map((t) => `${t.slug}:${t.from}>${t.to}`)).toEqual([
        'v5-late:online>degraded',
      ]);
    } finally {
      await handle.close();
    }
  });
});
