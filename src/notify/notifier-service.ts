import { sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { arrayParam, type Database, query } from '../db/connection.ts';
import type { NotifierFilters } from '../db/schema.ts';
import { ConflictError, InputError, NotFoundError } from '../errors.ts';
import type { NotifierFormat } from './bodies.ts';
import { checkResolvedHost, checkWebhookUrl, WebhookUrlError } from './url-check.ts';

export interface NotifierInput {
  name?: string;
  url: string;
  secret?: string;
  format?: NotifierFormat;
  filters?: NotifierFilters;
}

/** A notifier as the API may show it: never its secret. */
export interface Notifier {
  id: number;
  name: string | null;
  url: string;
  hasSecret: boolean;
  format: NotifierFormat;
  filters: NotifierFilters;
  source: 'config' | 'api';
  createdAt: Date;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface Delivery {
  id: string;
  notifierId: number;
  slug: string;
  event: string;
  status: DeliveryStatus;
  attempts: number;
  occurredAt: Date;
  createdAt: Date;
  nextAttemptAt: Date | null;
  deliveredAt: Date | null;
  expiresAt: Date;
  lastError: string | null;
  lastStatusCode: number | null;
  body: string;
}

interface NotifierSqlRow {
  id: number;
  name: string | null;
  url: string;
  has_secret: boolean;
  format: NotifierFormat;
  filters: NotifierFilters;
  source: 'config' | 'api';
  created_at: Date | string;
}

interface DeliverySqlRow {
  id: string;
  notifier_id: number;
  slug: string;
  event: string;
  status: DeliveryStatus;
  attempts: number;
  occurred_at: Date | string;
  created_at: Date | string;
  next_attempt_at: Date | string;
  delivered_at: Date | string | null;
  expires_at: Date | string;
  last_error: string | null;
  last_status_code: number | null;
  body: string;
}

const date = (v: Date | string) => (v instanceof Date ? v : new Date(v));

const toNotifier = (r: NotifierSqlRow): Notifier => ({
  id: r.id,
  name: r.name,
  url: r.url,
  hasSecret: r.has_secret,
  format: r.format,
  filters: r.filters ?? {},
  source: r.source,
  createdAt: date(r.created_at),
});

const toDelivery = (r: DeliverySqlRow): Delivery => ({
  id: r.id,
  notifierId: r.notifier_id,
  slug: r.slug,
  event: r.event,
  status: r.status,
  attempts: r.attempts,
  occurredAt: date(r.occurred_at),
  createdAt: date(r.created_at),
  nextAttemptAt: r.status === 'pending' ? date(r.next_attempt_at) : null,
  deliveredAt: r.delivered_at === null ? null : date(r.delivered_at),
  expiresAt: date(r.expires_at),
  lastError: r.last_error,
  lastStatusCode: r.last_status_code,
  body: r.body,
});

const NOTIFIER_COLUMNS = sql`id, name, url, (secret is not null) as has_secret, format, filters, source, created_at`;

/** Filters as stored: empty lists dropped, so "no filter" has one spelling. */
export function normalizeFilters(f: NotifierFilters | undefined): NotifierFilters {
  const out: NotifierFilters = {};
  if (f?.to?.length) out.to = [...new Set(f.to)];
  if (f?.tags?.length) out.tags = [...new Set(f.tags)];
  if (f?.slugs?.length) out.slugs = [...new Set(f.slugs)];
  if (f?.include_planned) out.include_planned = true;
  return out;
}

/** Notifiers (API and projects.yaml) and the deliveries of the outbox. */
export class NotifierService {
  readonly #db: Database;
  readonly #clock: Clock;
  readonly #allowPrivate: boolean;

  constructor(deps: { db: Database; clock: Clock; allowPrivate: boolean }) {
    this.#db = deps.db;
    this.#clock = deps.clock;
    this.#allowPrivate = deps.allowPrivate;
  }

  /** Checks a URL as entered through the API: its form and, for a name, what it resolves to now. */
  async checkUrl(url: string): Promise<void> {
    try {
      const u = checkWebhookUrl(url, this.#allowPrivate);
      await checkResolvedHost(u, this.#allowPrivate);
    } catch (err) {
      if (err instanceof WebhookUrlError) {
        throw new InputError(`url ${err.message}`, [{ field: 'url', message: err.message }]);
      }
      throw err;
    }
  }

  async list(): Promise<Notifier[]> {
    return (
      await query<NotifierSqlRow>(this.#db, sql`select ${NOTIFIER_COLUMNS} from notifiers order by id`)
    ).map(toNotifier);
  }

  async create(input: NotifierInput): Promise<Notifier> {
    await this.checkUrl(input.url);
    const [row] = await query<NotifierSqlRow>(
      this.#db,
      sql`insert into notifiers (name, url, secret, format, filters, source, created_at)
          values (${input.name ?? null}, ${input.url}, ${input.secret ?? null}, ${input.format ?? 'json'},
                  ${JSON.stringify(normalizeFilters(input.filters))}::jsonb, 'api', ${this.#clock.now().toISOString()})
          returning ${NOTIFIER_COLUMNS}`,
    );
    if (!row) throw new Error('insert into notifiers returned no row');
    return toNotifier(row);
  }

  async delete(id: number): Promise<void> {
    const rows = await query<{ id: number }>(
      this.#db,
      sql`delete from notifiers where id = ${id} returning id`,
    );
    if (rows.length === 0) throw new NotFoundError(`notifier ${id} does not exist`);
  }

  /**
   * Makes the config notifiers what projects.yaml's `notifications:` says, by name: upserted, and the
   * ones it no longer lists removed. API notifiers are left alone.
   */
  async syncConfig(
    entries: Array<NotifierInput & { name: string }>,
  ): Promise<{ upserted: number; removed: number }> {
    return this.#db.transaction(async (tx) => {
      const now = this.#clock.now().toISOString();
      for (const e of entries) {
        await query(
          tx,
          sql`insert into notifiers (name, url, secret, format, filters, source, created_at)
              values (${e.name}, ${e.url}, ${e.secret ?? null}, ${e.format ?? 'json'},
                      ${JSON.stringify(normalizeFilters(e.filters))}::jsonb, 'config', ${now})
              on conflict (name) where source = 'config' do update set
                url = excluded.url, secret = excluded.secret, format = excluded.format, filters = excluded.filters`,
        );
      }
      const removed = await query<{ id: number }>(
        tx,
        sql`delete from notifiers where source = 'config' and not (name = any(${arrayParam(entries.map((e) => e.name))}::text[]))
            returning id`,
      );
      return { upserted: entries.length, removed: removed.length };
    });
  }

  /** Deliveries, newest first, `limit` per page; `after` is the last id of the previous page. */
  async deliveries(opts: {
    status?: DeliveryStatus;
    notifierId?: number;
    slug?: string;
    limit: number;
    after?: string;
  }): Promise<{ deliveries: Delivery[]; next?: string }> {
    const where = [sql`true`];
    if (opts.status) where.push(sql`status = ${opts.status}`);
    if (opts.notifierId !== undefined) where.push(sql`notifier_id = ${opts.notifierId}`);
    if (opts.slug) where.push(sql`slug = ${opts.slug}`);
    if (opts.after) where.push(sql`id < ${opts.after}`);
    const rows = await query<DeliverySqlRow>(
      this.#db,
      sql`select * from notification_deliveries where ${sql.join(where, sql` and `)}
          order by id desc limit ${opts.limit + 1}`,
    );
    const more = rows.length > opts.limit;
    if (more) rows.length = opts.limit;
    const deliveries = rows.map(toDelivery);
    return more ? { deliveries, next: deliveries.at(-1)?.id } : { deliveries };
  }

  async delivery(id: string): Promise<Delivery> {
    const [row] = await query<DeliverySqlRow>(
      this.#db,
      sql`select * from notification_deliveries where id = ${id}`,
    );
    if (!row) throw new NotFoundError(`delivery ${id} does not exist`);
    return toDelivery(row);
  }

  /**
   * Sends a pending or failed delivery again now, with a fresh FED_WEBHOOK_MAX_AGE_S to succeed in. A
   * delivered one is not sent twice (409): the receiver has it.
   */
  async retry(id: string, maxAgeS: number): Promise<Delivery> {
    const now = this.#clock.now();
    const rows = await query<DeliverySqlRow>(
      this.#db,
      sql`update notification_deliveries set status = 'pending', next_attempt_at = ${now.toISOString()}::timestamptz,
            expires_at = greatest(expires_at, ${new Date(now.getTime() + maxAgeS * 1000).toISOString()}::timestamptz)
          where id = ${id} and status <> 'delivered' returning *`,
    );
    const row = rows[0];
    if (row) return toDelivery(row);
    const existing = await this.delivery(id);
    throw new ConflictError(
      `delivery ${id} was delivered at ${existing.deliveredAt?.toISOString()}; it is not sent twice`,
    );
  }

  async countByStatus(): Promise<Record<DeliveryStatus, number>> {
    const rows = await query<{ status: DeliveryStatus; n: number }>(
      this.#db,
      sql`select status, count(*)::int as n from notification_deliveries where status in ('pending', 'failed') group by status`,
    );
    const out: Record<DeliveryStatus, number> = { pending: 0, delivered: 0, failed: 0 };
    for (const r of rows) out[r.status] = r.n;
    return out;
  }
}
