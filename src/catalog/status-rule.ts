import { type SQL, sql } from 'drizzle-orm';
import type { ProjectStatus } from '../protocol/index.ts';

/** Server-wide thresholds (FED_DEGRADED_AFTER_S, FED_OFFLINE_AFTER_S); degradedAfterS 0 turns lateness off. */
export interface Thresholds {
  degradedAfterS: number;
  offlineAfterS: number;
}

export interface StatusInput {
  lastHeartbeatAt: Date | null;
  reportedHealth: string | null;
  /** The interval the project announced; its thresholds become 1.5× and 3× of it. */
  intervalS: number | null;
}

export const DEGRADED_FACTOR = 1.5;
export const OFFLINE_FACTOR = 3;

export function thresholdsFor(input: Pick<StatusInput, 'intervalS'>, defaults: Thresholds): Thresholds {
  if (input.intervalS == null || input.intervalS <= 0) return defaults;
  return {
    degradedAfterS: defaults.degradedAfterS === 0 ? 0 : input.intervalS * DEGRADED_FACTOR,
    offlineAfterS: input.intervalS * OFFLINE_FACTOR,
  };
}

/**
 * The status rule of DESIGN.md, as a pure function of a project's last heartbeat and the time:
 * no heartbeat → offline; older than the offline threshold → offline; reported degraded or
 * older than the degraded threshold → degraded; else online.
 */
export function computeStatus(input: StatusInput, now: Date, defaults: Thresholds): ProjectStatus {
  if (input.lastHeartbeatAt === null) return 'offline';
  const t = thresholdsFor(input, defaults);
  const ageMs = now.getTime() - input.lastHeartbeatAt.getTime();
  if (ageMs > t.offlineAfterS * 1000) return 'offline';
  if (input.reportedHealth === 'degraded') return 'degraded';
  if (t.degradedAfterS > 0 && ageMs > t.degradedAfterS * 1000) return 'degraded';
  return 'online';
}

/**
 * The guards against false offline, evaluated for one project: while one holds, a project the rule
 * calls offline keeps its last status. `heardSince` is when this service started listening (start-up
 * grace: silence from before it could not have been heard); `holdAll` is set while NATS is down or
 * a mass-offline event is being held back.
 */
export interface GuardState {
  heardSince: Date;
  holdAll: boolean;
}

export function guardedStatus(
  stored: ProjectStatus,
  input: StatusInput,
  now: Date,
  defaults: Thresholds,
  guard: GuardState,
): ProjectStatus {
  const rule = computeStatus(input, now, defaults);
  if (rule !== 'offline' || stored === 'offline' || input.lastHeartbeatAt === null) return rule;
  if (guard.holdAll) return stored;
  const { offlineAfterS } = thresholdsFor(input, defaults);
  const heardFrom = Math.max(input.lastHeartbeatAt.getTime(), guard.heardSince.getTime());
  return now.getTime() - heardFrom > offlineAfterS * 1000 ? 'offline' : stored;
}

/** Why a project moved from one status to another, for the event history. */
export function transitionReason(
  from: ProjectStatus,
  to: ProjectStatus,
  input: StatusInput,
  defaults: Thresholds,
): string {
  const t = thresholdsFor(input, defaults);
  if (to === 'online') return from === 'offline' ? 'heartbeat received' : 'heartbeat on time and healthy';
  if (to === 'degraded') {
    return input.reportedHealth === 'degraded'
      ? 'project reported health degraded'
      : `heartbeat late: none for more than ${t.degradedAfterS}s`;
  }
  if (input.lastHeartbeatAt === null) return 'no heartbeat received yet';
  return `no heartbeat for more than ${t.offlineAfterS}s`;
}

/**
 * The same rule and guards as `guardedStatus`, as a SQL expression over the `projects` table, so
 * that filtering, paging and the sweeper's claim all agree with the pure function (a test checks it).
 */
export function guardedStatusSql(now: Date, defaults: Thresholds, guard: GuardState): SQL {
  const offlineS = sql`coalesce(interval_s * ${OFFLINE_FACTOR}, ${defaults.offlineAfterS}::float8)`;
  const degradedS =
    defaults.degradedAfterS === 0
      ? sql`null::float8`
      : sql`coalesce(interval_s * ${DEGRADED_FACTOR}, ${defaults.degradedAfterS}::float8)`;
  const nowTs = sql`${now.toISOString()}::timestamptz`;
  const heardTs = sql`${guard.heardSince.toISOString()}::timestamptz`;
  const age = (from: SQL) => sql`extract(epoch from (${nowTs} - ${from}))`;
  return sql`(case
    when last_heartbeat_at is null then 'offline'
    when ${age(sql`last_heartbeat_at`)} > ${offlineS} then
      case when status <> 'offline' and (${guard.holdAll}::boolean or ${age(sql`greatest(last_heartbeat_at, ${heardTs})`)} <= ${offlineS})
        then status else 'offline' end
    when reported_health = 'degraded' then 'degraded'
    when ${degradedS} is not null and ${age(sql`last_heartbeat_at`)} > ${degradedS} then 'degraded'
    else 'online' end)`;
}
