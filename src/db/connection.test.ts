import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresDatabase } from '../../test/helpers/postgres.ts';
import { MIGRATIONS_FOLDER, migrationsApplied, openDatabase, query, StatementNames } from './connection.ts';

const folder = mkdtempSync(join(tmpdir(), 'fed-journal-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe('migrationsApplied', () => {
  it('is false on a new database, true once migrated, false again when a newer migration is added', async () => {
    const handle = await openDatabase({ databaseUrl: 'memory://', dataDir: '' });
    try {
      expect(await migrationsApplied(handle.db)).toBe(false);
      await handle.migrate();
      expect(await migrationsApplied(handle.db)).toBe(true);
      const applied = await query<{ n: number }>(
        handle.db,
        sql`select count(*)::int as n from "drizzle"."__drizzle_migrations"`,
      );
      // A second migrate() is the one question above: nothing is applied twice.
      await handle.migrate();
      expect(
        await query<{ n: number }>(
          handle.db,
          sql`select count(*)::int as n from "drizzle"."__drizzle_migrations"`,
        ),
      ).toEqual(applied);

      // A release that adds a migration: the check sees it and migrate() applies it.
      cpSync(MIGRATIONS_FOLDER, folder, { recursive: true });
      const journalPath = join(folder, 'meta', '_journal.json');
      const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: Array<{ when: number }> };
      const last = journal.entries.at(-1) as { when: number };
      journal.entries.push({ ...last, when: last.when + 1 });
      writeFileSync(journalPath, JSON.stringify(journal));
      expect(await migrationsApplied(handle.db, folder)).toBe(false);
    } finally {
      await handle.close();
    }
  });
});

describe('prepared statements', () => {
  it('on PostgreSQL, runs a statement marked prepared under one name per text, parsed once per connection', async () => {
    const database = await createPostgresDatabase();
    // One connection, so that the session asked is the one that prepared.
    const handle = await openDatabase({ databaseUrl: database.url, dataDir: '', poolSize: 1 });
    try {
      const twice = (n: number) => sql`select ${n}::int * 2 as v`;
      expect(await query(handle.db, twice(2), { prepared: true })).toEqual([{ v: 4 }]);
      expect(await query(handle.db, twice(5), { prepared: true })).toEqual([{ v: 10 }]);
      // Another text is another statement; an unmarked one stays unnamed.
      expect(await query(handle.db, sql`select ${1}::int + 1 as v`, { prepared: true })).toEqual([{ v: 2 }]);
      expect(await query(handle.db, sql`select ${7}::int as v`)).toEqual([{ v: 7 }]);
      const prepared = await query<{ name: string; statement: string }>(
        handle.db,
        sql`select name, statement from pg_prepared_statements`,
      );
      expect(prepared.map((p) => p.statement).sort()).toEqual([
        'select $1::int * 2 as v',
        'select $1::int + 1 as v',
      ]);
      for (const p of prepared) expect(p.name).toMatch(/^fed_[A-Za-z0-9_-]{27}$/);
      // Planned for their values each time: a generic plan once made a status page 65 ms.
      expect(await query(handle.db, sql`select current_setting('plan_cache_mode') as mode`)).toEqual([
        { mode: 'force_custom_plan' },
      ]);
      // Inside a transaction too.
      await handle.db.transaction(async (tx) => {
        expect(await query(tx, twice(21), { prepared: true })).toEqual([{ v: 42 }]);
      });
    } finally {
      await handle.close();
      await database.drop();
    }
  });

  it('on PGlite, runs it as any other statement', async () => {
    const handle = await openDatabase({ databaseUrl: 'memory://', dataDir: '' });
    try {
      expect(await query(handle.db, sql`select ${3}::int * 2 as v`, { prepared: true })).toEqual([{ v: 6 }]);
    } finally {
      await handle.close();
    }
  });

  it('names at most its bound of texts, and says so once when it is reached', () => {
    const names = new StatementNames(2);
    const full: number[] = [];
    const a = names.nameOf('select 1', (m) => full.push(m));
    expect(a).toMatch(/^fed_/);
    expect(names.nameOf('select 1')).toBe(a);
    expect(names.nameOf('select 2')).not.toBe(a);
    expect(names.nameOf('select 3', (m) => full.push(m))).toBeUndefined();
    expect(names.nameOf('select 4', (m) => full.push(m))).toBeUndefined();
    expect(full).toEqual([2]);
    // The texts named before the bound keep their names.
    expect(names.nameOf('select 1')).toBe(a);
  });
});
