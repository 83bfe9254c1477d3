import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DatabaseHandle, openDatabase } from '../src/db/connection.ts';
import { createPostgresDatabase, POSTGRES_ADMIN_URL, type TestDatabase } from './helpers/postgres.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

describe('a PostgreSQL connection cut in the middle of a transaction', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let handle: DatabaseHandle;
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);

  beforeAll(async () => {
    db = await createPostgresDatabase();
    const admin = new URL(POSTGRES_ADMIN_URL);
    proxy = await startTcpProxy(Number(admin.port || 5432), admin.hostname);
    const url = new URL(db.url);
    url.port = String(proxy.port);
    handle = await openDatabase({ databaseUrl: url.toString(), dataDir: '' });
    process.on('uncaughtException', onUncaught);
  });
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await handle?.close();
    await proxy?.close();
    await db?.drop();
  });

  it('fails that transaction, not the process, and the next query works once the database is back', async () => {
    const tx = handle.db.transaction(async (t) => {
      await t.execute(sql`select 1`);
      await proxy.down();
      await t.execute(sql`select pg_sleep(0.1)`);
    });
    await expect(tx).rejects.toThrow();
    expect(uncaught).toEqual([]);
    await proxy.up();
    const rows = (await handle.db.execute(sql`select 2 as two`)) as unknown as {
      rows: Array<{ two: number }>;
    };
    expect(rows.rows[0]?.two).toBe(2);
  });
});
