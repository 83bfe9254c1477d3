import { asc, getTableColumns, type SQL, sql } from 'drizzle-orm';
import type { Project } from '../catalog/catalog-service.ts';
import { arrayParam, type Database, query } from '../db/connection.ts';
import { projects } from '../db/schema.ts';
import type { ProjectStatus } from '../protocol/index.ts';

/** How the ecosystem view groups projects: by first tag, by mesh namespace prefix, or by live status. */
export const GROUP_BYS = ['tag', 'namespace', 'status'] as const;
export type GroupBy = (typeof GROUP_BYS)[number];

export type StatusCounts = Record<ProjectStatus, number>;

export interface GraphGroup {
  key: string;
  count: number;
  statusCounts: StatusCounts;
  /** Edges whose two projects are both in this group (not drawn in the overview). */
  internalEdges: number;
}

/** The project-to-project edges between two groups, bundled. */
export interface GroupEdge {
  from: string;
  to: string;
  count: number;
  kinds: string[];
}

/** Edges between a project of an opened group and projects of another group, bundled per project. */
export interface ExternalEdge {
  project: string;
  group: string;
  direction: 'out' | 'in';
  count: number;
  kinds: string[];
}

export interface ProblemRow {
  slug: string;
  name: string;
  status: ProjectStatus;
  since: Date;
  reason: string;
  lastHeartbeatAt: Date | null;
  groups: Record<GroupBy, string>;
}

/**
 * The group key of a project, as SQL over an unaliased `projects` row. `tag` is the project's first tag
 * ('' when it has none): a project is in exactly one group, so counts add up and every edge is bundled
 * once. `namespace` is the mesh namespace without its last segment (hub.commandcenter → hub).
 */
export function groupKeySql(groupBy: GroupBy, status: SQL<ProjectStatus>): SQL<string> {
  switch (groupBy) {
    case 'tag':
      return sql<string>`coalesce(tags->>0, '')`;
    case 'namespace':
      return sql<string>`regexp_replace(mesh_namespace, '\\.[^.]*$', '')`;
    case 'status':
      return status as SQL<string>;
  }
}

const toList = (v: unknown): string[] => (Array.isArray(v) ? (v as string[]) : []);

/** Project-to-project edges bundled per (from group, to group), internal ones included: one scan. */
export function groupEdgesSql(key: SQL<string>): SQL {
  return sql`with k as materialized (select id, ${key} as key from projects)
      select f.key as "from", t.key as "to", count(*)::int as count,
             array_agg(distinct e.kind order by e.kind) as kinds
      from integration_edges e
      join k f on f.id = e.from_project_id
      join k t on t.id = e.to_project_id
      group by 1, 2 order by 1, 2`;
}

/**
 * Every group with its size and live status counts, largest first, and the edges between groups, in
 * one pass over every row: the reference the shared overview (graph-cache.ts) is tested against.
 */
export async function groupedGraph(
  db: Database,
  groupBy: GroupBy,
  status: SQL<ProjectStatus>,
): Promise<{ groups: GraphGroup[]; edges: GroupEdge[] }> {
  const key = groupKeySql(groupBy, status);
  const [groupRows, edgeRows] = await Promise.all([
    query<{ key: string; count: number; online: number; degraded: number; offline: number }>(
      db,
      sql`with k as (select ${key} as key, ${status} as status from projects)
          select key, count(*)::int as count,
                 count(*) filter (where status = 'online')::int as online,
                 count(*) filter (where status = 'degraded')::int as degraded,
                 count(*) filter (where status = 'offline')::int as offline
          from k group by key order by count(*) desc, key`,
    ),
    query<{ from: string; to: string; count: number; kinds: unknown }>(db, groupEdgesSql(key)),
  ]);
  const internal = new Map<string, number>();
  const edges: GroupEdge[] = [];
  for (const r of edgeRows) {
    if (r.from === r.to) internal.set(r.from, r.count);
    else edges.push({ from: r.from, to: r.to, count: r.count, kinds: toList(r.kinds) });
  }
  const groups = groupRows.map((r) => ({
    key: r.key,
    count: r.count,
    statusCounts: { online: r.online, degraded: r.degraded, offline: r.offline },
    internalEdges: internal.get(r.key) ?? 0,
  }));
  // An edge of a project that was deleted between the two reads would name a group the list lacks.
  const known = new Set(groups.map((g) => g.key));
  return { groups, edges: edges.filter((e) => known.has(e.from) && known.has(e.to)) };
}

/** The projects of one group, by slug, at most `limit` of them (the caller asks for one more to detect overflow). */
export async function groupMembers(
  db: Database,
  groupBy: GroupBy,
  groupKey: string,
  status: SQL<ProjectStatus>,
  limit: number,
  maintenanceUntil?: SQL<Date | null>,
): Promise<Project[]> {
  const { status: _stored, ...columns } = getTableColumns(projects);
  const key = groupKeySql(groupBy, status);
  const maintenance = maintenanceUntil
    ? { maintenanceUntil: sql<Date | null>`${maintenanceUntil}`.mapWith(projects.maintenanceUntil) }
    : {};
  return (await db
    .select({ ...columns, status, ...maintenance })
    .from(projects)
    .where(sql`${key} = ${groupKey}`)
    .orderBy(asc(projects.slug))
    .limit(limit)) as Project[];
}

/** Edges between the given projects and projects outside them, bundled per (project, other group, direction). */
export async function externalEdges(
  db: Database,
  memberIds: number[],
  groupBy: GroupBy,
  status: SQL<ProjectStatus>,
): Promise<ExternalEdge[]> {
  if (memberIds.length === 0) return [];
  const key = groupKeySql(groupBy, status);
  const ids = sql`${arrayParam(memberIds)}::int[]`;
  const rows = await query<{
    project: string;
    group: string;
    direction: 'out' | 'in';
    count: number;
    kinds: unknown;
  }>(
    db,
    sql`with m as (select unnest(${ids}) as id),
        x as (
          select e.from_project_id as inside, e.to_project_id as other, 'out' as direction, e.kind
          from integration_edges e join m on m.id = e.from_project_id
          where e.to_project_id <> all(${ids})
          union all
          select e.to_project_id, e.from_project_id, 'in', e.kind
          from integration_edges e join m on m.id = e.to_project_id
          where e.from_project_id <> all(${ids})
        )
        select i.slug as project, o.key as "group", x.direction, count(*)::int as count,
               array_agg(distinct x.kind order by x.kind) as kinds
        from x
        join projects i on i.id = x.inside
        cross join lateral (select ${key} as key from projects where projects.id = x.other) o
        group by 1, 2, 3 order by 1, 2, 3`,
  );
  return rows.map((r) => ({ ...r, kinds: toList(r.kinds) }));
}

/**
 * The statement `problems` runs (exported so a test can EXPLAIN it). The candidates are two reads, each
 * through an index, never the catalog: the projects stored offline or degraded (the (status, slug)
 * index), and the due ones stored online (ids from the deadline queue), which the rule may have moved
 * since the last sweep. The rule decides the status of each (`status`, applied to the row).
 */
export function problemsSql(
  status: SQL<ProjectStatus>,
  dueStatus: SQL<ProjectStatus>,
  dueIds: SQL,
  limit: number,
): SQL {
  const columns = (
    st: SQL<ProjectStatus>,
  ) => sql`id, slug, name, status_changed_at, created_at, last_heartbeat_at,
                 ${st} as status, ${groupKeySql('tag', st)} as tag, ${groupKeySql('namespace', st)} as namespace`;
  return sql`select p.slug, p.name, p.status, coalesce(p.status_changed_at, p.created_at) as since,
               ev.reason, p.last_heartbeat_at, p.tag, p.namespace
        from (
          select ${columns(status)} from projects where status in ('offline', 'degraded')
          union all
          select ${columns(dueStatus)} from projects where status = 'online' and id in ${dueIds}) p
        left join lateral (
          select reason from project_status_events s
          where s.project_id = p.id and s.to_status = p.status
          order by s.at desc, s.id desc limit 1) ev on true
        where p.status in ('offline', 'degraded')
        order by coalesce(p.status_changed_at, p.created_at) desc, p.slug
        limit ${limit}`;
}

/**
 * The projects the status rule does not call online now, as (id, key, st), read as the problems are:
 * stored offline or degraded through the (status, slug) index, plus the due ones stored online (the
 * deadline queue), with the rule applied to each — the way the catalog's status reads stay consistent
 * with the rule at read time.
 */
export function notOnlineSql(
  key: SQL,
  status: SQL<ProjectStatus>,
  dueStatus: SQL<ProjectStatus>,
  dueIds: SQL,
): SQL {
  return sql`select id, key, st from (
      select id, ${key} as key, ${status} as st from projects where status in ('offline', 'degraded')
      union all
      select id, ${key} as key, ${dueStatus} as st from projects where status = 'online' and id in ${dueIds}
    ) n where st <> 'online'`;
}

/**
 * Offline and degraded projects, the most recent change first, with the reason of their latest
 * transition. A project that never beat has no transition: it is listed from its creation.
 */
export async function problems(
  db: Database,
  status: SQL<ProjectStatus>,
  /** The status of a due row (`CatalogService.dueStatusSql`). */
  dueStatus: SQL<ProjectStatus>,
  /** The ids the rule may have moved since the last sweep (`CatalogService.dueIdsSql`). */
  dueIds: SQL,
  limit: number,
): Promise<ProblemRow[]> {
  const rows = await query<{
    slug: string;
    name: string;
    status: ProjectStatus;
    since: string | Date;
    reason: string | null;
    last_heartbeat_at: string | Date | null;
    tag: string;
    namespace: string;
  }>(db, problemsSql(status, dueStatus, dueIds, limit));
  return rows.map((r) => ({
    slug: r.slug,
    name: r.name,
    status: r.status,
    since: new Date(r.since),
    reason:
      r.reason ??
      (r.last_heartbeat_at === null
        ? 'no heartbeat received yet'
        : r.status === 'degraded'
          ? 'degraded'
          : 'no recent heartbeat'),
    lastHeartbeatAt: r.last_heartbeat_at === null ? null : new Date(r.last_heartbeat_at),
    groups: { tag: r.tag, namespace: r.namespace, status: r.status },
  }));
}
