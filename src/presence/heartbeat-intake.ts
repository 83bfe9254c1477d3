import { sql } from 'drizzle-orm';
import type { Clock } from '../clock.ts';
import { type Database, query } from '../db/connection.ts';
import { InputError, NotFoundError, UnavailableError } from '../errors.ts';
import { PRESENCE_SUBJECT_PREFIX } from '../protocol/index.ts';
import { checkHeartbeatMessage, checkHeartbeatValue } from './heartbeat-check.ts';
import type { HeartbeatWriter } from './heartbeat-writer.ts';
import type { HeartbeatRejections, PresenceMetrics } from './presence-metrics.ts';

export interface AcceptedHeartbeat {
  slug: string;
  receivedAt: Date;
}

/**
 * The one path every heartbeat takes, whatever its transport: count, check, stamp with the
 * receive time (never the sender's clock) and hand to the writer. Bad ones are counted and dropped.
 */
export class HeartbeatIntake {
  readonly #writer: HeartbeatWriter;
  readonly #rejections: HeartbeatRejections;
  readonly #clock: Clock;
  readonly #db: Database;
  readonly #autoRegister: boolean;
  /** Bound once: looking a labelled child up per message costs more than the rest of the count. */
  readonly #receivedNats: { inc(): void };
  readonly #receivedHttp: { inc(): void };

  constructor(deps: {
    writer: HeartbeatWriter;
    rejections: HeartbeatRejections;
    metrics: PresenceMetrics;
    clock: Clock;
    db: Database;
    autoRegister: boolean;
  }) {
    this.#writer = deps.writer;
    this.#rejections = deps.rejections;
    this.#clock = deps.clock;
    this.#db = deps.db;
    this.#autoRegister = deps.autoRegister;
    this.#receivedNats = deps.metrics.receivedNats;
    this.#receivedHttp = deps.metrics.received.labels({ transport: 'http' });
  }

  /** A message on `hub.presence.<slug>`: never throws. */
  fromNats(subject: string, data: Uint8Array): boolean {
    const receivedAt = this.#clock.now();
    this.#receivedNats.inc();
    const subjectSlug = subject.startsWith(PRESENCE_SUBJECT_PREFIX)
      ? subject.slice(PRESENCE_SUBJECT_PREFIX.length)
      : subject;
    const checked = checkHeartbeatMessage(subjectSlug, data);
    if (!checked.ok) {
      this.#rejections.reject(checked.reason, { subject, transport: 'nats' }, checked.message);
      return false;
    }
    return this.#writer.enqueue(checked.heartbeat, receivedAt, data.byteLength);
  }

  /**
   * `POST /api/fed/heartbeats`: the same checks, answered at once. Unknown projects are refused
   * here (404) when auto-registration is off, since the caller is waiting for an answer.
   */
  async fromHttp(body: unknown): Promise<AcceptedHeartbeat> {
    const receivedAt = this.#clock.now();
    this.#receivedHttp.inc();
    const checked = checkHeartbeatValue(body);
    if (!checked.ok) {
      this.#rejections.reject(checked.reason, { transport: 'http' }, checked.message);
      throw new InputError(checked.message, checked.details);
    }
    const slug = checked.heartbeat.project_slug;
    if (!this.#autoRegister && !(await this.#exists(slug))) {
      this.#rejections.reject('unknown_project', { slug, transport: 'http' }, `${slug} is not registered`);
      throw new NotFoundError(`project ${slug} is not registered and FED_AUTO_REGISTER is off`);
    }
    if (!this.#writer.enqueue(checked.heartbeat, receivedAt)) {
      throw new UnavailableError('the heartbeat buffer is full; try again shortly');
    }
    return { slug, receivedAt };
  }

  async #exists(slug: string): Promise<boolean> {
    const rows = await query<{ one: number }>(
      this.#db,
      sql`select 1 as one from projects where slug = ${slug}`,
    );
    return rows.length > 0;
  }
}
