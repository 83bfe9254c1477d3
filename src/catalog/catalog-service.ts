import { randomInt } from 'node:crypto';
import { asc, eq, getTableColumns, inArray, type SQL, sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { arrayParam, type Database, query } from '../db/connection.ts';
import { projects } from '../db/schema.ts';
import { InputError, NotFoundError } from '../errors.ts';
import { findUnstorableText, type ProjectStatus } from '../protocol/index.ts';
import {
  type HeartbeatWriteResult,
  heartbeatRowJson,
  queueDeadlines,
  type SerializedHeartbeat,
  storeTransitions,
  type TransitionsStoredHook,
  writeHeartbeats,
} from './heartbeat-write.ts';
import { KnownDeadlines } from './known-deadlines.ts';
import {
  DEADLINE_BUCKET_MS,
  deadlineSql,
  type GuardState,
  guardedStatusSql,
  nextDueSql,
  ruleColumns,
  type Thresholds,
  transitionReason,
} from './status-rule.ts';

/** A row of `projects` as the service reads it (`held_until` is the sweep's business, read in SQL only). */
export type ProjectRow = Omit<typeof projects.$inferSelect, 'heldUntil'>;
export type ProjectSource = 'config' | 'api' | 'heartbeat';

/** A project as the API shows it: `status` is the status rule applied now, never a stale stored value. */
export interface Project extends ProjectRow {
  status: ProjectStatus;
}

export interface ProjectInput {
  slug: string;
  name: string;
  hubUrl: string;
  meshNamespace: string;
  tags?: string[];
  allowFanout?: string[];
}

export interface ListOptions {
  status?: ProjectStatus;
  tag?: string;
  limit?: number;
  /** Opaque cursor returned as `nextCursor` by the previous page. */
  cursor?: string;
}

export interface Transition {
  projectId: number;
  slug: string;
  from: ProjectStatus;
  to: ProjectStatus;
  at: Date;
  reason: string;
}

/** A mass-offline hold as every replica shares it (see presence/offline-guard.ts). */
export interface MassHold {
  since: Date;
  until: Date;
  pending: number;
  live: number;
}

/** Tells the catalog whether guards against false offline hold right now (see presence/guards). */
export interface OfflineGuard {
  state(now: Date): GuardState;
}

export const MAX_PAGE_SIZE = 1000;
/** Rows a streamed whole-catalog response reads per statement. */
export const STREAM_BATCH_ROWS = 2000;
/**
 * Deadline buckets one sweep statement takes; a sweep goes on with the next batch while they come
 * full. A bucket holds up to a flush's worth of ids (10,000 when a fleet registers at once, a few
 * hundred in steady state): few buckets keep each claim short, so heartbeat writes never wait long
 * on the rows it locks.
 */
export const SWEEP_BATCH_BUCKETS = 4;
/**
 * A sweep stops after this many full batches and leaves the rest to the next one, which starts at
 * once. The mass-offline guard counts the buckets one sweep takes at most
 * (SWEEP_MAX_BATCHES × SWEEP_BATCH_BUCKETS): what it counts bounds what the sweep can flip, and its
 * count, on the sweeper's own path, never grows with how far behind the sweeper is (every heartbeat
 * queues a deadline, most of them superseded by the next, so a sweeper behind would fall further).
 */
const SWEEP_MAX_BATCHES = 25;
/** How long an id past its deadline waits, while the local writer holds a heartbeat of it, before a sweep takes it again. */
const UNWRITTEN_RETRY_MS = 5000;
/**
 * At most this long, however far behind the writer says it is: a writer behind by more than this
 * would otherwise have every project it holds looked up again every UNWRITTEN_RETRY_MS, each time
 * still held (a million projects restarting at once: the sweeper's lookups starved the writer).
 */
const UNWRITTEN_RETRY_MAX_MS = 30_000;
/**
 * How far ahead `pruneSupersededDeadlines` looks: queue rows due within this are rewritten without
 * the ids this replica has since queued a later deadline for. Most of them by then: a project
 * beating every 30 s supersedes its 45 s deadline 15 s before it falls due.
 */
export const PRUNE_HORIZON_MS = 2_000;
/** A prune takes at least this much more of the horizon than the last one (each row once, in steps). */
const PRUNE_STEP_MS = 1_000;
/**
 * The queue rows `pruneSupersededDeadlines` takes, by who queued them, and how far ahead:
 * - `own`: this replica's, within PRUNE_HORIZON_MS; the ids it has since queued a later deadline for
 *   are dropped without a lookup, so a take may be large.
 * - `nobody`: rows no replica tagged (registrations, status changes, a bulk load, an older version),
 *   as far ahead; each id is looked up, so a take holds at most PRUNE_LOOKUP_MAX_ROWS rows.
 * - `others`: rows of other replicas, looked up too, but only within FOREIGN_PRUNE_HORIZON_MS: less
 *   than PRUNE_STEP_MS ahead, so that a live replica has pruned its own for free before; what is left
 *   is a replica's that stopped (a process before a restart) or is behind.
 */
type PruneClass = 'own' | 'nobody' | 'others';
const PRUNE_CLASSES: readonly PruneClass[] = ['own', 'nobody', 'others'];
/** Queue rows a prune that looks ids up takes at most (up to DEADLINE_ROW_IDS ids each). */
const PRUNE_LOOKUP_MAX_ROWS = 10;
export const FOREIGN_PRUNE_HORIZON_MS = 900;
/** Beyond the claim grace and a bucket, how soon before its due time a prune may still take a row. */
const PRUNE_MIN_LEAD_MS = 100;
/** Queue rows one prune takes at most; the rest are left to the next one, or to the sweep. */
const PRUNE_MAX_ROWS = 500;
const PRUNE_CLASS: Record<PruneClass, { horizonMs: number; stepMs: number; maxRows: number }> = {
  own: { horizonMs: PRUNE_HORIZON_MS, stepMs: PRUNE_STEP_MS, maxRows: PRUNE_MAX_ROWS },
  nobody: { horizonMs: PRUNE_HORIZON_MS, stepMs: PRUNE_STEP_MS, maxRows: PRUNE_LOOKUP_MAX_ROWS },
  others: { horizonMs: FOREIGN_PRUNE_HORIZON_MS, stepMs: 400, maxRows: PRUNE_LOOKUP_MAX_ROWS },
};
/**
 * Status pages, counts and the graph read at most this many due queue rows (the oldest first; up to
 * DEADLINE_ROW_IDS ids each). While the sweeper keeps up, a handful are due at any moment and this
 * never binds. When it falls far behind (a million deadlines due at once after a restart, on a slow
 * machine), every read used to evaluate every due id, hundreds of thousands, and those reads took
 * PostgreSQL from the writer and the sweeper until nothing kept up. Past it, a project the rule has
 * moved but no sweep has reached yet shows in its stored status on status pages and in counts
 * until a sweep takes it; a page without a status filter, and the online page, still apply the
 * rule to every row they show, so none is shown online past its threshold.
 */
export const READ_DUE_MAX_ROWS = 20;
/** Count deltas are summed into one row once there are more than this many. */
const COUNT_DELTAS_COMPACT_AT = 200;
/** Serialises count compaction and recounting across replicas (pg_advisory_xact_lock). */
const COUNTS_LOCK_KEY = 0x66656463; // "fedc"

/** Queue rows to put back after a prune: due times, their ids (comma-separated) and their tags. */
interface KeptIds {
  /** Ids the prune drops. */
  dropped: number;
  due: number[];
  ids: string[];
  tags: Array<string | null>;
}

export type TransitionListener = (transitions: Transition[]) => void | Promise<void>;

/** The columns of `projects` as the API reads them (raw SQL rows, mapped by `toProject`). */
interface ProjectSqlRow {
  id: number;
  slug: string;
  name: string;
  hub_url: string;
  mesh_namespace: string;
  status: ProjectStatus;
  tags: string[];
  allow_fanout: string[];
  last_heartbeat_at: Date | string | null;
  reported_health: string | null;
  version: string | null;
  interval_s: number | null;
  source: string;
  configured: boolean;
  status_changed_at: Date | string | null;
  maintenance_until: Date | string | null;
  maintenance_reason: string | null;
  flapping: boolean;
  created_at: Date | string;
  updated_at: Date | string;
}

const date = (v: Date | string) => (v instanceof Date ? v : new Date(v));
const dateOrNull = (v: Date | string | null) => (v === null ? null : date(v));

function toProject(r: ProjectSqlRow): Project {
  return {
    id: r.id,
    slug: r.slug,
    name: r.name,
    hubUrl: r.hub_url,
    meshNamespace: r.mesh_namespace,
    status: r.status,
    tags: r.tags,
    allowFanout: r.allow_fanout,
    lastHeartbeatAt: dateOrNull(r.last_heartbeat_at),
    reportedHealth: r.reported_health,
    version: r.version,
    intervalS: r.interval_s,
    source: r.source,
    configured: r.configured,
    statusChangedAt: dateOrNull(r.status_changed_at),
    maintenanceUntil: dateOrNull(r.maintenance_until),
    maintenanceReason: r.maintenance_reason,
    flapping: r.flapping,
    createdAt: date(r.created_at),
    updatedAt: date(r.updated_at),
  };
}

/** A window that has ended reads as none: no timer has to clear it. */
const maintenanceInForceSql = (now: Date) =>
  sql`(case when maintenance_until > ${now.toISOString()}::timestamptz then maintenance_until end)`;

export function encodeCursor(slug: string): string {
  return Buffer.from(JSON.stringify({ s: slug })).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { s?: unknown };
    // Decoded, it can hold what the query-string check could not see (NUL), and would fail the query.
    if (typeof v.s === 'string' && findUnstorableText(v.s) === undefined) return v.s;
  } catch {}
  throw new InputError('cursor is not one this server returned', { field: 'cursor' });
}

/** The seed's CatalogService: the catalog of projects and the status rule applied to it. */
export class CatalogService {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #thresholds: Thresholds;
  readonly #claimGraceMs: number;
  #sweepLagMs = 0;
  readonly #readDueMaxRows: number;
  /** How far ahead each class of queue rows is pruned (`pruneSupersededDeadlines`), in epoch ms. */
  readonly #prunedThroughMs: Partial<Record<PruneClass, number>> = {};
  #guard: OfflineGuard;
  #onHeartbeatTransitions: TransitionListener | undefined;
  #onStored: TransitionsStoredHook | undefined;
  readonly #committed: Array<() => void> = [];
  /** This replica, in the deadline queue (random: replicas never need to agree on it). */
  readonly #replica = String(randomInt(1, 2 ** 47));
  /** The deadlines this replica's heartbeat writes queued, so that sweeps drop superseded ones unread. */
  readonly #known: KnownDeadlines;

  /**
   * `claimGraceMs`: a sweep claims a deadline only once it has passed by this much, so that a
   * heartbeat received just before it and still in some replica's write buffer lands first (the
   * presence plugin passes twice the flush interval).
   */
  constructor(deps: {
    db: Database;
    clock: Clock;
    thresholds: Thresholds;
    guard?: OfflineGuard;
    claimGraceMs?: number;
    /** Due queue rows a read looks at, at most (READ_DUE_MAX_ROWS; smaller in tests). */
    readDueMaxRows?: number;
  }) {
    this.#readDueMaxRows = deps.readDueMaxRows ?? READ_DUE_MAX_ROWS;
    this.#db = deps.db;
    this.#clock = deps.clock;
    this.#thresholds = deps.thresholds;
    this.#claimGraceMs = deps.claimGraceMs ?? 0;
    const startedAt = deps.clock.now();
    this.#guard = deps.guard ?? { state: () => ({ heardSince: startedAt, holdAll: false }) };
    this.#known = new KnownDeadlines(startedAt.getTime());
  }

  get thresholds(): Thresholds {
    return this.#thresholds;
  }

  setGuard(guard: OfflineGuard): void {
    this.#guard = guard;
  }

  /** Receives the transitions heartbeats make (written through `writeHeartbeats`), once each. */
  onHeartbeatTransitions(listener: TransitionListener): void {
    this.#onHeartbeatTransitions = listener;
  }

  /** Runs in every transaction that stores transitions, after they are stored (one hook: the notification outbox). */
  onTransitionsStored(hook: TransitionsStoredHook): void {
    this.#onStored = hook;
  }

  /** Called once transitions (and what `onTransitionsStored` wrote with them) are committed. */
  onTransitionsCommitted(listener: () => void): void {
    this.#committed.push(listener);
  }

  #notifyCommitted(): void {
    for (const l of this.#committed) l();
  }

  /**
   * A project's status as the API shows it, in SQL: the stored status, or the guarded rule for a row
   * past its deadline, so that an answer never contradicts the rule between sweeps. A row whose
   * offline flip a sweep holds (some replica's start-up grace, NATS down, a mass hold) carries the
   * end of the hold in `held_until`: until then it keeps its stored status on every replica, in
   * every answer. Both are columns of the row, so the expression costs the same on every row.
   */
  statusSql(now: Date = this.#clock.now()): SQL<ProjectStatus> {
    const guarded = guardedStatusSql(now, this.#thresholds, this.#guard.state(now));
    const nowTs = sql`${now.toISOString()}::timestamptz`;
    return sql`(case when ${deadlineSql(this.#thresholds)} < ${nowTs}
                      and (held_until is null or held_until <= ${nowTs}) then ${guarded} else status end)` as SQL<ProjectStatus>;
  }

  /**
   * `statusSql` for rows read through `dueIdsSql` (kept apart for callers that read due rows: since
   * the hold moved into the row, it is the same expression).
   */
  dueStatusSql(now: Date = this.#clock.now()): SQL<ProjectStatus> {
    return this.statusSql(now);
  }

  /**
   * The ids of every project the rule may have moved away from its stored status by `now`, with
   * others: the deadline buckets due by then (a sweep's worth while the sweeper keeps up). A row
   * whose stored status disagrees with the rule is always among them, so status filters and counts
   * read only these besides indexes: the first READ_DUE_MAX_ROWS queue rows due (see there).
   * `firstBuckets`: only the first buckets due (what one sweep takes at most, for the mass-offline
   * guard).
   */
  dueIdsSql(now: Date = this.#clock.now(), opts: { firstBuckets?: number } = {}): SQL {
    const until = sql`${new Date(now.getTime() + DEADLINE_BUCKET_MS).toISOString()}::timestamptz`;
    if (opts.firstBuckets !== undefined) {
      return sql`(select unnest(project_ids) from (select project_ids from project_deadlines
                  where due_at <= ${until} order by due_at limit ${opts.firstBuckets}) b)`;
    }
    return sql`(select unnest(project_ids) from (select project_ids from project_deadlines
                where due_at <= ${until} order by due_at limit ${this.#readDueMaxRows}) b)`;
  }

  /** `maintenance_until` as the API shows it: null once the window has ended. */
  maintenanceUntilSql(now: Date = this.#clock.now()): SQL<Date | null> {
    return maintenanceInForceSql(now) as SQL<Date | null>;
  }

  #statusExpr(now: Date): SQL<ProjectStatus> {
    return this.statusSql(now);
  }

  #selection(now: Date) {
    const { status: _stored, heldUntil: _held, ...columns } = getTableColumns(projects);
    return {
      ...columns,
      status: this.#statusExpr(now),
      maintenanceUntil: sql<Date | null>`${maintenanceInForceSql(now)}`.mapWith(projects.maintenanceUntil),
    };
  }

  #selectSql(now: Date): SQL {
    return sql`id, slug, name, hub_url, mesh_namespace, ${this.#statusExpr(now)} as status, tags, allow_fanout,
      last_heartbeat_at, reported_health, version, interval_s, source, configured, status_changed_at,
      ${maintenanceInForceSql(now)} as maintenance_until, maintenance_reason, flapping, created_at, updated_at`;
  }

  /** Upsert by slug: creates the project (offline) or updates its metadata, keeping its id. */
  async registerProject(
    input: ProjectInput,
    source: ProjectSource = 'api',
  ): Promise<{ project: Project; created: boolean }> {
    const now = this.#clock.now();
    const tags = input.tags ?? [];
    const configured = source === 'config';
    const rows = await query<{ id: number; inserted: boolean }>(
      this.#db,
      sql`insert into projects (slug, name, hub_url, mesh_namespace, tags, allow_fanout, source, configured, created_at, updated_at)
          values (${input.slug}, ${input.name}, ${input.hubUrl}, ${input.meshNamespace}, ${JSON.stringify(tags)}::jsonb,
                  ${JSON.stringify(input.allowFanout ?? [])}::jsonb, ${source}, ${configured}, ${now.toISOString()}, ${now.toISOString()})
          on conflict (slug) do update set
            name = excluded.name, hub_url = excluded.hub_url, mesh_namespace = excluded.mesh_namespace,
            tags = excluded.tags,
            allow_fanout = ${input.allowFanout === undefined ? sql`projects.allow_fanout` : sql`excluded.allow_fanout`},
            configured = projects.configured or excluded.configured,
            -- An operator registering a project a heartbeat introduced takes it over: from then on its
            -- heartbeats no longer move hub_url or mesh_namespace (where fan-out sends actions).
            source = case when projects.source = 'heartbeat' then excluded.source else projects.source end,
            updated_at = excluded.updated_at
          returning id, (xmax = 0) as inserted`,
    );
    const row = rows[0];
    if (!row) throw new Error(`upsert of ${input.slug} returned no row`);
    const project = await this.getProject(input.slug);
    return { project, created: row.inserted };
  }

  /** Marks every configured project that `keepSlugs` no longer lists as not configured. */
  async markUnconfigured(keepSlugs: string[]): Promise<number> {
    const rows = await query<{ id: number }>(
      this.#db,
      sql`update projects set configured = false, updated_at = ${this.#clock.now().toISOString()}
          where configured and not (slug = any(${arrayParam(keepSlugs)}::text[])) returning id`,
    );
    return rows.length;
  }

  /**
   * Stores heartbeats received at their `received_at` (see heartbeat-write.ts): statuses they change
   * are claimed and stored there, and handed to the `onHeartbeatTransitions` listener.
   */
  async writeHeartbeats(
    rows: readonly SerializedHeartbeat[],
    autoRegister: boolean,
    opts: { unregistered?: boolean } = {},
  ): Promise<HeartbeatWriteResult> {
    const result = await writeHeartbeats(this.#db, rows, {
      autoRegister,
      unregistered: opts.unregistered,
      now: this.#clock.now(),
      thresholds: this.#thresholds,
      guard: this.#guard.state(this.#clock.now()),
      onStored: this.#onStored,
      replica: this.#replica,
    });
    // Committed (the common path is one statement): a sweep may now drop what these supersede.
    if (result.queued) this.#known.recordPairs(result.queued);
    if (result.transitions.length > 0) {
      this.#notifyCommitted();
      await this.#onHeartbeatTransitions?.(result.transitions);
    }
    return result;
  }

  /** The seed's update_heartbeat: one heartbeat, received now. Ingestion at scale goes through HeartbeatWriter. */
  async updateHeartbeat(slug: string, extra: { health?: string; version?: string; intervalS?: number } = {}) {
    const row = heartbeatRowJson({
      slug,
      received_at: this.#clock.now().toISOString(),
      health: extra.health === 'degraded' ? 'degraded' : 'ok',
      version: extra.version ?? null,
      interval_s: extra.intervalS ?? null,
      name: null,
      hub_url: null,
      mesh_namespace: null,
      tags: null,
    });
    const result = await this.writeHeartbeats([[slug, row]], false);
    if (result.unknown.has(slug)) throw new NotFoundError(`project ${slug} is not registered`);
  }

  async getProjects(opts: ListOptions = {}): Promise<{ projects: Project[]; nextCursor?: string }> {
    const limit = opts.limit;
    const rows = await this.#page(opts, limit === undefined ? undefined : limit + 1);
    if (limit !== undefined && rows.length > limit) {
      rows.length = limit;
      const last = rows[rows.length - 1];
      return { projects: rows, nextCursor: last ? encodeCursor(last.slug) : undefined };
    }
    return { projects: rows };
  }

  /**
   * One page as the API answers it: the JSON array of its ProjectResponse objects, written by
   * PostgreSQL as `streamProjectsJson` writes the whole catalog (the same fields, order and times as
   * `toProjectResponse`), and the cursor of the next page when more remain. Under a million
   * projects' heartbeats the service's one thread then only forwards text: turning 100 rows into
   * Dates, objects and JSON again took it longer than the query took PostgreSQL.
   */
  async getProjectsJson(
    opts: ListOptions & { limit: number },
  ): Promise<{ body: string; nextCursor?: string }> {
    const now = this.#clock.now();
    const limit = opts.limit;
    const [page] = await query<{ body: string; last: string | null; n: number }>(
      this.#db,
      sql`select coalesce('[' || string_agg(j, ',' order by slug) filter (where rn <= ${limit}) || ']', '[]') as body,
                 max(slug) filter (where rn <= ${limit}) as last, count(*)::int as n
          from (select slug, j, row_number() over (order by slug) as rn
                from (${this.#pageSql(opts, limit + 1, undefined, now, this.#jsonSelectSql(now))}) p) t`,
      { prepared: true },
    );
    if (!page) return { body: '[]' };
    return page.n > limit && page.last !== null
      ? { body: page.body, nextCursor: encodeCursor(page.last) }
      : { body: page.body };
  }

  /**
   * The whole catalog (filtered like `getProjects`) in slug order, `STREAM_BATCH_ROWS` per statement:
   * keyset pages rather than one server-side cursor, so no transaction (and no snapshot holding back
   * vacuum of a table rewritten by every heartbeat) stays open while a slow client reads. Each batch
   * is the comma-separated ProjectResponse objects of its projects as JSON text, built by PostgreSQL
   * in one value: at a million projects the service's one thread would otherwise parse and serialise
   * every row while it ingests heartbeats. The same fields, order and ISO 8601 UTC times
   * (milliseconds, `Z`) as `toProjectResponse`.
   */
  async *streamProjectsJson(opts: Omit<ListOptions, 'limit'> = {}): AsyncGenerator<string> {
    let after = opts.cursor === undefined ? undefined : decodeCursor(opts.cursor);
    for (;;) {
      const now = this.#clock.now();
      const [batch] = await query<{ body: string | null; last: string | null; n: number }>(
        this.#db,
        sql`select string_agg(j, ',' order by slug) as body, max(slug) as last, count(*)::int as n
            from (${this.#pageSql({ status: opts.status, tag: opts.tag }, STREAM_BATCH_ROWS, after, now, this.#jsonSelectSql(now))}) t`,
        { prepared: true },
      );
      if (batch?.body) yield batch.body;
      if (!batch || batch.n < STREAM_BATCH_ROWS || batch.last === null) return;
      after = batch.last;
    }
  }

  #jsonSelectSql(now: Date): SQL {
    const iso = (col: string) =>
      sql.raw(`to_char(${col} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`);
    return sql`slug, json_build_object(
        'id', id, 'slug', slug, 'name', name, 'hub_url', hub_url, 'mesh_namespace', mesh_namespace,
        'status', ${this.#statusExpr(now)}, 'tags', tags, 'last_heartbeat_at', ${iso('last_heartbeat_at')},
        'created_at', ${iso('created_at')}, 'updated_at', ${iso('updated_at')}, 'version', version,
        'health', reported_health, 'interval_s', interval_s, 'allow_fanout', allow_fanout, 'source', source,
        'configured', configured, 'status_changed_at', ${iso('status_changed_at')},
        'maintenance', case when maintenance_until > ${now.toISOString()}::timestamptz
          then json_build_object('until', ${iso('maintenance_until')}, 'reason', maintenance_reason) end,
        'flapping', flapping)::text as j`;
  }

  /**
   * One page in slug order. A status filter reads the stored status through (status, slug), keeping
   * the rows the rule agrees with, plus the due rows (a sweep's worth, from the deadline queue) the
   * rule moves into that status: the rule is never evaluated on every row.
   */
  async #page(opts: ListOptions, limit: number | undefined, afterSlug?: string): Promise<Project[]> {
    const now = this.#clock.now();
    const statement = this.#pageSql(opts, limit, afterSlug, now, this.#selectSql(now));
    return (await query<ProjectSqlRow>(this.#db, statement, { prepared: true })).map(toProject);
  }

  /** The statement of `#page`, selecting `select` (the API's columns, or `#jsonSelectSql`'s). */
  #pageSql(
    opts: ListOptions,
    limit: number | undefined,
    afterSlug: string | undefined,
    now: Date,
    select: SQL,
  ): SQL {
    const where: SQL[] = [sql`true`];
    if (opts.tag) where.push(sql`tags @> ${JSON.stringify([opts.tag])}::jsonb`);
    const after = afterSlug ?? (opts.cursor ? decodeCursor(opts.cursor) : undefined);
    if (after !== undefined) where.push(sql`slug > ${after}`);
    const filter = sql.join(where, sql` and `);
    const lim = limit === undefined ? sql`` : sql` limit ${limit}`;
    let statement: SQL;
    if (opts.status) {
      const shown = this.statusSql(now);
      // Among the due rows, what `shown` shows without asking the queue again.
      const dueShown = this.dueStatusSql(now);
      // The rule moves a stored status only towards degraded and offline (a heartbeat that brings a
      // project back writes its status with it), so only those pages look at the due rows.
      const moved =
        opts.status === 'online'
          ? sql`false`
          : sql`id in ${this.dueIdsSql(now)} and status <> ${opts.status} and ${dueShown} = ${opts.status}`;
      statement = sql`select * from (
          (select ${select} from projects
           -- As a CASE, the rule's check is estimated to keep half the rows (as an equality, 0.5 %),
           -- so the planner walks (status, slug) instead of sorting a whole scan.
           where status = ${opts.status} and (case when ${shown} = ${opts.status} then true else false end)
             and ${filter}
           order by slug${lim})
          union all
          (select ${select} from projects
           where ${moved} and ${filter}
           order by slug${lim})
        ) page order by slug${lim}`;
    } else {
      statement = sql`select ${select} from projects where ${filter} order by slug${lim}`;
    }
    return statement;
  }

  async findProject(slug: string): Promise<Project | undefined> {
    const now = this.#clock.now();
    const rows = await this.#db.select(this.#selection(now)).from(projects).where(eq(projects.slug, slug));
    return rows[0] as Project | undefined;
  }

  /** `getProject` as the API answers it: the ProjectResponse's JSON text, written by PostgreSQL (see `getProjectsJson`). */
  async getProjectJson(slug: string): Promise<string> {
    const now = this.#clock.now();
    const [row] = await query<{ j: string }>(
      this.#db,
      sql`select ${this.#jsonSelectSql(now)} from projects where slug = ${slug}`,
      { prepared: true },
    );
    if (!row) throw new NotFoundError(`project ${slug} is not registered`);
    return row.j;
  }

  async getProject(slug: string): Promise<Project> {
    const project = await this.findProject(slug);
    if (!project) throw new NotFoundError(`project ${slug} is not registered`);
    return project;
  }

  async getProjectsBySlugs(slugs: string[]): Promise<Project[]> {
    if (slugs.length === 0) return [];
    const now = this.#clock.now();
    return (await this.#db
      .select(this.#selection(now))
      .from(projects)
      .where(inArray(projects.slug, slugs))
      .orderBy(asc(projects.slug))) as Project[];
  }

  async deleteProject(slug: string): Promise<void> {
    const deleted = await this.#db
      .delete(projects)
      .where(eq(projects.slug, slug))
      .returning({ id: projects.id });
    if (deleted.length === 0) throw new NotFoundError(`project ${slug} is not registered`);
  }

  /**
   * Projects per status as the API shows them, in one statement: the stored counts (a sum of deltas,
   * see project_status_counts) corrected by the due rows the rule has moved, which are at most a
   * sweep's worth.
   */
  countByStatus(): Promise<Record<ProjectStatus, number>> {
    // Callers that come while a count is being read share it (health checks, /metrics scrapes and the
    // view's header together): under load they would otherwise pile up, each reading what is due.
    this.#counting ??= this.#countByStatus().finally(() => {
      this.#counting = undefined;
    });
    return this.#counting;
  }

  #counting: Promise<Record<ProjectStatus, number>> | undefined;

  async #countByStatus(): Promise<Record<ProjectStatus, number>> {
    const now = this.#clock.now();
    const shown = this.dueStatusSql(now);
    const [row] = await query<{ online: number; degraded: number; offline: number; deltas: number }>(
      this.#db,
      sql`with stored as (
            select coalesce(sum(online), 0)::int as online, coalesce(sum(degraded), 0)::int as degraded,
                   coalesce(sum(offline), 0)::int as offline, count(*)::int as deltas
            from project_status_counts
          ), moved as (
            select status as from_status, ${shown} as to_status from projects
            where id in ${this.dueIdsSql(now)} and ${shown} <> status
          ), fix as (
            select s.status, (select count(*) from moved where to_status = s.status)::int
                             - (select count(*) from moved where from_status = s.status)::int as n
            from (values ('online'), ('degraded'), ('offline')) s(status)
          )
          select stored.online + (select n from fix where status = 'online') as online,
                 stored.degraded + (select n from fix where status = 'degraded') as degraded,
                 stored.offline + (select n from fix where status = 'offline') as offline,
                 stored.deltas
          from stored`,
      { prepared: true },
    );
    const counts: Record<ProjectStatus, number> = {
      online: row?.online ?? 0,
      degraded: row?.degraded ?? 0,
      offline: row?.offline ?? 0,
    };
    if ((row?.deltas ?? 0) > COUNT_DELTAS_COMPACT_AT) await this.compactCounts();
    return counts;
  }

  /** Sums the count deltas into one row (cheap: they are few; it never reads `projects`). */
  async compactCounts(): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await query(tx, sql`select pg_advisory_xact_lock(${COUNTS_LOCK_KEY})`);
      await query(
        tx,
        sql`with d as (delete from project_status_counts returning online, degraded, offline)
            insert into project_status_counts (online, degraded, offline)
            select coalesce(sum(online), 0), coalesce(sum(degraded), 0), coalesce(sum(offline), 0) from d`,
      );
    });
  }

  /**
   * Once at start-up (never on a timer, it reads every row): counts the catalog afresh, and queues
   * the deadline of every project that may still change, as the thresholds of this run set it
   * (thresholds changed since the last run, rows written by an older version or by hand). A project
   * the rule would move now is due at once; the first sweep applies the guards. Deadlines queued
   * before are left: one that no longer holds is dropped when it comes due. Returns how many
   * projects it queued.
   */
  async reconcile(): Promise<number> {
    const now = this.#clock.now();
    const nowTs = sql`${now.toISOString()}::timestamptz`;
    const noGuard: GuardState = { heardSince: new Date(0), holdAll: false };
    const rule = guardedStatusSql(now, this.#thresholds, noGuard);
    const due = sql`(case when ${rule} <> status then ${nowTs} else ${deadlineSql(this.#thresholds)} end)`;
    // Queued as this replica's own, as a heartbeat's write queues its deadline: the heartbeats it
    // writes next record later deadlines, and the prune then drops these without a lookup. Queued
    // by nobody, a restart at a million projects left a million ids that every sweep and every
    // status read of the next 45 s looked up.
    const [queued] = await query<{ n: number }>(
      this.#db,
      sql`with q as (${queueDeadlines(sql`select id, ${due} from projects`, { queuedBy: this.#replica })}
                     returning cardinality(project_ids) as n)
          select coalesce(sum(n), 0)::int as n from q`,
    );
    await this.#db.transaction(async (tx) => {
      await query(tx, sql`select pg_advisory_xact_lock(${COUNTS_LOCK_KEY})`);
      await query(
        tx,
        sql`with d as (delete from project_status_counts)
            insert into project_status_counts (online, degraded, offline)
            select count(*) filter (where status = 'online'), count(*) filter (where status = 'degraded'),
                   count(*) filter (where status = 'offline') from projects`,
      );
    });
    return queued?.n ?? 0;
  }

  /**
   * How long the oldest deadline bucket the last sweep took had been ready to take, in ms (0 when
   * it took none): past its due time plus the claim grace, or past its not_before when later. How
   * far behind the sweeper is, with the grace itself not counted.
   */
  get sweepLagMs(): number {
    return this.#sweepLagMs;
  }

  /**
   * Claims the pending transitions of every due project, in batches, and stores them in
   * project_status_events. A batch takes the deadline buckets due (`skip locked`, so each is taken by
   * one replica) and looks each id up in `projects`: ids a later heartbeat has superseded are dropped
   * (that heartbeat queued its own deadline), and one exactly at its deadline is queued again; the
   * rest are locked (`skip locked` again: a row being
   * written is looked at again a moment later), claimed with the guarded rule, and queued again at
   * their next deadline (degraded → offline, or the end of a guard's hold). A claim needs the locked,
   * latest row to disagree with the rule, so each transition is claimed exactly once however many
   * replicas sweep. What is not due is never read.
   */
  async sweepStatuses(
    opts: {
      unwritten?: (slug: string, deadline: Date) => boolean;
      /** How long the local writer needs for what it holds (`HeartbeatWriter.backlogMs`). */
      unwrittenRetryMs?: number;
    } = {},
  ): Promise<Transition[]> {
    const all: Transition[] = [];
    this.#sweepLagMs = 0;
    const retryMs = Math.min(
      UNWRITTEN_RETRY_MAX_MS,
      Math.max(UNWRITTEN_RETRY_MS, opts.unwrittenRetryMs ?? 0),
    );
    for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
      const { transitions, buckets } = await this.#sweepBatch(opts.unwritten, retryMs);
      if (transitions.length > 0) this.#notifyCommitted();
      all.push(...transitions);
      if (buckets < SWEEP_BATCH_BUCKETS) break;
    }
    return all;
  }

  /**
   * Rewrites the queue rows that fall due soon without the ids superseded since they were queued,
   * and returns how many ids it dropped. A sweep would drop them too once due; but until a sweep
   * takes a due row, every status page and count reads each of its ids (the rule may have moved
   * it), and at a million projects beating every 30 s the due rows held thousands of ids, nearly
   * all superseded. Pruned ahead, the due rows hold what may really change.
   *
   * - This replica's own rows, within PRUNE_HORIZON_MS: an id it has since queued a later deadline
   *   for (it wrote a later heartbeat of the project) is dropped without a lookup.
   * - Rows no live replica prunes for free: queued by nobody (within PRUNE_HORIZON_MS), or by
   *   another replica, one that has stopped or is behind (within FOREIGN_PRUNE_HORIZON_MS, after its
   *   own prune had its chance). Each id is looked up once, here, and dropped when its project's
   *   deadline has moved past the row's. Without this, a restart at a million projects left a million such ids due over
   *   the next 45 s, and every status read in those 45 s looked them up again (700 ms in the bench).
   *
   * Each row is taken once per class (in steps of the horizon, `skip locked` beside writes, sweeps
   * and other replicas); the ids kept go back at the same due time with the same tag. Rows waiting
   * on `not_before` and rows already due are left to the sweep. Commits asynchronously: lost in a
   * crash of PostgreSQL, a prune only leaves the rows as they were.
   */
  async pruneSupersededDeadlines(): Promise<number> {
    let dropped = 0;
    for (const kind of PRUNE_CLASSES) {
      const c = PRUNE_CLASS[kind];
      // Read again for each class (the one before may have taken a while), and never a row the
      // sweep may want while this runs: one due within its claim grace and a bucket, plus slack.
      const nowMs = this.#clock.now().getTime();
      const soonest = nowMs + this.#claimGraceMs + DEADLINE_BUCKET_MS + PRUNE_MIN_LEAD_MS;
      const fromMs = Math.max(this.#prunedThroughMs[kind] ?? soonest, soonest);
      const toMs = nowMs + c.horizonMs;
      if (toMs - fromMs < c.stepMs) continue;
      const r = await this.#prune({ fromMs, toMs }, kind);
      dropped += r.dropped;
      this.#prunedThroughMs[kind] = r.throughMs;
    }
    return dropped;
  }

  /** One class of `pruneSupersededDeadlines` (see PruneClass). */
  async #prune(
    window: { fromMs: number; toMs: number },
    kind: PruneClass,
  ): Promise<{ dropped: number; throughMs: number }> {
    const ts = (ms: number) => sql`${new Date(ms).toISOString()}::timestamptz`;
    const tagged =
      kind === 'own'
        ? sql`queued_by = ${this.#replica}::bigint`
        : kind === 'nobody'
          ? sql`queued_by is null`
          : sql`queued_by <> ${this.#replica}::bigint`;
    const maxRows = PRUNE_CLASS[kind].maxRows;
    return this.#db.transaction(async (tx) => {
      const taken = await query<{ due_ms: string | number; ids: string; queued_by: string | null }>(
        tx,
        sql`delete from project_deadlines where id in (
              select id from project_deadlines
              where due_at > ${ts(window.fromMs)} and due_at <= ${ts(window.toMs)}
                and ${tagged} and not_before is null
              order by due_at limit ${maxRows} for update skip locked)
            returning (extract(epoch from due_at) * 1000)::bigint as due_ms,
                      array_to_string(project_ids, ',') as ids, queued_by::text,
                      set_config('synchronous_commit', 'off', true) as async_commit`,
        { prepared: true },
      );
      let lastDueMs = -Infinity;
      for (const t of taken) lastDueMs = Math.max(lastDueMs, Number(t.due_ms));
      const kept = kind === 'own' ? this.#keptOwn(taken) : await this.#keptByLookup(tx, taken);
      if (kept.due.length > 0) {
        await query(
          tx,
          sql`insert into project_deadlines (due_at, project_ids, queued_by)
              select timestamptz 'epoch' + u.due_ms * interval '1 millisecond',
                     string_to_array(u.ids, ',')::int[], u.queued_by
              from unnest(${arrayParam(kept.due)}::int8[], ${arrayParam(kept.ids)}::text[],
                          ${arrayParam(kept.tags)}::int8[]) u(due_ms, ids, queued_by)`,
          { prepared: true },
        );
      }
      // A full take may have left rows of the same range: the next prune starts where this one ended.
      return { dropped: kept.dropped, throughMs: taken.length >= maxRows ? lastDueMs : window.toMs };
    });
  }

  /** Of this replica's rows, the ids it has not since queued a later deadline for. */
  #keptOwn(
    taken: ReadonlyArray<{ due_ms: string | number; ids: string; queued_by: string | null }>,
  ): KeptIds {
    const kept: KeptIds = { dropped: 0, due: [], ids: [], tags: [] };
    for (const t of taken) {
      const dueMs = Number(t.due_ms);
      const ids: string[] = [];
      for (const id of t.ids.split(',')) {
        if (id === '') continue;
        if (this.#known.laterThan(Number(id), dueMs)) kept.dropped += 1;
        else ids.push(id);
      }
      if (ids.length > 0) {
        kept.due.push(dueMs);
        kept.ids.push(ids.join(','));
        kept.tags.push(t.queued_by);
      }
    }
    return kept;
  }

  /**
   * Of rows no replica prunes for free, the ids whose project may still change at the row's due
   * time: it exists, and its deadline is not past the row's, or its stored status is worse than the
   * rule says (thresholds raised since it was stored: the sweep puts it right). A project whose
   * deadline has moved later was written since, and that write queued the later deadline.
   */
  async #keptByLookup(
    tx: Database,
    taken: ReadonlyArray<{ due_ms: string | number; ids: string; queued_by: string | null }>,
  ): Promise<KeptIds> {
    const rowOf: number[] = [];
    const ids: number[] = [];
    const dues: number[] = [];
    taken.forEach((t, row) => {
      for (const id of t.ids.split(',')) {
        rowOf.push(row);
        ids.push(Number(id));
        dues.push(Number(t.due_ms));
      }
    });
    const kept: KeptIds = { dropped: ids.length, due: [], ids: [], tags: [] };
    if (ids.length === 0) return kept;
    const now = this.#clock.now();
    const rule = guardedStatusSql(now, this.#thresholds, { heardSince: new Date(0), holdAll: false });
    const found = await query<{ row: number; ids: string; n: number }>(
      tx,
      sql`select u.row, string_agg(u.id::text, ',') as ids, count(*)::int as n
          from unnest(${arrayParam(rowOf)}::int[], ${arrayParam(ids)}::int[], ${arrayParam(dues)}::int8[]) u(row, id, due_ms)
          join projects p on p.id = u.id
          -- Found through the primary key whatever the planner makes of the list's length.
          where p.id = any(${arrayParam(ids)}::int[])
            and (${deadlineSql(this.#thresholds, ruleColumns('p'))} <= timestamptz 'epoch' + u.due_ms * interval '1 millisecond'
                 or (p.status = 'offline' and ${rule} <> 'offline') or (p.status = 'degraded' and ${rule} = 'online'))
          group by u.row`,
      { prepared: true },
    );
    for (const f of found) {
      const t = taken[Number(f.row)];
      if (!t) continue;
      kept.dropped -= f.n;
      kept.due.push(Number(t.due_ms));
      kept.ids.push(f.ids);
      kept.tags.push(t.queued_by);
    }
    return kept;
  }

  /**
   * `unwritten`: whether this replica holds a heartbeat of the project, not written yet, that was
   * heard by its deadline (the local writer's buffer, including the batches being written). Such a
   * project is not judged silent: its flip waits (`project_deadlines.not_before`) for the write, which supersedes it, so a
   * heartbeat waiting behind a long write never makes a false pair of transitions, and every other
   * project is claimed on time however far behind the writer is.
   */
  async #sweepBatch(
    unwritten?: (slug: string, deadline: Date) => boolean,
    unwrittenRetryMs = UNWRITTEN_RETRY_MS,
  ): Promise<{ transitions: Transition[]; buckets: number }> {
    const now = this.#clock.now();
    const claimBefore = new Date(now.getTime() - this.#claimGraceMs);
    const guard = this.#guard.state(now);
    const rule = guardedStatusSql(now, this.#thresholds, guard);
    // The rule without the guards: where it differs from `rule`, a guard holds the row's offline flip.
    const unguarded = guardedStatusSql(now, this.#thresholds, { heardSince: new Date(0), holdAll: false });
    const nowTs = sql`${now.toISOString()}::timestamptz`;
    const claimBeforeTs = sql`${claimBefore.toISOString()}::timestamptz`;
    // In a bucket already due for readers (ceil(now) < now + a bucket), taken by the next sweep.
    const retryAt = nowTs;
    const waitUntil = (ms: number) =>
      sql`${new Date(now.getTime() + Math.max(ms, DEADLINE_BUCKET_MS)).toISOString()}::timestamptz`;
    return this.#db.transaction(async (tx) => {
      const taken = await query<{
        due_ms: string | number;
        not_before_ms: string | number | null;
        ids: string;
        queued_by: string | null;
      }>(
        tx,
        sql`delete from project_deadlines where id in (
              select id from project_deadlines where due_at <= ${claimBeforeTs}
                and (not_before is null or not_before <= ${nowTs})
              order by due_at limit ${SWEEP_BATCH_BUCKETS} for update skip locked)
            returning (extract(epoch from due_at) * 1000)::bigint as due_ms,
                      (extract(epoch from not_before) * 1000)::bigint as not_before_ms,
                      array_to_string(project_ids, ',') as ids, queued_by::text,
                      -- This transaction commits without waiting for its WAL to reach the disk
                      -- unless it stores a transition (turned back on below). Almost every sweep only
                      -- drops superseded deadlines; under a million projects' heartbeats a commit
                      -- waited 250-400 ms behind the writer's WAL, and the sweeper fell seconds behind.
                      -- Lost in a crash of PostgreSQL, such a commit only gives the rows back to the
                      -- queue, and the next sweep takes them again.
                      set_config('synchronous_commit', 'off', true) as async_commit`,
        { prepared: true },
      );
      // Lag counts from when a bucket could first be taken: its due time plus the claim grace, or
      // its not_before when that is later (a flip waiting for a buffered heartbeat's write).
      let oldestReadyMs = Infinity;
      for (const t of taken) {
        const ready = Math.max(Number(t.due_ms) + this.#claimGraceMs, Number(t.not_before_ms ?? 0));
        oldestReadyMs = Math.min(oldestReadyMs, ready);
      }
      if (taken.length > 0)
        this.#sweepLagMs = Math.max(this.#sweepLagMs, Math.max(0, now.getTime() - oldestReadyMs));
      // Each id once, at its latest due time; ids this replica queued and has since written a later
      // deadline for are dropped here, without a lookup (src/catalog/known-deadlines.ts).
      const due = new Map<number, number>();
      for (const t of taken) {
        const ours = t.queued_by === this.#replica;
        const dueMs = Number(t.due_ms);
        for (const part of t.ids.split(',')) {
          const id = Number(part);
          if (!Number.isInteger(id) || (ours && this.#known.laterThan(id, dueMs))) continue;
          const seen = due.get(id);
          if (seen === undefined || seen < dueMs) due.set(id, dueMs);
        }
      }
      if (due.size === 0) return { transitions: [], buckets: taken.length };
      const idList = arrayParam([...due.keys()]);
      // What is late, with its slug; what is not is dropped (a later heartbeat queued its own
      // deadline) or queued again where it now falls due.
      const overdue = await query<{ id: number; slug: string; better: boolean; deadline_ms: string | null }>(
        tx,
        sql`with ids as (
              select u.id, timestamptz 'epoch' + u.due_ms * interval '1 millisecond' as due
              from unnest(${idList}::int[], ${arrayParam([...due.values()])}::int8[]) u(id, due_ms)
            ), checked as (
              select p.id, p.slug, ${deadlineSql(this.#thresholds, ruleColumns('p'))} as deadline, ids.due,
                     (p.status = 'offline' and ${rule} <> 'offline') or (p.status = 'degraded' and ${rule} = 'online') as better
              -- Found through the primary key whatever the planner makes of the list's length.
              from projects p join ids on ids.id = p.id where p.id = any(${idList}::int[])
            ), at_deadline as (
              -- At its deadline, not yet past it (the rule flips strictly after): looked at again.
              ${queueDeadlines(sql`select id, deadline from checked
                where not better and deadline >= ${nowTs} and deadline <= due`)}
            ), in_grace as (
              -- Past it by less than the grace: queued where readers see it as due, taken once past.
              ${queueDeadlines(
                sql`select id, ${retryAt} from checked
                    where not better and deadline >= ${claimBeforeTs} and deadline < ${nowTs} and deadline <= due`,
                { notBefore: waitUntil(this.#claimGraceMs) },
              )}
            )
            -- Past the deadline (and the grace), or stored worse than the rule now says (thresholds
            -- raised since the last run, rows written by hand): both are claimed.
            select id, slug, better, (extract(epoch from deadline) * 1000)::bigint::text as deadline_ms
            from checked where deadline < ${claimBeforeTs} or better`,
        { prepared: true },
      );
      if (overdue.length === 0) return { transitions: [], buckets: taken.length };
      const claim: number[] = [];
      const waiting: number[] = [];
      for (const o of overdue) {
        const held =
          !o.better && o.deadline_ms !== null && unwritten?.(o.slug, new Date(Number(o.deadline_ms)));
        (held ? waiting : claim).push(o.id);
      }
      const claimList = arrayParam(claim);
      const rows = await query<{
        id: number | null;
        slug: string | null;
        from_status: ProjectStatus;
        to_status: ProjectStatus;
        last_heartbeat_at: string | Date | null;
        reported_health: string | null;
        interval_s: number | null;
      }>(
        tx,
        sql`with locked as (
              -- The latest row, locked: the rule decides again (a heartbeat may have been written since).
              select id, status as from_status, ${rule} as to_status, held_until as was_held_until,
                     ${rule} <> ${unguarded} as held,
                     ${nextDueSql(rule, now, this.#thresholds, guard)} as next_due
              from projects where id = any(${claimList}::int[]) for update skip locked
            ), claimed as (
              -- A held row keeps its status and records until when (its requeued deadline), for readers.
              update projects p set status = l.to_status,
                status_changed_at = case when l.to_status <> l.from_status then ${nowTs} else p.status_changed_at end,
                held_until = case when l.held then l.next_due end
              from locked l where p.id = l.id
                and (l.to_status <> l.from_status or (case when l.held then l.next_due end) is distinct from l.was_held_until)
              returning p.id, p.slug, l.from_status, l.to_status, p.last_heartbeat_at, p.reported_health, p.interval_s
            ), requeued as (
              ${queueDeadlines(sql`select id, next_due from locked
                union all select c.id, ${retryAt} from unnest(${claimList}::int[]) c(id)
                where c.id not in (select id from locked)`)}
            ), waiting as (
              -- A heartbeat of the project is in this replica's buffer: queued where readers still see
              -- it as due, and taken again once the writer has had time to write it (it then drops).
              ${queueDeadlines(
                sql`select w.id, ${retryAt} from unnest(${arrayParam(waiting)}::int[]) w(id)`,
                {
                  notBefore: waitUntil(unwrittenRetryMs),
                },
              )}
            )
            select c.* from claimed c`,
        { prepared: true },
      );
      const transitions: Transition[] = [];
      const buckets = taken.length;
      for (const r of rows) {
        if (r.id === null || r.slug === null || r.from_status === r.to_status) continue;
        const input = {
          lastHeartbeatAt: r.last_heartbeat_at === null ? null : new Date(r.last_heartbeat_at),
          reportedHealth: r.reported_health,
          intervalS: r.interval_s,
        };
        transitions.push({
          projectId: r.id,
          slug: r.slug,
          from: r.from_status,
          to: r.to_status,
          at: now,
          reason: transitionReason(r.from_status, r.to_status, input, this.#thresholds),
        });
      }
      if (transitions.length > 0) {
        // A stored transition is published once committed: it commits as the server is configured to
        // (durable by default), not as this transaction's drop-only start set it.
        await query(
          tx,
          sql`select set_config('synchronous_commit',
                (select reset_val from pg_settings where name = 'synchronous_commit'), true)`,
          { prepared: true },
        );
        await storeTransitions(tx, transitions, this.#onStored);
      }
      return { transitions, buckets };
    });
  }

  /**
   * For the mass-offline guard: the due projects the rule would now take offline (before the holds,
   * with the start-up grace) plus those that went offline within the last offline threshold (a
   * fleet's deadlines spread over its beat interval, so one sweep alone sees only a slice of a mass
   * event), the live ones (from the counts, not by counting the catalog) plus those same recent
   * ones, and the hold any replica last recorded. Reads what is due, recent events through their
   * time index, and one row.
   *
   * `needed`: told an upper bound first (every id of those buckets counted as going offline, read
   * from the queue rows alone), it says whether the exact count matters (it could trigger the guard,
   * or one is holding). When it does not, the ids are not looked up and `pending` is that bound,
   * marked `exact: false`: under load the due buckets hold many thousands of ids, almost all of
   * them superseded, and looking each up on every look of the guard starved the sweeper that drops
   * them.
   */
  async countPendingOffline(
    opts: { needed?: (atMost: { pending: number; live: number }) => boolean } = {},
  ): Promise<{ pending: number; live: number; hold: MassHold | null; exact: boolean }> {
    const now = this.#clock.now();
    const recentFrom = new Date(now.getTime() - this.#thresholds.offlineAfterS * 1000);
    const firstBuckets = SWEEP_MAX_BATCHES * SWEEP_BATCH_BUCKETS;
    const [row] = await query<{
      due_ids: number;
      recent: number;
      live: number;
      since: Date | string | null;
      until: Date | string | null;
      hold_pending: number | null;
      hold_live: number | null;
    }>(
      this.#db,
      sql`select (select coalesce(sum(cardinality(project_ids)), 0) from (select project_ids from project_deadlines
                  where due_at <= ${new Date(now.getTime() + DEADLINE_BUCKET_MS).toISOString()}::timestamptz
                  order by due_at limit ${firstBuckets}) b)::int as due_ids,
                 (select count(*) from project_status_events
                  where at > ${recentFrom.toISOString()}::timestamptz and to_status = 'offline'
                    and from_status <> 'offline')::int as recent,
                 (select coalesce(sum(online + degraded), 0) from project_status_counts)::int as live,
                 h.since, h.until, h.pending as hold_pending, h.live as hold_live
          from (select 1) one left join presence_holds h on true`,
      { prepared: true },
    );
    if (!row) return { pending: 0, live: 0, hold: null, exact: true };
    const hold =
      row.since === null || row.until === null
        ? null
        : {
            since: date(row.since),
            until: date(row.until),
            pending: row.hold_pending ?? 0,
            live: row.hold_live ?? 0,
          };
    const live = row.live + row.recent;
    const atMost = row.due_ids + row.recent;
    if (row.due_ids === 0 || (opts.needed && !opts.needed({ pending: atMost, live }))) {
      return { pending: atMost, live, hold, exact: row.due_ids === 0 };
    }
    const { heardSince } = this.#guard.state(now);
    const rule = guardedStatusSql(now, this.#thresholds, { heardSince, holdAll: false });
    const [counted] = await query<{ pending: number }>(
      this.#db,
      sql`select count(*)::int as pending from projects
          where id in ${this.dueIdsSql(now, { firstBuckets })} and status <> 'offline' and ${rule} = 'offline'`,
      { prepared: true },
    );
    return { pending: (counted?.pending ?? 0) + row.recent, live, hold, exact: true };
  }

  /** The mass-offline hold any replica last recorded (one row), or null. */
  async currentMassHold(): Promise<MassHold | null> {
    const [r] = await query<{ since: Date | string; until: Date | string; pending: number; live: number }>(
      this.#db,
      sql`select since, until, pending, live from presence_holds`,
      { prepared: true },
    );
    return r ? { since: date(r.since), until: date(r.until), pending: r.pending, live: r.live } : null;
  }

  /**
   * Records a mass-offline hold for every replica, unless one recorded meanwhile (by another replica)
   * still covers the event: a recorded hold is replaced only a threshold after it ended. Returns
   * the hold that stands.
   */
  async recordMassHold(hold: MassHold): Promise<MassHold> {
    const cooldown = `${this.#thresholds.offlineAfterS} seconds`;
    const rows = await query<{ since: Date | string; until: Date | string; pending: number; live: number }>(
      this.#db,
      sql`with put as (
            insert into presence_holds (id, since, until, pending, live)
            values (1, ${hold.since.toISOString()}, ${hold.until.toISOString()}, ${hold.pending}, ${hold.live})
            on conflict (id) do update set since = excluded.since, until = excluded.until,
              pending = excluded.pending, live = excluded.live
            where presence_holds.until + ${cooldown}::interval <= excluded.since
            returning since, until, pending, live
          )
          select * from put union all select since, until, pending, live from presence_holds
          where not exists (select 1 from put)`,
    );
    const r = rows[0];
    return r ? { since: date(r.since), until: date(r.until), pending: r.pending, live: r.live } : hold;
  }

  /**
   * When the next queued deadline can be claimed (the first entry of the queue's index, plus the
   * claim grace), or null when none is queued.
   */
  async nextDueAt(): Promise<Date | null> {
    const grace = `${this.#claimGraceMs} milliseconds`;
    const [row] = await query<{ at: Date | string | null }>(
      this.#db,
      sql`select least((select min(due_at) from project_deadlines where not_before is null) + ${grace}::interval,
                        (select min(greatest(due_at + ${grace}::interval, not_before))
                         from project_deadlines where not_before is not null)) as at`,
      { prepared: true },
    );
    // Takeable once past the grace, and a waiting one not before its not_before.
    return row?.at ? date(row.at) : null;
  }

  /** The seed's mark_stale_projects: applies the rule now and returns how many went offline. */
  async markStaleProjects(): Promise<number> {
    const transitions = await this.sweepStatuses();
    return transitions.filter((t) => t.to === 'offline').length;
  }
}
