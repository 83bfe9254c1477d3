import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  real,
  serial,
  text,
  timestamp,
  uniqueIndex,
  varchar,
} from 'drizzle-orm/pg-core';

const tz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** One row per CommandCenter project (instance). `status` is the last status the sweeper claimed. */
export const projects = pgTable(
  'projects',
  {
    id: serial('id').primaryKey(),
    slug: varchar('slug', { length: 50 }).notNull().unique(),
    name: varchar('name', { length: 200 }).notNull(),
    hubUrl: varchar('hub_url', { length: 500 }).notNull(),
    meshNamespace: varchar('mesh_namespace', { length: 100 }).notNull(),
    status: varchar('status', { length: 20 }).notNull().default('offline'),
    tags: jsonb('tags').$type<string[]>().notNull().default([]),
    allowFanout: jsonb('allow_fanout').$type<string[]>().notNull().default([]),
    lastHeartbeatAt: tz('last_heartbeat_at'),
    reportedHealth: varchar('reported_health', { length: 20 }),
    version: varchar('version', { length: 100 }),
    /** Interval the project announced in its heartbeats; scales its thresholds (1.5× and 3×). */
    intervalS: real('interval_s'),
    /** Where the project first came from: config (projects.yaml), api or heartbeat. */
    source: varchar('source', { length: 20 }).notNull().default('api'),
    /** True while projects.yaml lists the project. */
    configured: boolean('configured').notNull().default(false),
    statusChangedAt: tz('status_changed_at'),
    /**
     * Set by a sweep that holds the row's offline flip (a guard's start-up grace, NATS down, a
     * mass-offline hold): until then every replica shows the stored status. Not indexed, and cleared
     * by the next heartbeat, so heartbeat updates stay HOT.
     */
    heldUntil: tz('held_until'),
    /** A maintenance window: transitions before this time are stored with maintenance = true and not notified. */
    maintenanceUntil: tz('maintenance_until'),
    maintenanceReason: varchar('maintenance_reason', { length: 500 }),
    /** Changed status more than FED_FLAP_CHANGES times in FED_FLAP_WINDOW_S: its changes are not notified one by one. */
    flapping: boolean('flapping').notNull().default(false),
    createdAt: tz('created_at').notNull().defaultNow(),
    updatedAt: tz('updated_at').notNull().defaultNow(),
  },
  // The unique constraint on slug is the slug index; a second one would only slow every write.
  (t) => [
    // Status pages walk (status, slug) in slug order. No column a heartbeat writes is indexed, so
    // heartbeat updates stay HOT; deadlines live in project_deadlines.
    index('idx_projects_status_slug').on(t.status, t.slug),
    // The notifier looks at flapping projects (to see them settle) and at windows ending: few rows each.
    index('idx_projects_flapping').on(t.statusChangedAt).where(sql`${t.flapping}`),
    index('idx_projects_maintenance_until')
      .on(t.maintenanceUntil)
      .where(sql`${t.maintenanceUntil} is not null`),
    check('projects_status_check', sql`${t.status} in ('online', 'offline', 'degraded')`),
    check('projects_source_check', sql`${t.source} in ('config', 'api', 'heartbeat')`),
    check(
      'projects_health_check',
      // 'leaving': the project's last heartbeat said it is shutting down (state "leaving").
      sql`${t.reportedHealth} is null or ${t.reportedHealth} in ('ok', 'degraded', 'leaving')`,
    ),
  ],
);

/** Every status transition, claimed once by whichever replica's sweep saw it first. */
export const projectStatusEvents = pgTable(
  'project_status_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    projectId: integer('project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    fromStatus: varchar('from_status', { length: 20 }).notNull(),
    toStatus: varchar('to_status', { length: 20 }).notNull(),
    at: tz('at').notNull(),
    reason: text('reason').notNull(),
    /** Happened inside the project's maintenance window: stored, not notified. */
    maintenance: boolean('maintenance').notNull().default(false),
  },
  (t) => [
    index('idx_status_events_project_at').on(t.projectId, t.at),
    index('idx_status_events_at').on(t.at),
    // The mass-offline guard counts the offline flips of the last threshold at every look.
    index('idx_status_events_offline_at')
      .on(t.at)
      .where(sql`${t.toStatus} = 'offline' and ${t.fromStatus} <> 'offline'`),
  ],
);

/**
 * Per-status project counts as a sum of deltas: every insert, delete and claimed transition appends
 * one row (no row is updated, so concurrent writers never wait on each other), and the sum is
 * compacted into one row from time to time. Health, /metrics and the view read counts from here
 * instead of counting the catalog.
 */
export const projectStatusCounts = pgTable('project_status_counts', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  online: integer('online').notNull().default(0),
  degraded: integer('degraded').notNull().default(0),
  offline: integer('offline').notNull().default(0),
});

/**
 * The deadline queue: when the status rule may next change some projects' status without a new
 * heartbeat. Each heartbeat write (and each claim or guard hold) appends one row per 100 ms bucket
 * of deadlines, holding the ids whose deadline falls in it; `due_at` is the bucket's end. A sweep
 * takes the due rows (`skip locked`: one replica each), checks each id against `projects` and drops
 * the ids a later heartbeat has superseded (that heartbeat queued its own deadline). So a heartbeat
 * never updates an indexed column of `projects`, and a sweep reads only what is due.
 */
export const projectDeadlines = pgTable(
  'project_deadlines',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    dueAt: tz('due_at').notNull(),
    projectIds: integer('project_ids').array().notNull(),
    /**
     * The replica whose heartbeat write (the common path) or start-up reconcile queued these
     * deadlines, else null: that replica drops them without a lookup once it has written a later one
     * (src/catalog/known-deadlines.ts). A prune puts the ids it keeps back under the same tag.
     */
    queuedBy: bigint('queued_by', { mode: 'number' }),
    /**
     * Not taken by a sweep before this (null: as soon as due). Set on ids past their deadline that a
     * sweep could not claim yet because the local writer is behind: due for readers, not retaken at
     * once by the sweeper.
     */
    notBefore: tz('not_before'),
  },
  (t) => [
    index('idx_project_deadlines_due_at').on(t.dueAt),
    index('idx_project_deadlines_not_before').on(t.notBefore).where(sql`${t.notBefore} is not null`),
  ],
);

/**
 * The mass-offline hold, shared by every replica (one row): a replica that sees a mass offline event
 * records the hold here, and the others adopt it, so one event is held once, for one threshold,
 * however many replicas sweep.
 */
export const presenceHolds = pgTable(
  'presence_holds',
  {
    id: integer('id').primaryKey().default(1),
    since: tz('since').notNull(),
    until: tz('until').notNull(),
    pending: integer('pending').notNull(),
    live: integer('live').notNull(),
  },
  () => [check('presence_holds_one_row', sql`id = 1`)],
);

export const projectMetrics = pgTable(
  'project_metrics',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    projectId: integer('project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    metricType: varchar('metric_type', { length: 100 }).notNull(),
    valueNumber: doublePrecision('value_number'),
    valueText: varchar('value_text', { length: 500 }),
    observedAt: tz('observed_at').notNull().defaultNow(),
    receivedAt: tz('received_at').notNull().defaultNow(),
  },
  (t) => [
    // A redelivered JetStream message carries the same (project, metric, observed_at): storing it again is a no-op.
    uniqueIndex('uq_project_metrics_observation').on(t.projectId, t.metricType, t.observedAt),
    index('idx_project_metrics_observed_at').on(t.observedAt),
  ],
);

export const integrationEdges = pgTable(
  'integration_edges',
  {
    id: serial('id').primaryKey(),
    fromProjectId: integer('from_project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    toProjectId: integer('to_project_id')
      .notNull()
      .references(() => projects.id, { onDelete: 'cascade' }),
    kind: varchar('kind', { length: 50 }).notNull(),
    strength: doublePrecision('strength').notNull().default(0.5),
    details: jsonb('details'),
    /** config (projects.yaml), api or discovered (heartbeat integrations). */
    source: varchar('source', { length: 20 }).notNull(),
    createdAt: tz('created_at').notNull().defaultNow(),
    lastSeenAt: tz('last_seen_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('uq_integration_edges').on(t.fromProjectId, t.toProjectId, t.kind),
    index('idx_integration_edges_to').on(t.toProjectId),
    check('integration_edges_strength_check', sql`${t.strength} >= 0 and ${t.strength} <= 1`),
    check('integration_edges_source_check', sql`${t.source} in ('config', 'api', 'discovered')`),
  ],
);

export const fanoutRuns = pgTable(
  'fanout_runs',
  {
    id: varchar('id', { length: 36 }).primaryKey(),
    action: varchar('action', { length: 64 }).notNull(),
    targets: jsonb('targets').notNull(),
    params: jsonb('params'),
    timeoutMs: integer('timeout_ms').notNull(),
    status: varchar('status', { length: 20 }).notNull().default('running'),
    createdAt: tz('created_at').notNull().defaultNow(),
    finishedAt: tz('finished_at'),
  },
  (t) => [
    index('idx_fanout_runs_created_at').on(t.createdAt),
    check('fanout_runs_status_check', sql`${t.status} in ('running', 'done')`),
  ],
);

export const fanoutResults = pgTable(
  'fanout_results',
  {
    runId: varchar('run_id', { length: 36 })
      .notNull()
      .references(() => fanoutRuns.id, { onDelete: 'cascade' }),
    slug: varchar('slug', { length: 50 }).notNull(),
    outcome: varchar('outcome', { length: 20 }).notNull(),
    result: jsonb('result'),
    error: text('error'),
    durationMs: integer('duration_ms'),
  },
  (t) => [
    primaryKey({ columns: [t.runId, t.slug] }),
    check(
      'fanout_results_outcome_check',
      sql`${t.outcome} in ('pending', 'ok', 'error', 'timeout', 'not_allowed', 'offline')`,
    ),
  ],
);

/** Webhook receivers: from projects.yaml (`notifications:`, source config) or the API (source api). */
export const notifiers = pgTable(
  'notifiers',
  {
    id: serial('id').primaryKey(),
    /** Names a config notifier across restarts (the key of `notifications:`); optional for the API. */
    name: varchar('name', { length: 200 }),
    url: varchar('url', { length: 2000 }).notNull(),
    /** HMAC-SHA256 key of X-Federation-Signature; never returned by the API nor logged. */
    secret: varchar('secret', { length: 500 }),
    format: varchar('format', { length: 20 }).notNull().default('json'),
    filters: jsonb('filters').$type<NotifierFilters>().notNull().default({}),
    source: varchar('source', { length: 20 }).notNull(),
    createdAt: tz('created_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('uq_notifiers_config_name').on(t.name).where(sql`${t.source} = 'config'`),
    check('notifiers_format_check', sql`${t.format} in ('json', 'slack')`),
    check('notifiers_source_check', sql`${t.source} in ('config', 'api')`),
  ],
);

export interface NotifierFilters {
  /** Statuses entered that are notified (default: all). */
  to?: string[];
  /** Only projects with one of these tags. */
  tags?: string[];
  /** Only these projects. */
  slugs?: string[];
  /** Also notify planned stops (state "leaving", reason shutdown); default false. */
  include_planned?: boolean;
}

/**
 * The outbox: one row per notification to one notifier, written in the transaction that stored the
 * transition, so it exists exactly when the transition does and belongs to no replica in particular.
 * Workers claim due rows with a lease (`next_attempt_at` moved past the send), so a replica that dies
 * mid-send leaves the row to be sent again, never lost.
 */
export const notificationDeliveries = pgTable(
  'notification_deliveries',
  {
    /** A UUIDv7 (time-ordered): the X-Federation-Delivery idempotency key and the paging key. */
    id: varchar('id', { length: 36 }).primaryKey(),
    notifierId: integer('notifier_id')
      .notNull()
      .references(() => notifiers.id, { onDelete: 'cascade' }),
    slug: varchar('slug', { length: 50 }).notNull(),
    /** transition, flapping, stable or maintenance_ended. */
    event: varchar('event', { length: 20 }).notNull(),
    /** The exact bytes sent (and signed), fixed when the row is written so every retry is identical. */
    body: text('body').notNull(),
    status: varchar('status', { length: 20 }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: tz('next_attempt_at').notNull(),
    /** When the transition (or flap change) happened; delivery delay counts from here. */
    occurredAt: tz('occurred_at').notNull(),
    createdAt: tz('created_at').notNull().defaultNow(),
    /** After this, a failing delivery is marked failed (FED_WEBHOOK_MAX_AGE_S after it was written). */
    expiresAt: tz('expires_at').notNull(),
    deliveredAt: tz('delivered_at'),
    lastError: varchar('last_error', { length: 500 }),
    lastStatusCode: integer('last_status_code'),
  },
  (t) => [
    index('idx_deliveries_due').on(t.nextAttemptAt).where(sql`${t.status} = 'pending'`),
    index('idx_deliveries_status_id').on(t.status, t.id),
    index('idx_deliveries_notifier').on(t.notifierId),
    check('notification_deliveries_status_check', sql`${t.status} in ('pending', 'delivered', 'failed')`),
    check(
      'notification_deliveries_event_check',
      sql`${t.event} in ('transition', 'flapping', 'stable', 'maintenance_ended')`,
    ),
  ],
);
