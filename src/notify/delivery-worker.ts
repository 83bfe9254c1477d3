import { sql } from 'drizzle-orm';
import type { FastifyBaseLogger } from 'fastify';
import type { Clock } from '../clock.ts';
import { type Database, query } from '../db/connection.ts';
import { RateLimitedLog } from '../rate-limited-log.ts';
import type { NotificationOutbox } from './outbox.ts';
import type { SendRequest, SendResult } from './sender.ts';
import { urlOrigin } from './url-check.ts';

/** The worker looks for due deliveries at least this often (rows other replicas wrote, retries due). */
export const POLL_MAX_MS = 1000;
/** The first retry waits about this long; each next one twice as long, up to FED_WEBHOOK_RETRY_MAX_S. */
export const RETRY_BASE_MS = 1000;
/** A claimed delivery is someone else's to send again if its sender has not finished this long after its timeout. */
export const LEASE_SLACK_MS = 10_000;
/** How often flapping projects are checked for having settled, and windows for having ended (at most). */
export const SETTLE_CHECK_MS = 1000;
/** Delivered and failed deliveries are kept this long for GET /api/fed/notifications, then deleted. */
export const DELIVERY_RETENTION_DAYS = 7;
const PRUNE_EVERY_MS = 10 * 60_000;
const PRUNE_BATCH_ROWS = 10_000;

export type DeliveryOutcome = 'delivered' | 'retry' | 'failed';

export interface DeliveryWorkerOptions {
  db: Database;
  clock: Clock;
  log: FastifyBaseLogger;
  outbox: Pick<NotificationOutbox, 'settleFlapping' | 'endMaintenance'>;
  send: (req: SendRequest) => Promise<SendResult>;
  timeoutMs: number;
  retryMaxS: number;
  concurrency: number;
  allowPrivate: boolean;
  userAgent: string;
  /** Each attempt's outcome (Prometheus counter) and, when delivered, the delay since the transition. */
  onOutcome?: (outcome: DeliveryOutcome, delayMs: number | undefined) => void;
  random?: () => number;
}

interface Claimed {
  id: string;
  notifier_id: number;
  event: string;
  body: string;
  attempts: number;
  occurred_at: Date | string;
  expires_at: Date | string;
  url: string;
  secret: string | null;
}

const date = (v: Date | string) => (v instanceof Date ? v : new Date(v));

/**
 * The exponential backoff with jitter of attempt n (1-based): about RETRY_BASE_MS·2^(n-1), capped,
 * spread over its upper half ("equal jitter") so that many deliveries failing together do not retry
 * in lockstep.
 */
export function retryDelayMs(attempt: number, retryMaxS: number, random: () => number = Math.random): number {
  const capped = Math.min(retryMaxS * 1000, RETRY_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return capped / 2 + (capped / 2) * random();
}

/**
 * Sends what the outbox wrote. Any replica may send any delivery: a claim moves `next_attempt_at` past
 * the send (a lease, `for update skip locked`), so two replicas never send one row at once and a
 * replica that dies mid-send leaves it to the next claim. Success marks it delivered; a failure
 * schedules the next attempt with backoff, until FED_WEBHOOK_MAX_AGE_S has passed, then it is failed.
 * Wakes at once when this replica stores transitions (`kick`), else at the next due attempt.
 */
export class DeliveryWorker {
  readonly #o: DeliveryWorkerOptions;
  readonly #errors: RateLimitedLog;
  #timer: NodeJS.Timeout | undefined;
  #started = false;
  #stopped = false;
  #inFlight = 0;
  #sends = new Set<Promise<void>>();
  #pumping: Promise<void> | undefined;
  #again = false;
  #lastSettleCheck = 0;
  #lastPrune = 0;

  constructor(opts: DeliveryWorkerOptions) {
    this.#o = opts;
    this.#errors = new RateLimitedLog(opts.log, opts.clock);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  start(): void {
    if (this.#started) throw new Error('DeliveryWorker already started');
    this.#started = true;
    this.kick();
  }

  /** Stops claiming and waits for the sends in flight (each bounded by the timeout). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#pumping;
    await Promise.allSettled([...this.#sends]);
  }

  /** Look for due deliveries now (transitions were just committed). */
  kick(): void {
    if (!this.#started || this.#stopped) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pumping = this.#pump()
      .catch((err) => {
        this.#errors.warn('pump', { err }, 'notification delivery loop failed; trying again');
      })
      .finally(() => {
        this.#pumping = undefined;
        if (this.#again) {
          this.#again = false;
          this.kick();
        } else this.#scheduleNext();
      });
  }

  async #pump(): Promise<void> {
    if (this.#o.clock.now().getTime() - this.#lastSettleCheck >= SETTLE_CHECK_MS) {
      this.#lastSettleCheck = this.#o.clock.now().getTime();
      const settled = await this.#o.outbox.settleFlapping(this.#o.db);
      const ended = await this.#o.outbox.endMaintenance(this.#o.db);
      if (settled + ended > 0) this.#again = true;
    }
    if (this.#o.clock.now().getTime() - this.#lastPrune >= PRUNE_EVERY_MS) {
      this.#lastPrune = this.#o.clock.now().getTime();
      await this.#prune();
    }
    for (;;) {
      if (this.#stopped) return;
      const free = this.#o.concurrency - this.#inFlight;
      if (free <= 0) return;
      const claimed = await this.#claim(free);
      for (const c of claimed) this.#track(this.#deliver(c));
      if (claimed.length < free) return;
    }
  }

  #track(p: Promise<void>): void {
    this.#inFlight += 1;
    const tracked = p
      .catch((err) => {
        this.#errors.warn('deliver', { err }, 'recording a delivery attempt failed');
      })
      .finally(() => {
        this.#inFlight -= 1;
        this.#sends.delete(tracked);
        // A slot is free: more may be waiting.
        this.kick();
      });
    this.#sends.add(tracked);
  }

  async #scheduleNext(): Promise<void> {
    if (this.#stopped) return;
    let delay = POLL_MAX_MS;
    try {
      const [row] = await query<{ at: Date | string | null }>(
        this.#o.db,
        sql`select min(next_attempt_at) as at from notification_deliveries where status = 'pending'`,
      );
      if (row?.at)
        delay = Math.min(delay, Math.max(5, date(row.at).getTime() - this.#o.clock.now().getTime() + 2));
    } catch {
      // The database is away: look again after the poll interval.
    }
    if (this.#stopped || this.#pumping) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.kick();
    }, delay);
    this.#timer.unref();
  }

  /** Old finished deliveries, a bounded batch at a time (through the primary key: ids are time-ordered). */
  async #prune(): Promise<void> {
    const cutoff = new Date(this.#o.clock.now().getTime() - DELIVERY_RETENTION_DAYS * 86_400_000);
    await query(
      this.#o.db,
      sql`delete from notification_deliveries where id in (
            select id from notification_deliveries
            where status <> 'pending' and created_at < ${cutoff.toISOString()}::timestamptz
            order by id limit ${PRUNE_BATCH_ROWS})`,
    );
  }

  async #claim(limit: number): Promise<Claimed[]> {
    const now = this.#o.clock.now();
    const lease = new Date(now.getTime() + this.#o.timeoutMs + LEASE_SLACK_MS).toISOString();
    return query<Claimed>(
      this.#o.db,
      sql`with due as (
            select id from notification_deliveries
            where status = 'pending' and next_attempt_at <= ${now.toISOString()}::timestamptz
            order by next_attempt_at limit ${limit} for update skip locked
          ), claimed as (
            update notification_deliveries d set next_attempt_at = ${lease}::timestamptz, attempts = d.attempts + 1
            from due where d.id = due.id
            returning d.id, d.notifier_id, d.event, d.body, d.attempts, d.occurred_at, d.expires_at
          )
          select c.*, n.url, n.secret from claimed c join notifiers n on n.id = c.notifier_id`,
    );
  }

  async #deliver(c: Claimed): Promise<void> {
    const result = await this.#o.send({
      url: c.url,
      secret: c.secret,
      deliveryId: c.id,
      event: c.event,
      body: c.body,
      timeoutMs: this.#o.timeoutMs,
      allowPrivate: this.#o.allowPrivate,
      userAgent: this.#o.userAgent,
    });
    const now = this.#o.clock.now();
    if (result.ok) {
      await query(
        this.#o.db,
        sql`update notification_deliveries set status = 'delivered', delivered_at = ${now.toISOString()}::timestamptz,
              last_status_code = ${result.statusCode}, last_error = null
            where id = ${c.id}`,
      );
      this.#o.onOutcome?.('delivered', now.getTime() - date(c.occurred_at).getTime());
      return;
    }
    const error = result.error.slice(0, 500);
    const next = new Date(now.getTime() + retryDelayMs(c.attempts, this.#o.retryMaxS, this.#o.random));
    const failed = next.getTime() > date(c.expires_at).getTime();
    await query(
      this.#o.db,
      sql`update notification_deliveries set status = ${failed ? 'failed' : 'pending'},
            next_attempt_at = ${(failed ? now : next).toISOString()}::timestamptz,
            last_error = ${error}, last_status_code = ${result.statusCode ?? null}
          where id = ${c.id}`,
    );
    this.#o.onOutcome?.(failed ? 'failed' : 'retry', undefined);
    // Never the URL itself (a Slack URL is a secret) nor the secret: the origin and the delivery id.
    this.#errors.warn(
      `notifier-${c.notifier_id}`,
      { delivery: c.id, notifier: c.notifier_id, to: urlOrigin(c.url), attempts: c.attempts, error },
      failed
        ? 'notification failed for good (FED_WEBHOOK_MAX_AGE_S passed)'
        : 'notification attempt failed; will retry',
    );
  }
}
