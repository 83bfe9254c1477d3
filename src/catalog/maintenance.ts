import { sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { type Database, query } from '../db/connection.ts';
import { InputError, NotFoundError } from '../errors.ts';

/** The longest window one call may set: a forgotten window must not silence a project for good. */
export const MAX_MAINTENANCE_DAYS = 90;

export interface MaintenanceWindow {
  until: Date;
  reason: string | null;
}

/**
 * Maintenance windows: while one is in force a project's transitions are still stored (with
 * `maintenance: true`) but not notified. A window ends by itself at `until`; nothing has to clear it.
 */
export class MaintenanceService {
  readonly #db: Database;
  readonly #clock: Clock;

  constructor(deps: { db: Database; clock: Clock }) {
    this.#db = deps.db;
    this.#clock = deps.clock;
  }

  /** Checks `until` (ISO 8601, in the future, at most MAX_MAINTENANCE_DAYS away). */
  window(until: string, reason: string | undefined): MaintenanceWindow {
    const at = new Date(until);
    const now = this.#clock.now().getTime();
    if (Number.isNaN(at.getTime())) {
      throw new InputError('until is not an ISO 8601 time', [{ field: 'until', message: 'not a time' }]);
    }
    if (at.getTime() <= now) {
      throw new InputError('until must be in the future (DELETE ends a window)', [
        { field: 'until', message: 'must be in the future' },
      ]);
    }
    if (at.getTime() > now + MAX_MAINTENANCE_DAYS * 86_400_000) {
      throw new InputError(`until may be at most ${MAX_MAINTENANCE_DAYS} days away`, [
        { field: 'until', message: `at most ${MAX_MAINTENANCE_DAYS} days away` },
      ]);
    }
    return { until: at, reason: reason ?? null };
  }

  async setForProject(slug: string, w: MaintenanceWindow): Promise<void> {
    const rows = await query<{ id: number }>(
      this.#db,
      sql`update projects set maintenance_until = ${w.until.toISOString()}::timestamptz, maintenance_reason = ${w.reason}
          where slug = ${slug} returning id`,
    );
    if (rows.length === 0) throw new NotFoundError(`project ${slug} is not registered`);
  }

  /**
   * Ends the window now: `until` becomes now, so the API shows none at once and the notifier ends it as
   * if it had run out (notifying a project it leaves degraded or offline).
   */
  async clearForProject(slug: string): Promise<void> {
    const now = this.#clock.now().toISOString();
    const rows = await query<{ id: number }>(
      this.#db,
      sql`update projects set maintenance_until = least(maintenance_until, ${now}::timestamptz)
          where slug = ${slug} returning id`,
    );
    if (rows.length === 0) throw new NotFoundError(`project ${slug} is not registered`);
  }

  /** Every project with `tag`; returns their slugs (an operator action, not a timer: it may read the catalog). */
  async setForTag(tag: string, w: MaintenanceWindow): Promise<string[]> {
    const rows = await query<{ slug: string }>(
      this.#db,
      sql`update projects set maintenance_until = ${w.until.toISOString()}::timestamptz, maintenance_reason = ${w.reason}
          where tags @> ${JSON.stringify([tag])}::jsonb returning slug`,
    );
    return rows.map((r) => r.slug).sort();
  }

  async clearForTag(tag: string): Promise<string[]> {
    const rows = await query<{ slug: string }>(
      this.#db,
      sql`update projects set maintenance_until = least(maintenance_until, ${this.#clock.now().toISOString()}::timestamptz)
          where tags @> ${JSON.stringify([tag])}::jsonb and maintenance_until > ${this.#clock.now().toISOString()}::timestamptz
          returning slug`,
    );
    return rows.map((r) => r.slug).sort();
  }
}
