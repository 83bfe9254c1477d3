import { type SQL, sql } from 'drizzle-orm';
import type { CatalogService, Project } from '../catalog/catalog-service.ts';
import type { EdgeEntry } from '../catalog/projects-file.ts';
import type { Clock } from '../clock.ts';
import { arrayParam, type Database, query } from '../db/connection.ts';
import { DomainError, InputError, NotFoundError } from '../errors.ts';
import { MetricsService } from '../metrics/metrics-service.ts';
import { EDGE_KINDS, type ProjectStatus } from '../protocol/index.ts';
import { GroupedGraphCache } from './graph-cache.ts';
import {
  type ExternalEdge,
  externalEdges,
  type GraphGroup,
  type GroupBy,
  type GroupEdge,
  groupMembers,
  type ProblemRow,
  problems,
} from './graph-queries.ts';

export type EdgeKind = (typeof EDGE_KINDS)[number];
export const EDGE_SOURCES = ['config', 'api', 'discovered'] as const;
export type EdgeSource = (typeof EDGE_SOURCES)[number];
export const DEFAULT_EDGE_STRENGTH = 0.5;
/** The graph shows a handful of metrics per node, not a project's whole metric catalogue. */
export const GRAPH_METRICS_PER_NODE = 12;
/** Default cap of GET /api/fed/graph (FED_GRAPH_MAX_NODES): past it the view needs groups. */
export const DEFAULT_GRAPH_MAX_NODES = 10_000;

/** The graph asked for has more projects (or groups) than FED_GRAPH_MAX_NODES: ask for groups instead. */
export class GraphTooLargeError extends DomainError {
  constructor(message: string, details: { max: number; hint: string }) {
    super(400, 'graph_too_large', message, details);
  }
}

export interface Edge {
  id: number;
  from: string;
  to: string;
  kind: string;
  strength: number;
  source: EdgeSource;
  details: Record<string, unknown> | null;
  createdAt: Date;
  lastSeenAt: Date;
}

export interface EdgeInput {
  from: string;
  to: string;
  kind: EdgeKind;
  strength?: number;
  details?: Record<string, unknown>;
}

export interface EdgeFilter {
  project?: string;
  kind?: string;
  source?: EdgeSource;
}

/** One project's integrations as its latest heartbeat listed them (the whole list, not a delta). */
export interface IntegrationReport {
  slug: string;
  integrations: Array<{ to: string; kind: string; strength?: number }>;
  at: Date;
}

export type DiscoverySkipReason = 'unknown_project' | 'self' | 'invalid';

export interface DiscoveryResult {
  upserted: number;
  pruned: number;
  skipped: Record<DiscoverySkipReason, number>;
}

export interface LatestMetric {
  value: number | string | null;
  observedAt: Date;
}

export interface GraphNode {
  project: Project;
  heartbeatAgeS: number | null;
  metrics: Map<string, LatestMetric>;
}

interface EdgeRow {
  id: number;
  from_slug: string;
  to_slug: string;
  kind: string;
  strength: number;
  source: EdgeSource;
  details: Record<string, unknown> | null;
  created_at: string | Date;
  last_seen_at: string | Date;
}

const toEdge = (r: EdgeRow): Edge => ({
  id: r.id,
  from: r.from_slug,
  to: r.to_slug,
  kind: r.kind,
  strength: Number(r.strength),
  source: r.source,
  details: r.details ?? null,
  createdAt: new Date(r.created_at),
  lastSeenAt: new Date(r.last_seen_at),
});

const isValidStrength = (s: unknown): boolean =>
  s === undefined || (typeof s === 'number' && Number.isFinite(s) && s >= 0 && s <= 1);

/**
 * Integration edges between projects, from three sources: projects.yaml (config), the API and the
 * `integrations` of heartbeats (discovered). Precedence: an edge the API wrote is the operator's and
 * neither the file nor discovery changes it; config takes over a discovered edge; discovery only
 * refreshes `last_seen_at` of an edge it does not own.
 */
export class EdgesService {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #catalog: CatalogService;
  readonly #metrics: Pick<MetricsService, 'latestByProject'>;
  /** The grouped overviews, shared by every client (see graph-cache.ts). */
  readonly groupedCache: GroupedGraphCache;

  constructor(deps: {
    db: Database;
    clock: Clock;
    catalog: CatalogService;
    metrics?: Pick<MetricsService, 'latestByProject'>;
  }) {
    this.#db = deps.db;
    this.#metrics = deps.metrics ?? new MetricsService({ db: deps.db });
    this.#clock = deps.clock;
    this.#catalog = deps.catalog;
    this.groupedCache = new GroupedGraphCache({
      db: deps.db,
      clock: deps.clock,
      statusSql: (now) => deps.catalog.statusSql(now),
      dueIdsSql: (now) => deps.catalog.dueIdsSql(now),
      dueStatusSql: (now) => deps.catalog.dueStatusSql(now),
      compactCounts: () => deps.catalog.compactCounts(),
    });
  }

  /** The catalog changed (a project registered, changed or deleted): overviews are read afresh. */
  catalogChanged(): void {
    this.groupedCache.invalidate();
  }

  #select(where: SQL): SQL {
    return sql`select e.id, f.slug as from_slug, t.slug as to_slug, e.kind, e.strength, e.source, e.details,
                      e.created_at, e.last_seen_at
               from integration_edges e
               join projects f on f.id = e.from_project_id
               join projects t on t.id = e.to_project_id
               where ${where}
               order by e.id`;
  }

  async listEdges(filter: EdgeFilter = {}): Promise<Edge[]> {
    const where: SQL[] = [sql`true`];
    if (filter.project) where.push(sql`(f.slug = ${filter.project} or t.slug = ${filter.project})`);
    if (filter.kind) where.push(sql`e.kind = ${filter.kind}`);
    if (filter.source) where.push(sql`e.source = ${filter.source}`);
    const rows = await query<EdgeRow>(this.#db, this.#select(sql.join(where, sql` and `)));
    return rows.map(toEdge);
  }

  async getEdge(id: number): Promise<Edge> {
    const rows = await query<EdgeRow>(this.#db, this.#select(sql`e.id = ${id}`));
    const row = rows[0];
    if (!row) throw new NotFoundError(`edge ${id} does not exist`);
    return toEdge(row);
  }

  /**
   * Creates or updates the edge (from, to, kind) on behalf of the API: its source becomes 'api'.
   * Omitted strength and details keep their stored values on update (0.5 and null on create).
   */
  async upsertApiEdge(input: EdgeInput): Promise<{ edge: Edge; created: boolean }> {
    if (input.from === input.to) {
      throw new InputError(`an edge cannot go from ${input.from} to itself`, { field: 'to' });
    }
    if (!(EDGE_KINDS as readonly string[]).includes(input.kind)) {
      throw new InputError(`kind must be one of ${EDGE_KINDS.join(', ')}`, { field: 'kind' });
    }
    if (!isValidStrength(input.strength)) {
      throw new InputError('strength must be a number from 0 to 1', { field: 'strength' });
    }
    const now = this.#clock.now().toISOString();
    const strength = input.strength ?? null;
    const details = input.details === undefined ? null : JSON.stringify(input.details);
    const rows = await query<{ id: number; inserted: boolean }>(
      this.#db,
      sql`insert into integration_edges (from_project_id, to_project_id, kind, strength, details, source, created_at, last_seen_at)
          select f.id, t.id, ${input.kind}, coalesce(${strength}::float8, ${DEFAULT_EDGE_STRENGTH}), ${details}::jsonb, 'api', ${now}, ${now}
          from projects f, projects t where f.slug = ${input.from} and t.slug = ${input.to}
          on conflict (from_project_id, to_project_id, kind) do update set
            strength = coalesce(${strength}::float8, integration_edges.strength),
            details = ${input.details === undefined ? sql`integration_edges.details` : sql`excluded.details`},
            source = 'api',
            last_seen_at = excluded.last_seen_at
          returning id, (xmax = 0) as inserted`,
    );
    const row = rows[0];
    if (row?.inserted) this.groupedCache.invalidate();
    if (!row) {
      const found = await query<{ slug: string }>(
        this.#db,
        sql`select slug from projects where slug = any(${arrayParam([input.from, input.to])}::text[])`,
      );
      const known = new Set(found.map((r) => r.slug));
      const missing = [input.from, input.to].filter((s) => !known.has(s));
      throw new NotFoundError(
        `project ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not registered`,
        { projects: missing },
      );
    }
    return { edge: await this.getEdge(row.id), created: row.inserted };
  }

  async deleteEdge(id: number): Promise<void> {
    const rows = await query<{ id: number }>(
      this.#db,
      sql`delete from integration_edges where id = ${id} returning id`,
    );
    if (rows.length === 0) throw new NotFoundError(`edge ${id} does not exist`);
    this.groupedCache.invalidate();
  }

  /**
   * Makes the config-sourced edges exactly those of projects.yaml (the file is declarative): upserts
   * each listed edge and deletes config edges the file no longer lists. API edges are never touched;
   * a discovered edge the file lists becomes a config edge.
   */
  async syncConfigEdges(entries: EdgeEntry[]): Promise<{ upserted: number; removed: number }> {
    const now = this.#clock.now().toISOString();
    const byKey = new Map<string, EdgeEntry>();
    for (const e of entries) byKey.set(`${e.from}\u0000${e.to}\u0000${e.kind}`, e);
    const list = [...byKey.values()];
    return this.#db.transaction(async (tx) => {
      const input = sql`select i.from_slug, i.to_slug, i.kind, i.strength, i.details, f.id as from_id, t.id as to_id
        from unnest(${arrayParam(list.map((e) => e.from))}::text[], ${arrayParam(list.map((e) => e.to))}::text[],
                    ${arrayParam(list.map((e) => e.kind))}::text[], ${arrayParam(list.map((e) => e.strength ?? null))}::float8[],
                    ${arrayParam(list.map((e) => (e.details === undefined ? null : JSON.stringify(e.details))))}::text[])
             as i(from_slug, to_slug, kind, strength, details)
        join projects f on f.slug = i.from_slug
        join projects t on t.slug = i.to_slug`;
      const upserted = await query<{ id: number }>(
        tx,
        sql`insert into integration_edges (from_project_id, to_project_id, kind, strength, details, source, created_at, last_seen_at)
            select from_id, to_id, kind, coalesce(strength, ${DEFAULT_EDGE_STRENGTH}), details::jsonb, 'config', ${now}, ${now}
            from (${input}) i
            on conflict (from_project_id, to_project_id, kind) do update set
              strength = excluded.strength, details = excluded.details, source = 'config', last_seen_at = excluded.last_seen_at
            where integration_edges.source <> 'api'
            returning id`,
      );
      const removed = await query<{ id: number }>(
        tx,
        sql`delete from integration_edges e where e.source = 'config' and not exists (
              select 1 from (${input}) i
              where i.from_id = e.from_project_id and i.to_id = e.to_project_id and i.kind = e.kind)
            returning e.id`,
      );
      this.groupedCache.invalidate();
      return { upserted: upserted.length, removed: removed.length };
    });
  }

  /**
   * Stores the integrations that heartbeats reported, in one statement per batch: upserts each as a
   * discovered edge (refreshing `last_seen_at`; config and api edges keep their source and strength)
   * and removes discovered edges a reporting project no longer lists. Integrations to unknown
   * projects or to the project itself are skipped and counted.
   */
  async recordDiscovered(batch: IntegrationReport[]): Promise<DiscoveryResult> {
    const skipped: Record<DiscoverySkipReason, number> = { unknown_project: 0, self: 0, invalid: 0 };
    // Only the latest report of a project counts; a statement may not upsert one row twice.
    const latest = new Map<string, IntegrationReport>();
    for (const r of batch) {
      const prev = latest.get(r.slug);
      if (!prev || prev.at.getTime() <= r.at.getTime()) latest.set(r.slug, r);
    }
    const items = new Map<
      string,
      { from: string; to: string; kind: string; strength: number | null; at: string }
    >();
    for (const r of latest.values()) {
      for (const i of r.integrations) {
        if (i.to === r.slug) {
          skipped.self++;
          continue;
        }
        if (!(EDGE_KINDS as readonly string[]).includes(i.kind) || !isValidStrength(i.strength)) {
          skipped.invalid++;
          continue;
        }
        items.set(`${r.slug}\u0000${i.to}\u0000${i.kind}`, {
          from: r.slug,
          to: i.to,
          kind: i.kind,
          strength: i.strength ?? null,
          at: r.at.toISOString(),
        });
      }
    }
    if (latest.size === 0) return { upserted: 0, pruned: 0, skipped };
    const list = [...items.values()];
    const reporters = [...latest.values()];
    const rows = await query<{ upserted: number; inserted: number; pruned: number; unknown: number }>(
      this.#db,
      sql`with reported as (
            select i.from_slug, i.to_slug, i.kind, i.strength, i.at, f.id as from_id, t.id as to_id
            from unnest(${arrayParam(list.map((i) => i.from))}::text[], ${arrayParam(list.map((i) => i.to))}::text[],
                        ${arrayParam(list.map((i) => i.kind))}::text[], ${arrayParam(list.map((i) => i.strength))}::float8[],
                        ${arrayParam(list.map((i) => i.at))}::timestamptz[]) as i(from_slug, to_slug, kind, strength, at)
            left join projects f on f.slug = i.from_slug
            left join projects t on t.slug = i.to_slug
          ), upserted as (
            insert into integration_edges (from_project_id, to_project_id, kind, strength, source, created_at, last_seen_at)
            select from_id, to_id, kind, coalesce(strength, ${DEFAULT_EDGE_STRENGTH}), 'discovered', at, at
            from reported where from_id is not null and to_id is not null
            on conflict (from_project_id, to_project_id, kind) do update set
              strength = case when integration_edges.source = 'discovered'
                              then coalesce(excluded.strength, integration_edges.strength)
                              else integration_edges.strength end,
              last_seen_at = greatest(integration_edges.last_seen_at, excluded.last_seen_at)
            returning id, (xmax = 0) as inserted
          ), reporters as (
            select p.id, r.at
            from unnest(${arrayParam(reporters.map((r) => r.slug))}::text[], ${arrayParam(reporters.map((r) => r.at.toISOString()))}::timestamptz[]) as r(slug, at)
            join projects p on p.slug = r.slug
          ), pruned as (
            -- An edge confirmed after this report was made is newer evidence than the report's omission.
            delete from integration_edges e using reporters r
            where e.from_project_id = r.id and e.source = 'discovered' and e.last_seen_at < r.at
              and not exists (select 1 from reported x
                              where x.from_id = e.from_project_id and x.to_id = e.to_project_id and x.kind = e.kind)
            returning e.id
          )
          select (select count(*) from upserted)::int as upserted,
                 (select count(*) from upserted where inserted)::int as inserted,
                 (select count(*) from pruned)::int as pruned,
                 (select count(*) from reported where from_id is null or to_id is null)::int as unknown`,
    );
    const r = rows[0] ?? { upserted: 0, inserted: 0, pruned: 0, unknown: 0 };
    // Refreshing last_seen_at changes no overview; a new or removed edge does.
    if (r.inserted > 0 || r.pruned > 0) this.groupedCache.invalidate();
    skipped.unknown_project = r.unknown;
    return { upserted: r.upserted, pruned: r.pruned, skipped };
  }

  /**
   * The latest value of each metric type per project, at most `perProject` types each (the most
   * recently observed ones), keyed by project id. The metrics feature owns the query.
   */
  async latestMetrics(
    perProject = GRAPH_METRICS_PER_NODE,
    projectIds?: number[],
  ): Promise<Map<number, Map<string, LatestMetric>>> {
    const latest = await this.#metrics.latestByProject(projectIds);
    const out = new Map<number, Map<string, LatestMetric>>();
    for (const [projectId, values] of latest) {
      const kept = Object.entries(values)
        .map(([type, v]) => ({ type, value: v.value, observedAt: new Date(v.observed_at) }))
        .sort((a, b) => b.observedAt.getTime() - a.observedAt.getTime() || (a.type < b.type ? -1 : 1))
        .slice(0, perProject)
        .sort((a, b) => (a.type < b.type ? -1 : 1));
      out.set(projectId, new Map(kept.map((k) => [k.type, { value: k.value, observedAt: k.observedAt }])));
    }
    return out;
  }

  /**
   * The ecosystem in one answer: every project (live status, heartbeat age, key metrics) and every edge.
   * Past `maxNodes` projects it refuses (GraphTooLargeError) rather than build an answer no browser can draw.
   */
  async graph(maxNodes = DEFAULT_GRAPH_MAX_NODES): Promise<{ nodes: GraphNode[]; edges: Edge[] }> {
    const { projects, nextCursor } = await this.#catalog.getProjects({ limit: maxNodes });
    if (nextCursor !== undefined) {
      throw new GraphTooLargeError(
        `the catalog has more than ${maxNodes} projects (FED_GRAPH_MAX_NODES): ask for groups with ?group_by=tag|namespace|status, then one group with &group=<key>`,
        { max: maxNodes, hint: '/api/fed/graph?group_by=tag' },
      );
    }
    const [metrics, edges] = await Promise.all([this.latestMetrics(), this.listEdges()]);
    const nodes = this.#nodes(projects, metrics);
    // The three reads are not one snapshot: never hand the view an edge to a node it does not have.
    const slugs = new Set(projects.map((p) => p.slug));
    return { nodes, edges: edges.filter((e) => slugs.has(e.from) && slugs.has(e.to)) };
  }

  #nodes(projects: Project[], metrics: Map<number, Map<string, LatestMetric>>): GraphNode[] {
    return projects.map((project) => ({
      project,
      heartbeatAgeS: this.heartbeatAgeS(project),
      metrics: metrics.get(project.id) ?? new Map<string, LatestMetric>(),
    }));
  }

  /** The overview: groups with their live status counts and the bundled edges between groups. */
  async groupedGraph(
    groupBy: GroupBy,
    maxGroups = DEFAULT_GRAPH_MAX_NODES,
  ): Promise<{ groups: GraphGroup[]; edges: GroupEdge[] }> {
    const graph = await this.groupedCache.get(groupBy);
    if (graph.groups.length > maxGroups) {
      throw new GraphTooLargeError(
        `grouping by ${groupBy} gives ${graph.groups.length} groups, more than ${maxGroups} (FED_GRAPH_MAX_NODES): group by ${groupBy === 'status' ? 'tag' : 'status'} instead`,
        { max: maxGroups, hint: `/api/fed/graph?group_by=${groupBy === 'status' ? 'tag' : 'status'}` },
      );
    }
    return graph;
  }

  /**
   * One group opened: its projects (as in the ungrouped graph), the edges among them, and the edges
   * leaving the group bundled per project and other group. An unknown key is an empty group.
   */
  async groupGraph(
    groupBy: GroupBy,
    key: string,
    maxNodes = DEFAULT_GRAPH_MAX_NODES,
  ): Promise<{ nodes: GraphNode[]; edges: Edge[]; external: ExternalEdge[] }> {
    const status = this.#catalog.statusSql();
    const members = await groupMembers(
      this.#db,
      groupBy,
      key,
      status,
      maxNodes + 1,
      this.#catalog.maintenanceUntilSql(),
    );
    if (members.length > maxNodes) {
      throw new GraphTooLargeError(
        `group ${JSON.stringify(key)} (by ${groupBy}) has more than ${maxNodes} projects (FED_GRAPH_MAX_NODES): group by another field to split it`,
        { max: maxNodes, hint: `/api/fed/graph?group_by=${groupBy === 'status' ? 'tag' : 'status'}` },
      );
    }
    const ids = members.map((p) => p.id);
    const [metrics, internal, external] = await Promise.all([
      this.latestMetrics(GRAPH_METRICS_PER_NODE, ids),
      ids.length === 0
        ? Promise.resolve([])
        : query<EdgeRow>(
            this.#db,
            this.#select(
              sql`e.from_project_id = any(${arrayParam(ids)}::int[]) and e.to_project_id = any(${arrayParam(ids)}::int[])`,
            ),
          ),
      externalEdges(this.#db, ids, groupBy, status),
    ]);
    return { nodes: this.#nodes(members, metrics), edges: internal.map(toEdge), external };
  }

  /** Offline and degraded projects, the most recent change first, and the live counts of every status. */
  async problems(limit: number): Promise<{ counts: Record<ProjectStatus, number>; problems: ProblemRow[] }> {
    const now = this.#clock.now();
    const [counts, rows] = await Promise.all([
      this.#catalog.countByStatus(),
      problems(
        this.#db,
        this.#catalog.statusSql(now),
        this.#catalog.dueStatusSql(now),
        this.#catalog.dueIdsSql(now),
        limit,
      ),
    ]);
    return { counts, problems: rows };
  }

  async countBySource(): Promise<Record<EdgeSource, number>> {
    const rows = await query<{ source: EdgeSource; n: number }>(
      this.#db,
      sql`select source, count(*)::int as n from integration_edges group by source`,
    );
    const counts: Record<EdgeSource, number> = { config: 0, api: 0, discovered: 0 };
    for (const r of rows) counts[r.source] = r.n;
    return counts;
  }

  /** Seconds since the project's last heartbeat, by this service's clock; null when it never sent one. */
  heartbeatAgeS(project: Pick<Project, 'lastHeartbeatAt'>): number | null {
    if (!project.lastHeartbeatAt) return null;
    const ms = this.#clock.now().getTime() - new Date(project.lastHeartbeatAt).getTime();
    return Math.round(Math.max(0, ms) / 100) / 10;
  }
}
