import { sql } from 'drizzle-orm';
import { arrayParam, type Database, query } from '../db/connection.ts';
import { InputError, NotFoundError } from '../errors.ts';
import { parseIsoTime } from './decode.ts';

export type MetricValue = number | string;

/** One stored observation: a number goes to value_number, anything else to value_text. */
export interface MetricObservation {
  projectId: number;
  metricType: string;
  value: MetricValue;
  observedAt: Date;
}

export type LatestMetrics = Record<string, { value: MetricValue; observed_at: string }>;
export interface MetricPoint {
  metric_type: string;
  value: MetricValue;
  observed_at: string;
}

export interface HistoryFilter {
  metric?: string;
  /** ISO 8601 times, both ends inclusive. */
  since?: string;
  until?: string;
  limit?: number;
}

export interface ProjectMetrics {
  project: string;
  project_id: number;
  latest: LatestMetrics;
  history?: MetricPoint[];
}

export const DEFAULT_HISTORY_LIMIT = 1000;
export const MAX_HISTORY_LIMIT = 10_000;
/** Retention deletes in chunks so that one prune never holds a long lock on a big table. */
export const PRUNE_CHUNK_ROWS = 10_000;

interface ValueRow {
  metric_type: string;
  value_number: number | string | null;
  value_text: string | null;
  observed_at: Date | string;
}

const rowValue = (r: ValueRow): MetricValue =>
  r.value_number !== null ? Number(r.value_number) : (r.value_text ?? '');
const isoOf = (d: Date | string): string => new Date(d).toISOString();

/** Identifies one observation, as the unique index (project_id, metric_type, observed_at) does. */
export const observationKey = (projectId: number, metricType: string, observedAt: Date): string =>
  `${projectId}\t${metricType}\t${observedAt.getTime()}`;

/** Stores and reads project metrics: the SQL of the metrics feature. */
export class MetricsService {
  readonly #db: Database;

  constructor(deps: { db: Database }) {
    this.#db = deps.db;
  }

  /** Project ids of the given slugs; slugs not in the catalog are absent from the map. */
  async projectIdsBySlug(slugs: string[]): Promise<Map<string, number>> {
    if (slugs.length === 0) return new Map();
    const rows = await query<{ id: number; slug: string }>(
      this.#db,
      sql`select id, slug from projects where slug = any(${arrayParam(slugs)}::text[])`,
    );
    return new Map(rows.map((r) => [r.slug, Number(r.id)]));
  }

  /**
   * Writes many observations in one statement. An observation already stored (a redelivered message)
   * is skipped by the unique index; returns the keys (see observationKey) of the rows actually inserted.
   */
  async insertObservations(observations: MetricObservation[], receivedAt: Date): Promise<Set<string>> {
    if (observations.length === 0) return new Set();
    const rows = await query<{ project_id: number; metric_type: string; observed_at: Date | string }>(
      this.#db,
      sql`insert into project_metrics (project_id, metric_type, value_number, value_text, observed_at, received_at)
          select p, t, n, x, o, ${receivedAt.toISOString()}::timestamptz
          from unnest(${arrayParam(observations.map((o) => o.projectId))}::int[],
                      ${arrayParam(observations.map((o) => o.metricType))}::text[],
                      ${arrayParam(observations.map((o) => (typeof o.value === 'number' ? o.value : null)))}::float8[],
                      ${arrayParam(observations.map((o) => (typeof o.value === 'string' ? o.value : null)))}::text[],
                      ${arrayParam(observations.map((o) => o.observedAt.toISOString()))}::timestamptz[]) as u(p, t, n, x, o)
          on conflict (project_id, metric_type, observed_at) do nothing
          returning project_id, metric_type, observed_at`,
    );
    return new Set(
      rows.map((r) => observationKey(Number(r.project_id), r.metric_type, new Date(r.observed_at))),
    );
  }

  /** A project by slug or by numeric id; a slug made of digits wins over an id. */
  async resolveProject(ref: string): Promise<{ id: number; slug: string }> {
    const asId = /^[0-9]{1,9}$/.test(ref) ? Number(ref) : undefined;
    const rows = await query<{ id: number; slug: string }>(
      this.#db,
      sql`select id, slug from projects
          where slug = ${ref} ${asId !== undefined ? sql`or id = ${asId}` : sql``}
          order by (slug = ${ref}) desc limit 1`,
    );
    const row = rows[0];
    if (!row) throw new NotFoundError(`project ${ref} is not registered`);
    return { id: Number(row.id), slug: row.slug };
  }

  /** Latest value of each metric type of one project, and its history when a filter is given. */
  async getProjectMetrics(ref: string, filter: HistoryFilter = {}): Promise<ProjectMetrics> {
    const range = parseRange(filter);
    const project = await this.resolveProject(ref);
    const latest = (await this.latestByProject([project.id])).get(project.id) ?? {};
    const result: ProjectMetrics = { project: project.slug, project_id: project.id, latest };
    if (filter.metric !== undefined || range.since || range.until) {
      result.history = await this.#history(project.id, filter.metric, range, filter.limit);
    }
    return result;
  }

  /** The latest values of every project in the catalog (those without metrics have `latest: {}`). */
  async getAllLatest(): Promise<Array<{ project: string; project_id: number; latest: LatestMetrics }>> {
    const projects = await query<{ id: number; slug: string }>(
      this.#db,
      sql`select id, slug from projects order by slug`,
    );
    const latest = await this.latestByProject();
    return projects.map((p) => ({
      project: p.slug,
      project_id: Number(p.id),
      latest: latest.get(Number(p.id)) ?? {},
    }));
  }

  /**
   * Latest value per (project, metric type), for the given projects or all of them. A skip scan over the
   * unique index (project_id, metric_type, observed_at): one index probe per project and per metric type,
   * so the cost follows the number of series, not the rows kept (DISTINCT ON would read every row).
   */
  async latestByProject(projectIds?: number[]): Promise<Map<number, LatestMetrics>> {
    if (projectIds && projectIds.length === 0) return new Map();
    const rows = await query<ValueRow & { project_id: number }>(
      this.#db,
      sql`with recursive series(project_id, metric_type) as (
            select p.id, (select m.metric_type from project_metrics m where m.project_id = p.id
                          order by m.metric_type limit 1)
            from projects p
            ${projectIds ? sql`where p.id = any(${arrayParam(projectIds)}::int[])` : sql``}
            union all
            select s.project_id, (select m.metric_type from project_metrics m
                                  where m.project_id = s.project_id and m.metric_type > s.metric_type
                                  order by m.metric_type limit 1)
            from series s where s.metric_type is not null
          )
          select s.project_id, s.metric_type, l.value_number, l.value_text, l.observed_at
          from series s cross join lateral (
            select m.value_number, m.value_text, m.observed_at from project_metrics m
            where m.project_id = s.project_id and m.metric_type = s.metric_type
            order by m.observed_at desc limit 1) l
          where s.metric_type is not null
          order by s.project_id, s.metric_type`,
    );
    const out = new Map<number, LatestMetrics>();
    for (const r of rows) {
      const id = Number(r.project_id);
      let latest = out.get(id);
      if (!latest) {
        latest = {};
        out.set(id, latest);
      }
      latest[r.metric_type] = { value: rowValue(r), observed_at: isoOf(r.observed_at) };
    }
    return out;
  }

  async #history(
    projectId: number,
    metric: string | undefined,
    range: { since?: Date; until?: Date },
    limit = DEFAULT_HISTORY_LIMIT,
  ): Promise<MetricPoint[]> {
    const rows = await query<ValueRow>(
      this.#db,
      sql`select metric_type, value_number, value_text, observed_at from project_metrics
          where project_id = ${projectId}
            ${metric !== undefined ? sql`and metric_type = ${metric}` : sql``}
            ${range.since ? sql`and observed_at >= ${range.since.toISOString()}::timestamptz` : sql``}
            ${range.until ? sql`and observed_at <= ${range.until.toISOString()}::timestamptz` : sql``}
          order by observed_at desc, metric_type asc
          limit ${Math.min(limit, MAX_HISTORY_LIMIT)}`,
    );
    return rows.map((r) => ({
      metric_type: r.metric_type,
      value: rowValue(r),
      observed_at: isoOf(r.observed_at),
    }));
  }

  /** Deletes observations older than `cutoff`, in chunks; returns how many rows went. */
  async pruneOlderThan(cutoff: Date, chunkRows = PRUNE_CHUNK_ROWS): Promise<number> {
    let total = 0;
    for (;;) {
      const rows = await query<{ n: number | string }>(
        this.#db,
        sql`with gone as (
              delete from project_metrics where id in (
                select id from project_metrics where observed_at < ${cutoff.toISOString()}::timestamptz limit ${chunkRows})
              returning 1)
            select count(*) as n from gone`,
      );
      const n = Number(rows[0]?.n ?? 0);
      total += n;
      if (n < chunkRows) return total;
    }
  }
}

function parseRange(filter: HistoryFilter): { since?: Date; until?: Date } {
  const out: { since?: Date; until?: Date } = {};
  for (const field of ['since', 'until'] as const) {
    const raw = filter[field];
    if (raw === undefined) continue;
    const at = parseIsoTime(raw);
    if (!at) throw new InputError(`${field} must be an ISO 8601 time, e.g. 2025-01-31T12:00:00Z`, { field });
    out[field] = at;
  }
  if (out.since && out.until && out.since > out.until) {
    throw new InputError('since must not be later than until', { field: 'since' });
  }
  return out;
}
