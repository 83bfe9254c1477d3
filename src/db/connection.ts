import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { type SQL, sql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import * as schema from './schema.ts';

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

export const MIGRATIONS_FOLDER = resolve(dirname(fileURLToPath(import.meta.url)), '../../drizzle');
/** Serialises migrations when several replicas start together on one PostgreSQL. */
const MIGRATION_LOCK_KEY = 0x6665645f; // "fed_"

export const STATEMENT_TIMEOUT_MS = 15_000;

export interface DatabaseHandle {
  db: Database;
  engine: 'postgres' | 'pglite';
  /** Where the data lives, without credentials (safe to log). */
  location: string;
  migrate(): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * True when the database already holds every migration under drizzle/. Drizzle's migrator applies
 * each journal entry newer than the newest `created_at` it recorded, after creating its schema and
 * table and opening a transaction; this asks the one question first, so a start on an up-to-date
 * database (every start but the first) costs one query. An absent table means a new database.
 */
export async function migrationsApplied(
  db: Database,
  migrationsFolder = MIGRATIONS_FOLDER,
): Promise<boolean> {
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta/_journal.json'), 'utf8')) as {
    entries: Array<{ when: number }>;
  };
  const newest = Math.max(...journal.entries.map((e) => e.when));
  try {
    const rows = await query<{ last: string | number | null }>(
      db,
      sql`select max(created_at) as last from "drizzle"."__drizzle_migrations"`,
    );
    return rows[0]?.last != null && Number(rows[0].last) >= newest;
  } catch {
    return false;
  }
}

/**
 * Statements given a name at most (see `query`'s `prepared`): each is prepared once per pooled
 * connection and kept by PostgreSQL for the connection's life, so their number is bounded. A text
 * beyond the bound runs unnamed, as any other.
 */
export const MAX_PREPARED_STATEMENTS = 256;

/** The names `query` prepares statements under: a digest of each text, so that each variant has its own. */
export class StatementNames {
  readonly #names = new Map<string, string>();
  readonly #max: number;
  #full = false;

  constructor(max = MAX_PREPARED_STATEMENTS) {
    this.#max = max;
  }

  /** The name of `text`, or undefined once `max` texts have one (`onFull` is told the first time). */
  nameOf(text: string, onFull?: (max: number) => void): string | undefined {
    const known = this.#names.get(text);
    if (known !== undefined) return known;
    if (this.#names.size >= this.#max) {
      if (!this.#full) onFull?.(this.#max);
      this.#full = true;
      return undefined;
    }
    const name = `fed_${createHash('sha1').update(text).digest('base64url')}`;
    this.#names.set(text, name);
    return name;
  }
}

const statementNames = new StatementNames();

// A statement marked prepared whose text changes from call to call (a value written into it rather
// than passed as a parameter) would use the names up: said once, loudly, rather than never.
const warnFull = (max: number) =>
  process.emitWarning(
    `more than ${max} distinct statements were asked to be prepared; the rest run unnamed (is a value written into a statement's text?)`,
    { code: 'FED_PREPARED_STATEMENTS' },
  );

/** What `query` needs of drizzle's database object beyond its public API (drizzle-orm 0.45). */
interface PreparingDatabase {
  dialect: { sqlToQuery(statement: SQL): { sql: string; params: unknown[] } };
  session: {
    prepareQuery(
      query: { sql: string; params: unknown[] },
      fields: undefined,
      name: string | undefined,
      isResponseInArrayMode: boolean,
    ): { execute(): Promise<unknown> };
  };
}

/**
 * Runs raw SQL and returns its rows, the same way on node-postgres and PGlite.
 *
 * `prepared`: for the statements run many times a second (pages, one project, counts, the sweeper's,
 * the writer's), a named prepared statement on node-postgres: PostgreSQL parses it once per
 * connection. A status page took 1.0 ms to parse (and 1.3 ms to plan) for 0.05 ms of execution
 * (1,000,000 projects, idle); under load that CPU is what a read waits behind. Each execution is
 * still planned for its values (`plan_cache_mode = force_custom_plan` on the pool's connections):
 * at 100,000 projects PostgreSQL switched the status page to its generic plan, which took 65 ms a
 * page under the load instead of a few. PGlite ignores the name and runs the statement as before.
 */
export async function query<T>(
  db: Database,
  statement: SQL,
  opts: { prepared?: boolean } = {},
): Promise<T[]> {
  if (!opts.prepared) {
    const result = (await db.execute(statement)) as unknown as { rows: T[] };
    return result.rows;
  }
  const internal = db as unknown as PreparingDatabase;
  const q = internal.dialect.sqlToQuery(statement);
  const result = (await internal.session
    .prepareQuery(q, undefined, statementNames.nameOf(q.sql, warnFull), false)
    .execute()) as { rows: T[] };
  return result.rows;
}

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable)';
  }
}

/**
 * One connection function, two engines: PostgreSQL when `databaseUrl` is a postgres URL,
 * in-memory PGlite for `memory://`, PGlite on disk under `dataDir` when it is unset.
 */
export async function openDatabase(opts: {
  databaseUrl: string | undefined;
  dataDir: string;
  poolSize?: number;
}): Promise<DatabaseHandle> {
  const { databaseUrl } = opts;
  if (databaseUrl && /^postgres(ql)?:\/\//.test(databaseUrl)) {
    const pool = new pg.Pool({
      connectionString: databaseUrl,
      max: opts.poolSize ?? 10,
      // Named statements are parsed once, but planned for their values every time (see `query`).
      options: '-c plan_cache_mode=force_custom_plan',
      connectionTimeoutMillis: 5000,
      // A server that stops answering without closing the socket must not hang the writer, the
      // sweeper or shutdown: statements end server-side after 15 s, and the client gives up at 20 s.
      statement_timeout: STATEMENT_TIMEOUT_MS,
      query_timeout: STATEMENT_TIMEOUT_MS + 5000,
      keepAlive: true,
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    pool.on('error', () => {});
    // Nor may a checked-out one (a transaction in flight when the connection drops): pg emits 'error'
    // on it with no listener, which killed the process in the soak. Its queries still reject, and the
    // pool drops a client that is no longer queryable when it is released.
    pool.on('connect', (client) => client.on('error', () => {}));
    const db = drizzlePg({ client: pool, schema }) as unknown as Database;
    return {
      db,
      engine: 'postgres',
      location: redactUrl(databaseUrl),
      async migrate() {
        if (await migrationsApplied(db)) return;
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        try {
          await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
          await migratePg(drizzlePg({ client }), { migrationsFolder: MIGRATIONS_FOLDER });
        } finally {
          await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
          await client.end();
        }
      },
      async ping() {
        await pool.query('select 1');
      },
      async close() {
        await pool.end();
      },
    };
  }

  let client: PGlite;
  let location: string;
  if (databaseUrl === 'memory://') {
    client = new PGlite();
    location = 'memory://';
  } else {
    const dir = resolve(opts.dataDir, 'pgdata');
    mkdirSync(dirname(dir), { recursive: true });
    client = new PGlite(dir);
    location = join(opts.dataDir, 'pgdata');
  }
  await client.waitReady;
  const db = drizzlePglite({ client, schema }) as unknown as Database;
  return {
    db,
    engine: 'pglite',
    location,
    async migrate() {
      if (await migrationsApplied(db)) return;
      await migratePglite(drizzlePglite({ client }), { migrationsFolder: MIGRATIONS_FOLDER });
    },
    async ping() {
      await db.execute(sql`select 1`);
    },
    async close() {
      if (!client.closed) await client.close();
    },
  };
}

/** Binds a JS array as one array parameter (drizzle's sql`` would spread it into a list). */
export const arrayParam = (values: readonly unknown[]): SQL => sql`${sql.param(values)}`;
