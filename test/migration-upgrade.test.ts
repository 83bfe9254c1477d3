/**
 * A database of the previous release (migrations 0000–0001, with data) upgrades in place: nothing is
 * lost, counts start right, and every project that may still change gets a deadline.
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

const PREVIOUS_RELEASE_MIGRATIONS = 2; // 0000_init, 0001_projects_storage

let database: TestDatabase;
let folder: string;

beforeAll(async () => {
  database = await createPostgresDatabase();
  folder = mkdtempSync(join(tmpdir(), 'fed-migrations-'));
  cpSync(MIGRATIONS_FOLDER, folder, { recursive: true });
  const journalPath = join(folder, 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: unknown[] };
  journal.entries = journal.entries.slice(0, PREVIOUS_RELEASE_MIGRATIONS);
  writeFileSync(journalPath, JSON.stringify(journal));
});
afterAll(async () => {
  rmSync(folder, { recursive: true, force: true });
  await database?.drop();
});

describe('upgrading a database of the previous release', () => {
  it('keeps every row, counts the catalog and gives live projects a deadline', async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await migrate(drizzle({ client }), { migrationsFolder: folder });
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
      const rows = (
        await check.query<{ slug: string; status: string; due: boolean }>(
          'select slug, status, due_at is not null as due from projects order by slug',
        )
      ).rows;
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
      const swept = await catalog.sweepStatuses();
      expect(swept.map((t) => `${t.slug}:${t.from}>${t.to}`)).toEqual(['old-stale:online>offline']);
      expect(await catalog.countByStatus()).toEqual({ online: 1, degraded: 1, offline: 2 });
      // The live ones now wait for their own deadlines.
      clock.advance(40_001);
      expect((await catalog.sweepStatuses()).map((t) => `${t.slug}:${t.from}>${t.to}`).sort()).toEqual([
        'old-degraded:degraded>offline',
        'old-online:online>degraded',
      ]);
      expect(await catalog.reconcile()).toBe(0);
    } finally {
      await handle.close();
    }
  });
});
