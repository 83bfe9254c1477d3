import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_FOLDER, migrationsApplied, openDatabase, query } from './connection.ts';

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
