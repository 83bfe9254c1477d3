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

/** The columns of `projects` the rule reads, unqualified by default or of a table alias (`cols('p')`). */
export interface RuleColumns {
  status: SQL;
  lastHeartbeatAt: SQL;
  reportedHealth: SQL;
  intervalS: SQL;
}

export function ruleColumns(alias?: string): RuleColumns {
  const c = (name: string) => (alias ? sql.raw(`${alias}.${name}`) : sql.raw(name));
  return {
    status: c('status'),
    lastHeartbeatAt: c('last_heartbeat_at'),
    reportedHealth: c('reported_health'),
    intervalS: c('interval_s'),
  };
}

const UNQUALIFIED = ruleColumns();
const ts = (at: Date | SQL) => (at instanceof Date ? sql`${at.toISOString()}::timestamptz` : at);

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
 * When the rule, guards aside, next moves a row away from its stored status: the degraded deadline
 * of an online row (when lateness counts), else the offline deadline; null for an offline row. The
 * rule flips strictly after it (`deadline < now`).
 */
export function deadlineSql(defaults: Thresholds, c: RuleColumns = UNQUALIFIED): SQL {
  return sql`(case when ${c.status} = 'offline' or ${c.lastHeartbeatAt} is null then null::timestamptz
    else ${dueAfterHeartbeatSql(c.lastHeartbeatAt, sql`(case when ${c.status} = 'degraded' then 'degraded' else ${c.reportedHealth} end)`, c.intervalS, defaults)} end)`;
}

/**
 * The same rule and guards as `guardedStatus`, as a SQL expression over a row of `projects` at `now`
 * (a time, or a SQL timestamp such as a heartbeat's arrival), so that reads, filters and every claim
 * agree with the pure function (a test checks it).
 */
export function guardedStatusSql(
  now: Date | SQL,
  defaults: Thresholds,
  guard: GuardState,
  c: RuleColumns = UNQUALIFIED,
): SQL {
  const { offlineS, degradedS } = thresholdsSql(c.intervalS, defaults);
  const nowTs = ts(now);
  const heardTs = sql`${guard.heardSince.toISOString()}::timestamptz`;
  const age = (from: SQL) => sql`extract(epoch from (${nowTs} - ${from}))`;
  return sql`(case
    when ${c.lastHeartbeatAt} is null then 'offline'
    when ${c.reportedHealth} = ${LEAVING} then 'offline'
    when ${age(c.lastHeartbeatAt)} > ${offlineS} then
      case when ${c.status} <> 'offline' and (${guard.holdAll}::boolean or ${age(sql`greatest(${c.lastHeartbeatAt}, ${heardTs})`)} <= ${offlineS})
        then ${c.status} else 'offline' end
    when ${c.reportedHealth} = 'degraded' then 'degraded'
    when ${degradedS} is not null and ${age(c.lastHeartbeatAt)} > ${degradedS} then 'degraded'
    else 'online' end)`;
}

/**
 * The next deadline a row gets once a sweep has given it `status` (the guarded rule's value now):
 * null once offline; while a guard holds an offline flip, when that hold can end (the start-up or
 * reconnect grace, a mass-offline hold, or one threshold on while NATS is down); else the next
 * deadline of its last heartbeat.
 */
export function nextDueSql(
  status: SQL,
  now: Date,
  defaults: Thresholds,
  guard: GuardState,
  c: RuleColumns = UNQUALIFIED,
): SQL {
  const { offlineS, degradedS } = thresholdsSql(c.intervalS, defaults);
  const nowTs = sql`${now.toISOString()}::timestamptz`;
  const heardTs = sql`${guard.heardSince.toISOString()}::timestamptz`;
  const offlineAt = sql`(${c.lastHeartbeatAt} + ${seconds(offlineS)})`;
  const held = guard.holdAll
    ? guard.holdUntil
      ? sql`${guard.holdUntil.toISOString()}::timestamptz`
      : sql`(${nowTs} + ${seconds(offlineS)})`
    : sql`(greatest(${c.lastHeartbeatAt}, ${heardTs}) + ${seconds(offlineS)})`;
  return sql`(case
    when ${status} = 'offline' or ${c.lastHeartbeatAt} is null then null::timestamptz
    when ${offlineAt} < ${nowTs} then ${held}
    when ${status} = 'degraded' or ${degradedS} is null or ${c.reportedHealth} = 'degraded' then ${offlineAt}
    else ${c.lastHeartbeatAt} + ${seconds(degradedS)} end)`;
}

/**
 * Deadlines are queued in buckets of this many milliseconds (see project_deadlines): a bucket is due
 * at its end, so an entry is never earlier than any deadline it holds.
 */
export const DEADLINE_BUCKET_MS = 100;

/** `at` rounded up to the end of its deadline bucket. */
export function deadlineBucketSql(at: SQL): SQL {
  return sql`to_timestamp(ceil(extract(epoch from ${at}) * ${1000 / DEADLINE_BUCKET_MS}) / ${1000 / DEADLINE_BUCKET_MS})`;
}
