import { type SQL, sql } from 'drizzle-orm';
import { arrayParam, type Database, query } from '../db/connection.ts';
import type { ProjectStatus } from '../protocol/index.ts';
import type { Transition } from './catalog-service.ts';
import {
  deadlineBucketSql,
  deadlineSql,
  dueAfterHeartbeatSql,
  type GuardState,
  guardedStatusSql,
  LEAVING,
  ruleColumns,
  type Thresholds,
  thresholdsFor,
  transitionReason,
} from './status-rule.ts';

/** One heartbeat as the writer stores it: the payload's fields and the time the service received it. */
export interface HeartbeatRow {
  slug: string;
  received_at: string;
  /**
   * When the first of the heartbeats this row stands for was received, when earlier than
   * `received_at` (the writer keeps only the latest of each project while it is behind or the
   * database is down): the project was heard from then on, so the rule is applied at that moment,
   * not across the gap the buffer made.
   */
  heard_at?: string;
  /** 'leaving': the heartbeat carried `"state": "leaving"` (the project is shutting down). */
  health: 'ok' | 'degraded' | 'leaving';
  version: string | null;
  interval_s: number | null;
  name: string | null;
  /** null: keep the stored address (the seed's updateHeartbeat has none). */
  hub_url: string | null;
  mesh_namespace: string | null;
  tags: string[] | null;
}

/**
 * A heartbeat ready to write: its slug and its `HeartbeatRow` as JSON without the slug (see
 * `heartbeatRowJson`; the slug is put back when a batch is joined).
 */
export type SerializedHeartbeat = readonly [slug: string, json: string];

/** What a row holds besides its slug and times. */
export type HeartbeatRowFields = Omit<HeartbeatRow, 'slug' | 'received_at' | 'heard_at'>;

/**
 * A row as JSON, made once when the heartbeat is buffered: one string is all the buffer holds per
 * project, and a fleet starting at once can leave a million of them waiting. So the keys are one
 * letter (mapped back to the row's names in `recordset` below), the times are epoch milliseconds,
 * nulls and an `ok` health are left out (a missing key reads as null), the slug is left to the
 * batch (`jsonArray`), and the string is copied to one of exactly its length: the string
 * JSON.stringify returns keeps the slack of the buffer it was built in (measured for the bench's
 * heartbeats with the map entry: 437 bytes a row as it was, 213 with short keys and the copy).
 * Only `heard_at` is added later, as a prefix (`HEARD_KEY`).
 */
export function heartbeatRowJsonAt(fields: HeartbeatRowFields, receivedMs: number, heardMs?: number): string {
  return Buffer.from(
    JSON.stringify({
      a: heardMs,
      r: receivedMs,
      h: fields.health === 'ok' ? undefined : fields.health,
      v: fields.version ?? undefined,
      i: fields.interval_s ?? undefined,
      n: fields.name ?? undefined,
      u: fields.hub_url ?? undefined,
      m: fields.mesh_namespace ?? undefined,
      t: fields.tags ?? undefined,
    }),
  ).toString();
}

/** `heartbeatRowJsonAt` for a whole `HeartbeatRow` (its slug goes beside the JSON, not in it). */
export const heartbeatRowJson = (row: HeartbeatRow): string =>
  heartbeatRowJsonAt(
    row,
    Date.parse(row.received_at),
    row.heard_at === undefined ? undefined : Date.parse(row.heard_at),
  );

/** The key of `heard_at` in a serialized row: `{"a":<epoch ms>,` + the rest of the row. */
export const HEARD_KEY = 'a';

/** The rows as one JSON array, each with its slug put back first. */
const jsonArray = (rows: readonly SerializedHeartbeat[]) =>
  `[${rows.map(([slug, json]) => `{"s":${JSON.stringify(slug)},${json.slice(1)}`).join(',')}]`;

export interface HeartbeatWriteResult {
  /** Slugs whose heartbeat was not stored: a newer one is, or the project is unknown (or being inserted elsewhere). */
  notWritten: Set<string>;
  /** Slugs not registered (only when auto-registration is off). */
  unknown: Set<string>;
  /** Slugs registered by this write. */
  inserted: Set<string>;
  /** Transitions the heartbeats made (offline/degraded → online, a new project's first status, …), stored once. */
  transitions: Transition[];
  /**
   * The deadlines the common path queued, as `id:epoch-ms` pairs joined by commas (null when none),
   * tagged with `replica` in the queue (see src/catalog/known-deadlines.ts).
   */
  queued: string | null;
}

const heartbeatStatusSql = (health: SQL) =>
  sql`(case when ${health} = 'degraded' then 'degraded' when ${health} = ${LEAVING} then 'offline' else 'online' end)`;

/**
 * Runs in the transaction that stores transitions (the notification outbox, see src/notify/outbox.ts).
 * `first`: new projects' first status, as they are registered (no window, no history yet).
 */
export type TransitionsStoredHook = (
  tx: Database,
  transitions: readonly Transition[],
  kind: 'first' | 'claimed',
) => Promise<void>;

/**
 * Stores a batch of heartbeats (at most one per slug) the way the status rule needs it, in one statement in the common case:
 * 1. the common case, a project whose status the heartbeat does not change (and that had no transition
 *    pending when it arrived), is one UPDATE of columns no index covers, so PostgreSQL keeps it a HOT
 *    update, plus one row per deadline bucket appended to project_deadlines. Only the rows it did not
 *    update come back: parsing a row per
 *    project cost the receiving thread more than the statement itself.
 * 2. for those, new slugs are inserted with their first transition (when auto-registration is on),
 *    and the rest are told apart: unknown, or known with a status the heartbeat changes;
 * 3. projects whose status the heartbeat changes are locked, updated and their transitions (first any
 *    the rule had made before it arrived and no sweep had claimed yet) stored and counted in one transaction, so a transition is claimed exactly once against the sweeper and other
 *    replicas.
 * A heartbeat older than the stored one is not written.
 */
export async function writeHeartbeats(
  db: Database,
  rows: readonly SerializedHeartbeat[],
  opts: {
    autoRegister: boolean;
    now: Date;
    thresholds: Thresholds;
    guard: GuardState;
    onStored?: TransitionsStoredHook;
    /**
     * The batch was just found unregistered: go straight to registering it (step 2), without the
     * UPDATE of step 1. Any that meanwhile exist still take step 3.
     */
    unregistered?: boolean;
    /** This replica's id: the deadlines of the common path are queued tagged with it. */
    replica?: string;
  },
): Promise<HeartbeatWriteResult> {
  const result: HeartbeatWriteResult = {
    notWritten: new Set(),
    unknown: new Set(),
    inserted: new Set(),
    transitions: [],
    queued: null,
  };
  if (rows.length === 0) return result;
  const recordset = (json: string) =>
    sql`(select h.*, ${heartbeatStatusSql(sql`h.health`)} as new_status,
                ${dueAfterHeartbeatSql(sql`h.received_at`, sql`h.health`, sql`h.interval_s`, opts.thresholds)} as due
         from (select r.s as slug, timestamptz 'epoch' + r.r * interval '1 millisecond' as received_at,
                      timestamptz 'epoch' + r.a * interval '1 millisecond' as heard_at,
                      coalesce(r.h, 'ok') as health, r.v as version, r.i as interval_s, r.n as name,
                      r.u as hub_url, r.m as mesh_namespace, r.t as tags
               from json_to_recordset(${json}::json) as r(s text, r int8, a int8, h text,
                    v text, i float8, n text, u text, m text, t jsonb)) as h)`;
  const assignments = sql`last_heartbeat_at = h.received_at, reported_health = h.health, version = h.version,
      interval_s = h.interval_s, updated_at = h.received_at, held_until = null,
      -- Projects first seen in a heartbeat are owned by it: their address follows the heartbeat.
      hub_url = case when p.source = 'heartbeat' then coalesce(h.hub_url, p.hub_url) else p.hub_url end,
      mesh_namespace = case when p.source = 'heartbeat' then coalesce(h.mesh_namespace, p.mesh_namespace) else p.mesh_namespace end`;
  const newer = sql`(p.last_heartbeat_at is null or p.last_heartbeat_at <= h.received_at)`;
  // A row the rule had already moved away from its stored status when the heartbeat arrived has a
  // transition pending (not yet claimed by a sweep): it takes the locked path, which stores it first.
  // Heard from at the first heartbeat the row stands for (see HeartbeatRow.heard_at).
  const heard = sql`coalesce(least(h.heard_at, h.received_at), h.received_at)`;
  const heardAfterChange = sql`greatest(${heard}, least(p.status_changed_at, h.received_at))`;
  const onTime = sql`(${deadlineSql(opts.thresholds, ruleColumns('p'))} is null or ${deadlineSql(opts.thresholds, ruleColumns('p'))} >= ${heard})`;

  const insert = opts.autoRegister
    ? sql`ins as (
          insert into projects (slug, name, hub_url, mesh_namespace, tags, source, status, status_changed_at,
                                last_heartbeat_at, reported_health, version, interval_s, created_at, updated_at)
          select h.slug, coalesce(h.name, h.slug), h.hub_url, h.mesh_namespace, coalesce(h.tags, '[]'::jsonb),
                 'heartbeat', h.new_status, h.received_at, h.received_at, h.health, h.version, h.interval_s,
                 ${opts.now.toISOString()}::timestamptz, h.received_at
          from h where not exists (select 1 from projects p where p.slug = h.slug)
          -- A slug another replica inserts meanwhile is skipped here and written with its next heartbeat.
          on conflict (slug) do nothing
          returning id, slug, status, last_heartbeat_at
        ),
        ev as (
          insert into project_status_events (project_id, from_status, to_status, at, reason)
          select id, 'offline', status, last_heartbeat_at,
                 case when status = 'degraded' then ${transitionReason('offline', 'degraded', { lastHeartbeatAt: new Date(0), reportedHealth: 'degraded', intervalS: null }, opts.thresholds)}
                      else ${transitionReason('offline', 'online', { lastHeartbeatAt: new Date(0), reportedHealth: 'ok', intervalS: null }, opts.thresholds)} end
          from ins where status <> 'offline'
        ),
        ins_due as (${queueDeadlines(sql`select ins.id, h.due from ins join h on h.slug = ins.slug`)})`
    : sql`ins as (select null::int as id, null::text as slug, null::text as status, null::timestamptz as last_heartbeat_at where false)`;

  // The common case, alone: no probe of the slug index for new projects unless a row was not updated.
  const common = opts.unregistered
    ? rows.map(([slug]) => ({ slug, queued: null }))
    : await query<{ slug: string | null; queued: string | null }>(
        db,
        sql`with h as ${recordset(jsonArray(rows))},
        upd as (
          update projects p set ${assignments}
          from h where p.slug = h.slug and ${newer} and p.status = h.new_status and ${onTime}
          returning p.id, p.slug, h.due
        ),
        upd_due as (${queueDeadlines(sql`select id, due from upd`, { queuedBy: opts.replica })})
        select h.slug, null::text as queued from h where not exists (select 1 from upd where upd.slug = h.slug)
        union all
        select null, string_agg(id::text || ':' || floor(extract(epoch from due) * 1000)::bigint::text, ',')
        from upd having count(due) > 0`,
        { prepared: true },
      );
  const missed: Array<{ slug: string }> = [];
  for (const r of common) {
    if (r.slug !== null) missed.push({ slug: r.slug });
    else result.queued = r.queued;
  }
  if (missed.length === 0) return result;
  const missedSlugs = new Set(missed.map((m) => m.slug));
  const findExceptions = async (tx: Database) => {
    const found = await query<{
      slug: string;
      id: number | null;
      status: ProjectStatus | null;
      at: string | Date | null;
      known: boolean;
    }>(
      tx,
      sql`with h as ${recordset(jsonArray(rows.filter((r) => missedSlugs.has(r[0]))))},
          ${insert}
          select h.slug, ins.id, ins.status, ins.last_heartbeat_at as at,
                 (ins.id is not null or exists (select 1 from projects p where p.slug = h.slug)) as known
          from h left join ins on ins.slug = h.slug`,
      { prepared: true },
    );
    for (const e of found) {
      if (e.id === null || e.status === null || e.at === null) continue;
      result.inserted.add(e.slug);
      // A project whose first heartbeat says it is leaving is registered offline: no transition.
      if (e.status === 'offline') continue;
      result.transitions.push({
        projectId: e.id,
        slug: e.slug,
        from: 'offline',
        to: e.status,
        at: new Date(e.at),
        reason: transitionReason(
          'offline',
          e.status,
          {
            lastHeartbeatAt: new Date(e.at),
            reportedHealth: e.status === 'degraded' ? 'degraded' : 'ok',
            intervalS: null,
          },
          opts.thresholds,
        ),
      });
    }
    if (result.transitions.length > 0) await opts.onStored?.(tx, result.transitions, 'first');
    return found;
  };
  // In a transaction when a hook writes with the transitions (the outbox), so that both commit together.
  const exceptions = opts.onStored ? await db.transaction(findExceptions) : await findExceptions(db);

  const changing: SerializedHeartbeat[] = [];
  const bySlug = new Map(rows.map((r) => [r[0], r]));
  for (const e of exceptions) {
    if (e.id !== null && e.status !== null && e.at !== null) continue;
    if (!e.known) {
      result.notWritten.add(e.slug);
      if (!opts.autoRegister) result.unknown.add(e.slug);
    } else {
      const row = bySlug.get(e.slug);
      if (row) changing.push(row);
    }
  }
  if (changing.length === 0) return result;

  const written = new Set<string>();
  const old = ruleColumns('p');
  await db.transaction(async (tx) => {
    const changed = await query<{
      id: number;
      slug: string;
      from_status: ProjectStatus;
      pending: ProjectStatus;
      to_status: ProjectStatus;
      at: string | Date;
      old_heartbeat_at: string | Date | null;
      old_health: string | null;
      old_interval_s: number | null;
      reported_health: string | null;
      interval_s: number | null;
    }>(
      tx,
      sql`with h as ${recordset(jsonArray(changing))},
          cur as (
            select p.id, p.status, h.slug, p.last_heartbeat_at, p.reported_health, p.interval_s,
                   -- A row some replica's sweep holds keeps its status until the hold ends.
                   -- Judged when it was first heard, but never before the stored status's own change
                   -- (another replica may have claimed one meanwhile): history stays in time order.
                   case when p.held_until > ${heardAfterChange} then p.status
                        else ${guardedStatusSql(heardAfterChange, opts.thresholds, opts.guard, old)} end as pending
            from projects p join h on p.slug = h.slug where ${newer} for update of p
          ),
          upd as (
            update projects p set ${assignments}, status = h.new_status,
              status_changed_at = case when cur.status <> h.new_status or cur.pending <> cur.status
                                       then h.received_at else p.status_changed_at end
            from h, cur where p.id = cur.id and h.slug = cur.slug
            returning p.id, p.slug, cur.status as from_status, cur.pending, h.new_status as to_status,
                      h.received_at as at, cur.last_heartbeat_at as old_heartbeat_at,
                      cur.reported_health as old_health, cur.interval_s as old_interval_s,
                      p.reported_health, p.interval_s, h.due
          ),
          upd_due as (${queueDeadlines(sql`select id, due from upd`)})
          select id, slug, from_status, pending, to_status, at, old_heartbeat_at, old_health, old_interval_s,
                 reported_health, interval_s from upd`,
      { prepared: true },
    );
    const transitions: Transition[] = [];
    for (const r of changed) {
      written.add(r.slug);
      const at = new Date(r.at);
      // The transition the rule had made before this heartbeat arrived, at the moment it made it.
      if (r.pending !== r.from_status) {
        const before = {
          lastHeartbeatAt: r.old_heartbeat_at === null ? null : new Date(r.old_heartbeat_at),
          reportedHealth: r.old_health,
          intervalS: r.old_interval_s,
        };
        transitions.push({
          projectId: r.id,
          slug: r.slug,
          from: r.from_status,
          to: r.pending,
          at: pendingSince(r.pending, before, at, opts.thresholds, opts.guard),
          reason: transitionReason(r.from_status, r.pending, before, opts.thresholds),
        });
      }
      if (r.pending === r.to_status) continue;
      transitions.push({
        projectId: r.id,
        slug: r.slug,
        from: r.pending,
        to: r.to_status,
        at,
        reason: transitionReason(
          r.pending,
          r.to_status,
          { lastHeartbeatAt: at, reportedHealth: r.reported_health, intervalS: r.interval_s },
          opts.thresholds,
        ),
      });
    }
    await storeTransitions(tx, transitions, opts.onStored);
    result.transitions.push(...transitions);
  });
  for (const [slug] of changing) if (!written.has(slug)) result.notWritten.add(slug);
  return result;
}

/**
 * When the rule moved a silent project to `to` (degraded or offline): its threshold after the last
 * heartbeat (or after the start-up grace), never later than the heartbeat that found it.
 */
function pendingSince(
  to: ProjectStatus,
  before: { lastHeartbeatAt: Date | null; reportedHealth: string | null; intervalS: number | null },
  heartbeatAt: Date,
  defaults: Thresholds,
  guard: GuardState,
): Date {
  if (before.lastHeartbeatAt === null) return heartbeatAt;
  const t = thresholdsFor(before, defaults);
  const fromMs =
    to === 'offline'
      ? Math.max(before.lastHeartbeatAt.getTime(), guard.heardSince.getTime()) + t.offlineAfterS * 1000
      : before.lastHeartbeatAt.getTime() + t.degradedAfterS * 1000;
  return new Date(Math.min(fromMs, heartbeatAt.getTime() - 1));
}

/**
 * Appends deadlines to the queue (project_deadlines): one row per 100 ms bucket (and per
 * DEADLINE_ROW_IDS ids), due at its end.
 * `rows` is a SELECT of (id, due); rows without a due time are left out. `queuedBy`: the replica
 * whose heartbeat write queues them (the common path only, see src/catalog/known-deadlines.ts).
 * `notBefore`: no sweep takes them before then (see `project_deadlines.not_before`).
 */
export function queueDeadlines(rows: SQL, opts: { queuedBy?: string; notBefore?: SQL } = {}): SQL {
  const by = opts.queuedBy === undefined ? sql`null::bigint` : sql`${opts.queuedBy}::bigint`;
  return sql`insert into project_deadlines (due_at, project_ids, queued_by, not_before)
    select b.due_at, array_agg(b.id), ${by}, ${opts.notBefore ?? sql`null::timestamptz`} from (
      select ${deadlineBucketSql(sql`d.due`)} as due_at, d.id,
             (row_number() over () - 1) / ${DEADLINE_ROW_IDS} as chunk
      from (${rows}) d(id, due) where d.due is not null) b
    group by b.due_at, b.chunk`;
}

/**
 * Ids per queue row at most: a sweep statement takes a few rows, so this bounds the rows it locks
 * (start-up queues every live project at once; a fleet registering fills whole flushes).
 */
export const DEADLINE_ROW_IDS = 2000;

/**
 * Stores claimed transitions as events and as one count delta, in the caller's transaction (the one
 * that claimed them), so each is stored exactly once.
 */
export async function storeTransitions(
  tx: Database,
  transitions: readonly Transition[],
  onStored?: TransitionsStoredHook,
): Promise<void> {
  if (transitions.length === 0) return;
  await query(
    tx,
    sql`insert into project_status_events (project_id, from_status, to_status, at, reason)
        select * from unnest(${arrayParam(transitions.map((t) => t.projectId))}::int[],
                             ${arrayParam(transitions.map((t) => t.from))}::text[],
                             ${arrayParam(transitions.map((t) => t.to))}::text[],
                             ${arrayParam(transitions.map((t) => t.at.toISOString()))}::timestamptz[],
                             ${arrayParam(transitions.map((t) => t.reason))}::text[])`,
  );
  const delta: Record<ProjectStatus, number> = { online: 0, degraded: 0, offline: 0 };
  for (const t of transitions) {
    delta[t.from] -= 1;
    delta[t.to] += 1;
  }
  await query(
    tx,
    sql`insert into project_status_counts (online, degraded, offline)
        values (${delta.online}, ${delta.degraded}, ${delta.offline})`,
  );
  await onStored?.(tx, transitions, 'claimed');
}
