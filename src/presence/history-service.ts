import { sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { type Database, query } from '../db/connection.ts';
import { NotFoundError } from '../errors.ts';
import type { ProjectStatus } from '../protocol/index.ts';

export const DEFAULT_HISTORY_LIMIT = 100;
export const MAX_HISTORY_LIMIT = 1000;

export const UPTIME_WINDOWS = { '1h': 3600_000, '24h': 86_400_000, '7d': 7 * 86_400_000 } as const;
export type UptimeWindow = keyof typeof UPTIME_WINDOWS;

export interface StatusChange {
  from: ProjectStatus;
  to: ProjectStatus;
  at: Date;
  reason: string;
  /** Inside a maintenance window: stored, not notified. */
  maintenance: boolean;
}

export interface ProjectHistory {
  slug: string;
  transitions: StatusChange[];
  uptime: Record<UptimeWindow, number>;
}

const isUp = (s: ProjectStatus): boolean => s === 'online' || s === 'degraded';

/**
 * The fraction of [windowStart, now] the project spent online or degraded, from its transitions
 * (ascending) and the status it had before them. Time before the project existed does not count.
 */
export function uptimeFraction(input: {
  changes: ReadonlyArray<Pick<StatusChange, 'from' | 'to' | 'at'>>;
  statusBefore: ProjectStatus | undefined;
  currentStatus: ProjectStatus;
  createdAt: Date;
  windowStart: Date;
  now: Date;
}): number {
  const { changes, now } = input;
  const start = Math.max(input.windowStart.getTime(), input.createdAt.getTime());
  const end = now.getTime();
  if (end <= start) return isUp(input.currentStatus) ? 1 : 0;
  let status: ProjectStatus = input.statusBefore ?? changes[0]?.from ?? input.currentStatus;
  let i = 0;
  for (; i < changes.length && (changes[i] as StatusChange).at.getTime() <= start; i++) {
    status = (changes[i] as StatusChange).to;
  }
  let upMs = 0;
  let t = start;
  for (; i < changes.length; i++) {
    const c = changes[i] as StatusChange;
    const at = Math.min(c.at.getTime(), end);
    if (isUp(status)) upMs += at - t;
    t = at;
    status = c.to;
  }
  if (isUp(status)) upMs += end - t;
  return Math.round((upMs / (end - start)) * 1e6) / 1e6;
}

/** A project's status transitions and its uptime over the last hour, day and week. */
export class HistoryService {
  readonly #db: Database;
  readonly #clock: Clock;

  constructor(deps: { db: Database; clock: Clock }) {
    this.#db = deps.db;
    this.#clock = deps.clock;
  }

  async history(slug: string, limit = DEFAULT_HISTORY_LIMIT): Promise<ProjectHistory> {
    const now = this.#clock.now();
    const projects = await query<{ id: number; status: ProjectStatus; created_at: string | Date }>(
      this.#db,
      sql`select id, status, created_at from projects where slug = ${slug}`,
    );
    const project = projects[0];
    if (!project) throw new NotFoundError(`project ${slug} is not registered`);

    type Row = {
      from_status: ProjectStatus;
      to_status: ProjectStatus;
      at: string | Date;
      reason: string;
      maintenance: boolean;
    };
    const toChange = (r: Row): StatusChange => ({
      from: r.from_status,
      to: r.to_status,
      at: new Date(r.at),
      reason: r.reason,
      maintenance: r.maintenance,
    });
    const latest = await query<Row>(
      this.#db,
      sql`select from_status, to_status, at, reason, maintenance from project_status_events
          where project_id = ${project.id} order by at desc, id desc limit ${limit}`,
    );

    const weekStart = new Date(now.getTime() - UPTIME_WINDOWS['7d']);
    const windowRows = await query<Row & { before: boolean }>(
      this.#db,
      sql`(select from_status, to_status, at, reason, maintenance, true as before from project_status_events
           where project_id = ${project.id} and at <= ${weekStart.toISOString()}::timestamptz
           order by at desc, id desc limit 1)
          union all
          (select from_status, to_status, at, reason, maintenance, false as before from project_status_events
           where project_id = ${project.id} and at > ${weekStart.toISOString()}::timestamptz
           order by at asc, id asc)`,
    );
    const before = windowRows.find((r) => r.before);
    const changes = windowRows
      .filter((r) => !r.before)
      .map(toChange)
      .sort((a, b) => a.at.getTime() - b.at.getTime());
    const createdAt = new Date(project.created_at);
    const uptime = Object.fromEntries(
      Object.entries(UPTIME_WINDOWS).map(([name, ms]) => [
        name,
        uptimeFraction({
          changes,
          statusBefore: before?.to_status,
          currentStatus: project.status,
          createdAt,
          windowStart: new Date(now.getTime() - ms),
          now,
        }),
      ]),
    ) as Record<UptimeWindow, number>;

    return { slug, transitions: latest.map(toChange).reverse(), uptime };
  }
}
