import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The server the PostgreSQL tests use; each test file gets a fresh database on it. */
export const POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** Creates an empty database with a unique name (tests run in parallel on one server). */
export async function createPostgresDatabase(
  prefix = 'fed_test',
  adminUrl = POSTGRES_ADMIN_URL,
): Promise<TestDatabase> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`drop database if exists "${name}" with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** The engines every database suite runs on: embedded PGlite and real PostgreSQL. */
export const ENGINES = [
  { name: 'pglite', create: async (): Promise<TestDatabase> => ({ url: 'memory://', drop: async () => {} }) },
  { name: 'postgres', create: () => createPostgresDatabase() },
] as const;
