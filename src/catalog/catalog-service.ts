import { and, asc, eq, getTableColumns, gt, inArray, type SQL, sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { arrayParam, type Database, query } from '../db/connection.ts';
import { projects } from '../db/schema.ts';
import { InputError, NotFoundError } from '../errors.ts';
import { findUnstorableText, type ProjectStatus } from '../protocol/index.ts';
import { type GuardState, guardedStatusSql, type Thresholds, transitionReason } from './status-rule.ts';

export type ProjectRow = typeof projects.$inferSelect;
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

/** Tells the catalog whether guards against false offline hold right now (see presence/guards). */
export interface OfflineGuard {
  state(now: Date): GuardState;
}

export const MAX_PAGE_SIZE = 1000;

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
  #guard: OfflineGuard;

  constructor(deps: { db: Database; clock: Clock; thresholds: Thresholds; guard?: OfflineGuard }) {
    this.#db = deps.db;
    this.#clock = deps.clock;
    this.#thresholds = deps.thresholds;
    const startedAt = deps.clock.now();
    this.#guard = deps.guard ?? { state: () => ({ heardSince: startedAt, holdAll: false }) };
  }

  get thresholds(): Thresholds {
    return this.#thresholds;
  }

  setGuard(guard: OfflineGuard): void {
    this.#guard = guard;
  }

  statusSql(now: Date = this.#clock.now()): SQL<ProjectStatus> {
    return this.#statusExpr(now);
  }

  #statusExpr(now: Date): SQL<ProjectStatus> {
    return guardedStatusSql(now, this.#thresholds, this.#guard.state(now)) as SQL<ProjectStatus>;
  }

  #selection(now: Date) {
    const { status: _stored, ...columns } = getTableColumns(projects);
    return { ...columns, status: this.#statusExpr(now) };
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

  /** The seed's update_heartbeat: one heartbeat, received now. Ingestion at scale goes through HeartbeatWriter. */
  async updateHeartbeat(slug: string, extra: { health?: string; version?: string; intervalS?: number } = {}) {
    const now = this.#clock.now();
    const updated = await this.#db
      .update(projects)
      .set({
        lastHeartbeatAt: now,
        reportedHealth: extra.health ?? 'ok',
        version: extra.version ?? null,
        intervalS: extra.intervalS ?? null,
        updatedAt: now,
      })
      .where(eq(projects.slug, slug))
      .returning({ id: projects.id });
    if (updated.length === 0) throw new NotFoundError(`project ${slug} is not registered`);
  }

  async getProjects(opts: ListOptions = {}): Promise<{ projects: Project[]; nextCursor?: string }> {
    const now = this.#clock.now();
    const statusExpr = this.#statusExpr(now);
    const where: SQL[] = [];
    if (opts.status) where.push(sql`${statusExpr} = ${opts.status}`);
    if (opts.tag) where.push(sql`${projects.tags} @> ${JSON.stringify([opts.tag])}::jsonb`);
    if (opts.cursor) where.push(gt(projects.slug, decodeCursor(opts.cursor)));
    const limit = opts.limit;
    let q = this.#db
      .select(this.#selection(now))
      .from(projects)
      .where(and(...where))
      .orderBy(asc(projects.slug))
      .$dynamic();
    if (limit !== undefined) q = q.limit(limit + 1);
    const rows = (await q) as Project[];
    if (limit !== undefined && rows.length > limit) {
      rows.length = limit;
      const last = rows[rows.length - 1];
      return { projects: rows, nextCursor: last ? encodeCursor(last.slug) : undefined };
    }
    return { projects: rows };
  }

  async findProject(slug: string): Promise<Project | undefined> {
    const now = this.#clock.now();
    const rows = await this.#db.select(this.#selection(now)).from(projects).where(eq(projects.slug, slug));
    return rows[0] as Project | undefined;
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

  async countByStatus(): Promise<Record<ProjectStatus, number>> {
    const now = this.#clock.now();
    const rows = await query<{ status: ProjectStatus; n: number }>(
      this.#db,
      sql`select ${this.#statusExpr(now)} as status, count(*)::int as n from projects group by 1`,
    );
    const counts: Record<ProjectStatus, number> = { online: 0, offline: 0, degraded: 0 };
    for (const r of rows) counts[r.status] = r.n;
    return counts;
  }

  /**
   * Claims every pending transition (stored status ≠ the guarded rule) in one statement and records it
   * in project_status_events. Rows another replica is claiming are skipped, and the stored status is
   * re-checked, so each transition is claimed exactly once however many replicas sweep.
   */
  async sweepStatuses(): Promise<Transition[]> {
    const now = this.#clock.now();
    const expr = this.#statusExpr(now);
    return this.#db.transaction(async (tx) => {
      const rows = await query<{
        id: number;
        slug: string;
        from_status: ProjectStatus;
        to_status: ProjectStatus;
        last_heartbeat_at: string | Date | null;
        reported_health: string | null;
        interval_s: number | null;
      }>(
        tx,
        sql`with candidates as (
            select id, status as from_status, ${expr} as to_status from projects
            where ${expr} <> status
            for update skip locked
          ), claimed as (
            update projects p set status = c.to_status, status_changed_at = ${now.toISOString()}
            from candidates c where p.id = c.id and p.status = c.from_status
            returning p.id, p.slug, c.from_status, c.to_status, p.last_heartbeat_at, p.reported_health, p.interval_s
          )
          select * from claimed`,
      );
      if (rows.length === 0) return [];
      const transitions = rows.map((r) => {
        const input = {
          lastHeartbeatAt: r.last_heartbeat_at === null ? null : new Date(r.last_heartbeat_at),
          reportedHealth: r.reported_health,
          intervalS: r.interval_s,
        };
        return {
          projectId: r.id,
          slug: r.slug,
          from: r.from_status,
          to: r.to_status,
          at: now,
          reason: transitionReason(r.from_status, r.to_status, input, this.#thresholds),
        };
      });
      await query(
        tx,
        sql`insert into project_status_events (project_id, from_status, to_status, at, reason)
          select * from unnest(${arrayParam(transitions.map((t) => t.projectId))}::int[], ${arrayParam(transitions.map((t) => t.from))}::text[],
                               ${arrayParam(transitions.map((t) => t.to))}::text[], ${arrayParam(transitions.map((t) => t.at.toISOString()))}::timestamptz[],
                               ${arrayParam(transitions.map((t) => t.reason))}::text[])`,
      );
      return transitions;
    });
  }

  /** Projects the rule would now flip to offline (before guards), for the mass-offline guard. */
  async countPendingOffline(): Promise<{ pending: number; live: number }> {
    const now = this.#clock.now();
    const { heardSince } = this.#guard.state(now);
    const expr = guardedStatusSql(now, this.#thresholds, { heardSince, holdAll: false });
    const rows = await query<{ pending: number; live: number }>(
      this.#db,
      sql`select count(*) filter (where status <> 'offline' and ${expr} = 'offline')::int as pending,
                 count(*) filter (where status <> 'offline')::int as live
          from projects`,
    );
    return rows[0] ?? { pending: 0, live: 0 };
  }

  /** The seed's mark_stale_projects: applies the rule now and returns how many went offline. */
  async markStaleProjects(): Promise<number> {
    const transitions = await this.sweepStatuses();
    return transitions.filter((t) => t.to === 'offline').length;
  }
}
