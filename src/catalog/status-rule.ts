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
/** The stored `reported_health` of a project whose last heartbeat carried `"state": "leaving"`. */
export const LEAVING = 'leaving';
/** The reason of the transition a leaving heartbeat makes. */
export const SHUTDOWN_REASON = 'shutdown';
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
  // Its last heartbeat said it is shutting down (state "leaving"): offline at once, no silence to wait for.
  if (input.reportedHealth === LEAVING) return 'offline';
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
  /** While holdAll holds, when it is known to end (a mass-offline hold); unknown while NATS is down. */
  holdUntil?: Date;
}

export function guardedStatus(
  stored: ProjectStatus,
  input: StatusInput,
  now: Date,
  defaults: Thresholds,
  guard: GuardState,
): ProjectStatus {
  const rule = computeStatus(input, now, defaults);
  if (
    rule !== 'offline' ||
    stored === 'offline' ||
    input.lastHeartbeatAt === null ||
    input.reportedHealth === LEAVING
  )
    return rule;
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
  if (input.reportedHealth === LEAVING) return SHUTDOWN_REASON;
  return `no heartbeat for more than ${t.offlineAfterS}s`;
}

/** The status a heartbeat gives its project the moment it is written. */
export function heartbeatStatus(health: string | null | undefined): ProjectStatus {
  if (health === LEAVING) return 'offline';
  return health === 'degraded' ? 'degraded' : 'online';
}

/** The thresholds of `thresholdsFor`, in SQL over an interval expression (a column or a parameter). */
export function thresholdsSql(intervalS: SQL, defaults: Thresholds): { offlineS: SQL; degradedS: SQL } {
  const scaled = (factor: number, fallback: number) =>
    sql`(case when ${intervalS} > 0 then ${intervalS} * ${factor} else ${fallback}::float8 end)`;
  return {
    offlineS: scaled(OFFLINE_FACTOR, defaults.offlineAfterS),
    degradedS:
      defaults.degradedAfterS === 0 ? sql`null::float8` : scaled(DEGRADED_FACTOR, defaults.degradedAfterS),
  };
}

const seconds = (s: SQL) => sql`(${s} * interval '1 second')`;

/**
 * When a project that just got a heartbeat at `at` may next change status without another one: its
 * degraded deadline while healthy (when lateness counts), else its offline deadline.
 */
export function dueAfterHeartbeatSql(at: SQL, health: SQL, intervalS: SQL, defaults: Thresholds): SQL {
  const { offlineS, degradedS } = thresholdsSql(intervalS, defaults);
  // A leaving project is offline already: nothing is due until its next heartbeat.
  return sql`(case when ${health} = ${LEAVING} then null::timestamptz
    else ${at} + ${seconds(sql`(case when ${health} = 'degraded' then ${offlineS} else coalesce(${degradedS}, ${offlineS}) end)`)} end)`;
}

/**
 * The same rule and guards as `guardedStatus`, as a SQL expression over the `projects` table, so
 * that filtering, paging and the sweeper's claim all agree with the pure function (a test checks it).
 */
export function guardedStatusSql(now: Date, defaults: Thresholds, guard: GuardState): SQL {
  const { offlineS, degradedS } = thresholdsSql(sql`interval_s`, defaults);
  const nowTs = sql`${now.toISOString()}::timestamptz`;
  const heardTs = sql`${guard.heardSince.toISOString()}::timestamptz`;
  const age = (from: SQL) => sql`extract(epoch from (${nowTs} - ${from}))`;
  return sql`(case
    when last_heartbeat_at is null then 'offline'
    when reported_health = ${LEAVING} then 'offline'
    when ${age(sql`last_heartbeat_at`)} > ${offlineS} then
      case when status <> 'offline' and (${guard.holdAll}::boolean or ${age(sql`greatest(last_heartbeat_at, ${heardTs})`)} <= ${offlineS})
        then status else 'offline' end
    when reported_health = 'degraded' then 'degraded'
    when ${degradedS} is not null and ${age(sql`last_heartbeat_at`)} > ${degradedS} then 'degraded'
    else 'online' end)`;
}

/**
 * The `due_at` a project gets once the sweeper has looked at it and given it `status` (the guarded
 * rule's value now): null once offline; while a guard holds an offline flip, when that hold can end
 * (the start-up or reconnect grace, a mass-offline hold, or one threshold on while NATS is down); else
 * the next deadline of its last heartbeat. A project still at its deadline (age equal to the
 * threshold, not yet past it) keeps it and is looked at again by the next sweep.
 */
export function nextDueSql(status: SQL, now: Date, defaults: Thresholds, guard: GuardState): SQL {
  const { offlineS, degradedS } = thresholdsSql(sql`interval_s`, defaults);
  const nowTs = sql`${now.toISOString()}::timestamptz`;
  const heardTs = sql`${guard.heardSince.toISOString()}::timestamptz`;
  const offlineAt = sql`(last_heartbeat_at + ${seconds(offlineS)})`;
  const held = guard.holdAll
    ? guard.holdUntil
      ? sql`${guard.holdUntil.toISOString()}::timestamptz`
      : sql`(${nowTs} + ${seconds(offlineS)})`
    : sql`(greatest(last_heartbeat_at, ${heardTs}) + ${seconds(offlineS)})`;
  return sql`(case
    when ${status} = 'offline' or last_heartbeat_at is null then null::timestamptz
    when ${offlineAt} < ${nowTs} then ${held}
    when ${status} = 'degraded' or ${degradedS} is null then ${offlineAt}
    else last_heartbeat_at + ${seconds(degradedS)} end)`;
}

/**
 * A project's status as the API shows it: the stored status unless something is due, and the guarded
 * rule for what is due (at most a sweep's worth of rows), so a read never shows a stale `online`.
 */
export function readStatusSql(now: Date, defaults: Thresholds, guard: GuardState): SQL {
  return sql`(case when due_at <= ${now.toISOString()}::timestamptz then ${guardedStatusSql(now, defaults, guard)} else status end)`;
}
