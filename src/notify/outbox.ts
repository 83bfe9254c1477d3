import { sql } from 'drizzle-orm';
import type { Transition } from '../catalog/catalog-service.ts';
import { SHUTDOWN_REASON } from '../catalog/status-rule.ts';
import type { Clock } from '../clock.ts';
import { arrayParam, type Database, query } from '../db/connection.ts';
import type { NotifierFilters } from '../db/schema.ts';
import type { ProjectStatus } from '../protocol/index.ts';
import { type Notification, type NotifiedProject, type NotifierFormat, renderBody } from './bodies.ts';
import { uuidv7 } from './signing.ts';

export interface OutboxOptions {
  clock: Clock;
  /** Flapping: more than `flapChanges` changes in `flapWindowS`; stable after `flapSettleS` without one. */
  flapChanges: number;
  flapWindowS: number;
  flapSettleS: number;
  /** A delivery not made within this long is marked failed. */
  maxAgeS: number;
}

interface NotifierRow {
  id: number;
  format: NotifierFormat;
  filters: NotifierFilters;
}

interface ProjectRow extends NotifiedProject {
  id: number;
  status: ProjectStatus;
  maintenance_until: Date | string | null;
  flapping: boolean;
}

interface Delivery {
  id: string;
  notifierId: number;
  slug: string;
  event: Notification['event'];
  body: string;
  occurredAt: Date;
}

/** What the outbox did with a batch of transitions (for counters and tests). */
export interface OutboxResult {
  enqueued: number;
  /** Transitions stored but not notified: inside a maintenance window. */
  maintenance: number;
  /** Transitions not notified one by one: the project is flapping. */
  flapping: number;
  /** Projects that started flapping with this batch. */
  startedFlapping: number;
}

const matchesProject = (f: NotifierFilters, p: NotifiedProject): boolean =>
  (!f.slugs?.length || f.slugs.includes(p.slug)) &&
  (!f.tags?.length || p.tags.some((t) => f.tags?.includes(t)));

const date = (v: Date | string) => (v instanceof Date ? v : new Date(v));

/**
 * The notification outbox: in the very transaction that stores transitions (called from
 * storeTransitions, under the row locks that made this replica their only owner) it marks those inside
 * a maintenance window, detects flapping, and writes one delivery row per matching notifier. The rows
 * then exist exactly when the transitions do; the DeliveryWorker of any replica sends them.
 */
export class NotificationOutbox {
  readonly #o: OutboxOptions;
  /** Counted by the plugin into Prometheus. */
  onResult: ((r: OutboxResult) => void) | undefined;

  constructor(opts: OutboxOptions) {
    this.#o = opts;
  }

  /** The TransitionsStoredHook of the catalog. */
  readonly stored = async (
    tx: Database,
    transitions: readonly Transition[],
    kind: 'first' | 'claimed' = 'claimed',
  ): Promise<void> => {
    if (transitions.length === 0) return;
    // A project registered by this very heartbeat has no window and one change: only notifiers matter,
    // and a fleet registering at once with none configured pays one tiny query per batch.
    if (kind === 'first') return this.#firstStatuses(tx, transitions);
    const result: OutboxResult = { enqueued: 0, maintenance: 0, flapping: 0, startedFlapping: 0 };
    const ids = [...new Set(transitions.map((t) => t.projectId))];
    const latest = Math.max(...transitions.map((t) => t.at.getTime()));
    const since = new Date(latest - this.#o.flapWindowS * 1000).toISOString();
    // With each project, its changes in the flap window (outside maintenance, this batch's included),
    // counted only up to one past the threshold: the cost is bounded per transition.
    const projects = new Map(
      (
        await query<ProjectRow & { recent: number }>(
          tx,
          sql`select p.id, p.slug, p.name, p.hub_url, p.mesh_namespace, p.tags, p.status, p.maintenance_until, p.flapping,
                     (select count(*)::int from (
                        select 1 from project_status_events e
                        where e.project_id = p.id and e.at > ${since}::timestamptz and not e.maintenance
                        limit ${this.#o.flapChanges + 1}) r) as recent
              from projects p where p.id = any(${arrayParam(ids)}::int[])`,
        )
      ).map((p) => [p.id, p]),
    );

    const inWindow = (t: Transition) => {
      const until = projects.get(t.projectId)?.maintenance_until;
      return until != null && date(until).getTime() > t.at.getTime();
    };
    const maintained = transitions.filter(inWindow);
    if (maintained.length > 0) {
      result.maintenance = maintained.length;
      await query(
        tx,
        sql`update project_status_events e set maintenance = true
            from unnest(${arrayParam(maintained.map((t) => t.projectId))}::int[],
                        ${arrayParam(maintained.map((t) => t.at.toISOString()))}::timestamptz[],
                        ${arrayParam(maintained.map((t) => t.to))}::text[]) as m(project_id, at, to_status)
            where e.project_id = m.project_id and e.at = m.at and e.to_status = m.to_status`,
      );
    }

    // Flapping: more than flapChanges changes in the window, for a project changing outside a window now.
    const outside = transitions.filter((t) => !inWindow(t));
    const flappingNow = [
      ...new Set(
        outside
          .map((t) => projects.get(t.projectId))
          .filter(
            (p): p is ProjectRow & { recent: number } => !!p && !p.flapping && p.recent > this.#o.flapChanges,
          )
          .map((p) => p.id),
      ),
    ];
    const started = new Map<number, number>();
    if (flappingNow.length > 0) {
      const flipped = await query<{ id: number }>(
        tx,
        sql`update projects set flapping = true
            where id = any(${arrayParam(flappingNow)}::int[]) and not flapping returning id`,
      );
      for (const { id } of flipped) started.set(id, projects.get(id)?.recent ?? this.#o.flapChanges + 1);
      result.startedFlapping = started.size;
    }

    const notifiers = await query<NotifierRow>(
      tx,
      sql`select id, format, filters from notifiers order by id`,
    );
    if (notifiers.length > 0) {
      const planned = await this.#returnsFromPlannedStops(tx, outside);
      const deliveries: Delivery[] = [];
      const now = this.#o.clock.now();
      for (const t of outside) {
        const p = projects.get(t.projectId);
        if (!p) continue;
        if (p.flapping || started.has(p.id)) {
          result.flapping += 1;
          continue;
        }
        const isPlanned = t.reason === SHUTDOWN_REASON || planned.has(t);
        for (const n of notifiers) {
          const f = n.filters ?? {};
          if (!matchesProject(f, p)) continue;
          if (f.to?.length && !f.to.includes(t.to)) continue;
          if (isPlanned && !f.include_planned) continue;
          deliveries.push(
            this.#delivery(n, { event: 'transition', transition: t, project: projectOf(p) }, t.at, now),
          );
        }
      }
      for (const [id, changes] of started) {
        const p = projects.get(id);
        if (!p) continue;
        const last = outside.filter((t) => t.projectId === id).at(-1);
        const n: Notification = {
          event: 'flapping',
          at: last?.at ?? now,
          status: last?.to ?? p.status,
          changes,
          windowS: this.#o.flapWindowS,
          project: projectOf(p),
        };
        for (const notifier of notifiers)
          if (matchesProject(notifier.filters ?? {}, p))
            deliveries.push(this.#delivery(notifier, n, n.at, now));
      }
      await insertDeliveries(tx, deliveries, new Date(now.getTime() + this.#o.maxAgeS * 1000), now);
      result.enqueued = deliveries.length;
    }
    this.onResult?.(result);
  };

  async #firstStatuses(tx: Database, transitions: readonly Transition[]): Promise<void> {
    const notifiers = await query<NotifierRow>(
      tx,
      sql`select id, format, filters from notifiers order by id`,
    );
    const result: OutboxResult = { enqueued: 0, maintenance: 0, flapping: 0, startedFlapping: 0 };
    if (notifiers.length > 0) {
      const projects = new Map(
        (
          await query<ProjectRow>(
            tx,
            sql`select id, slug, name, hub_url, mesh_namespace, tags, status, maintenance_until, flapping from projects
                where id = any(${arrayParam(transitions.map((t) => t.projectId))}::int[])`,
          )
        ).map((p) => [p.id, p]),
      );
      const now = this.#o.clock.now();
      const deliveries: Delivery[] = [];
      for (const t of transitions) {
        const p = projects.get(t.projectId);
        if (!p) continue;
        for (const n of notifiers) {
          const f = n.filters ?? {};
          if (!matchesProject(f, p) || (f.to?.length && !f.to.includes(t.to))) continue;
          deliveries.push(
            this.#delivery(n, { event: 'transition', transition: t, project: projectOf(p) }, t.at, now),
          );
        }
      }
      await insertDeliveries(tx, deliveries, new Date(now.getTime() + this.#o.maxAgeS * 1000), now);
      result.enqueued = deliveries.length;
    }
    this.onResult?.(result);
  }

  /**
   * Flapping projects whose status has not changed for flapSettleS are stable again: claimed once
   * (skip locked) and notified once, in one transaction. Reads only flapping rows (a partial index).
   */
  async settleFlapping(db: Database): Promise<number> {
    const now = this.#o.clock.now();
    const quietSince = new Date(now.getTime() - this.#o.flapSettleS * 1000).toISOString();
    return db.transaction(async (tx) => {
      const settled = await query<ProjectRow>(
        tx,
        sql`with s as (
              select id from projects where flapping and (status_changed_at is null or status_changed_at <= ${quietSince}::timestamptz)
              -- In the partial index's order, so the planner never prefers a scan of the catalog.
              order by status_changed_at limit 1000 for update skip locked
            )
            update projects p set flapping = false from s where p.id = s.id
            returning p.id, p.slug, p.name, p.hub_url, p.mesh_namespace, p.tags, p.status, p.maintenance_until, p.flapping`,
      );
      if (settled.length === 0) return 0;
      const notifiers = await query<NotifierRow>(
        tx,
        sql`select id, format, filters from notifiers order by id`,
      );
      const deliveries: Delivery[] = [];
      for (const p of settled) {
        const n: Notification = { event: 'stable', at: now, status: p.status, project: projectOf(p) };
        for (const notifier of notifiers)
          if (matchesProject(notifier.filters ?? {}, p))
            deliveries.push(this.#delivery(notifier, n, now, now));
      }
      await insertDeliveries(tx, deliveries, new Date(now.getTime() + this.#o.maxAgeS * 1000), now);
      return settled.length;
    });
  }

  /**
   * Windows that have ended (at `until`, or by DELETE, which sets `until` to now) are cleared, claimed
   * once (skip locked); a project they leave degraded or offline is notified once (`maintenance_ended`),
   * as Alertmanager does for an alert still firing when its silence expires. Reads only rows with a
   * window (a partial index).
   */
  async endMaintenance(db: Database): Promise<number> {
    const now = this.#o.clock.now();
    return db.transaction(async (tx) => {
      const ended = await query<ProjectRow & { maintenance_reason: string | null }>(
        tx,
        sql`with e as (
              select id, maintenance_reason from projects where maintenance_until <= ${now.toISOString()}::timestamptz
              -- In the partial index's order: with a bare LIMIT and stale statistics, the planner
              -- chose a scan of the whole catalog (0.5 s at a million projects, every second).
              order by maintenance_until limit 1000 for update skip locked
            )
            update projects p set maintenance_until = null, maintenance_reason = null from e where p.id = e.id
            returning p.id, p.slug, p.name, p.hub_url, p.mesh_namespace, p.tags, p.status, p.maintenance_until,
                      p.flapping, e.maintenance_reason`,
      );
      const left = ended.filter((p) => p.status !== 'online' && !p.flapping);
      if (left.length === 0) return ended.length;
      const notifiers = await query<NotifierRow>(
        tx,
        sql`select id, format, filters from notifiers order by id`,
      );
      const deliveries: Delivery[] = [];
      for (const p of left) {
        const n: Notification = {
          event: 'maintenance_ended',
          at: now,
          status: p.status,
          reason: p.maintenance_reason,
          project: projectOf(p),
        };
        for (const notifier of notifiers) {
          const f = notifier.filters ?? {};
          if (!matchesProject(f, p) || (f.to?.length && !f.to.includes(p.status))) continue;
          deliveries.push(this.#delivery(notifier, n, now, now));
        }
      }
      await insertDeliveries(tx, deliveries, new Date(now.getTime() + this.#o.maxAgeS * 1000), now);
      return ended.length;
    });
  }

  /**
   * The transitions out of offline that end a planned stop (the project's previous transition was its
   * leaving, reason shutdown): part of the planned stop, not news.
   */
  async #returnsFromPlannedStops(tx: Database, transitions: readonly Transition[]): Promise<Set<Transition>> {
    const back = transitions.filter((t) => t.from === 'offline');
    if (back.length === 0) return new Set();
    const rows = await query<{ project_id: number }>(
      tx,
      sql`select b.project_id from unnest(${arrayParam(back.map((t) => t.projectId))}::int[],
                                          ${arrayParam(back.map((t) => t.at.toISOString()))}::timestamptz[]) as b(project_id, at)
          cross join lateral (
            select reason from project_status_events e
            where e.project_id = b.project_id and e.at < b.at order by e.at desc limit 1
          ) prev
          where prev.reason = ${SHUTDOWN_REASON}`,
    );
    const ids = new Set(rows.map((r) => r.project_id));
    return new Set(back.filter((t) => ids.has(t.projectId)));
  }

  #delivery(n: NotifierRow, notification: Notification, occurredAt: Date, now: Date): Delivery {
    const id = uuidv7(now.getTime());
    return {
      id,
      notifierId: n.id,
      slug: notification.project.slug,
      event: notification.event,
      body: renderBody(n.format, id, notification),
      occurredAt,
    };
  }
}

function projectOf(p: ProjectRow): NotifiedProject {
  return {
    slug: p.slug,
    name: p.name,
    hub_url: p.hub_url,
    mesh_namespace: p.mesh_namespace,
    tags: p.tags ?? [],
  };
}

async function insertDeliveries(tx: Database, rows: Delivery[], expiresAt: Date, now: Date): Promise<void> {
  if (rows.length === 0) return;
  await query(
    tx,
    sql`insert into notification_deliveries (id, notifier_id, slug, event, body, status, attempts, next_attempt_at,
                                             occurred_at, created_at, expires_at)
        select d.id, d.notifier_id, d.slug, d.event, d.body, 'pending', 0, ${now.toISOString()}::timestamptz,
               d.occurred_at, ${now.toISOString()}::timestamptz, ${expiresAt.toISOString()}::timestamptz
        from unnest(${arrayParam(rows.map((r) => r.id))}::text[], ${arrayParam(rows.map((r) => r.notifierId))}::int[],
                    ${arrayParam(rows.map((r) => r.slug))}::text[], ${arrayParam(rows.map((r) => r.event))}::text[],
                    ${arrayParam(rows.map((r) => r.body))}::text[],
                    ${arrayParam(rows.map((r) => r.occurredAt.toISOString()))}::timestamptz[])
             as d(id, notifier_id, slug, event, body, occurred_at)`,
  );
}
