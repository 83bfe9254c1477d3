import { type ConsumerMessages, type JsMsg, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Clock } from '../clock.ts';
import type { FeedEvents } from '../events.ts';
import { RateLimitedLog } from '../rate-limited-log.ts';
import { type DecodedMetrics, decodeMetricsMessage, REJECT_REASONS, type RejectReason } from './decode.ts';
import { type MetricObservation, type MetricsService, observationKey } from './metrics-service.ts';
import {
  DEFAULT_ACK_WAIT_MS,
  ensureMetricsConsumer,
  ensureMetricsStream,
  METRICS_DURABLE,
  type MetricsStreamOptions,
} from './stream.ts';

/** Messages written in one statement at most. */
export const DEFAULT_BATCH_MAX = 500;
/** A database failure is retried (nak with delay) from this delay, doubling per delivery up to the max. */
export const DEFAULT_RETRY_BASE_MS = 500;
export const DEFAULT_RETRY_MAX_MS = 30_000;
/**
 * A project's first metrics may overtake its first heartbeat (which registers it), so a message for an
 * unknown project is retried a few times before it is dropped as `unknown_project`.
 */
export const DEFAULT_UNKNOWN_PROJECT_RETRIES = 5;
export const DEFAULT_UNKNOWN_PROJECT_RETRY_MS = 1000;
/** How long the intake waits before setting the stream up again after a failure. */
export const SETUP_RETRY_MS = 1000;
const SETUP_RETRY_MAX_MS = 15_000;
const STOP_WAIT_MS = 10_000;

export type MetricsIntakeState = 'idle' | 'starting' | 'consuming' | 'retrying' | 'stopped';

export interface MetricsCounters {
  received: Counter;
  stored: Counter;
  values: Counter;
  duplicates: Counter;
  rejected: Counter<'reason'>;
  retried: Counter<'reason'>;
  writeSeconds: Histogram;
  batchSize: Histogram;
}

export function createMetricsCounters(registry: Registry): MetricsCounters {
  const registers = [registry];
  const rejected = new Counter({
    name: 'federation_metrics_rejected_total',
    help: 'Metrics messages dropped (terminated in JetStream), by reason',
    labelNames: ['reason'],
    registers,
  });
  for (const reason of REJECT_REASONS) rejected.inc({ reason }, 0);
  const retried = new Counter({
    name: 'federation_metrics_retried_total',
    help: 'Metrics messages handed back to JetStream for a later retry, by reason',
    labelNames: ['reason'],
    registers,
  });
  for (const reason of ['database', 'unknown_project', 'shutdown']) retried.inc({ reason }, 0);
  return {
    received: new Counter({
      name: 'federation_metrics_received_total',
      help: 'Metrics messages delivered by JetStream (redeliveries included)',
      registers,
    }),
    stored: new Counter({
      name: 'federation_metrics_stored_total',
      help: 'Metrics messages stored (at least one new value)',
      registers,
    }),
    values: new Counter({
      name: 'federation_metrics_values_stored_total',
      help: 'Metric values (rows) stored',
      registers,
    }),
    duplicates: new Counter({
      name: 'federation_metrics_duplicates_total',
      help: 'Metrics messages whose values were all stored already (redelivered or published twice)',
      registers,
    }),
    rejected,
    retried,
    writeSeconds: new Histogram({
      name: 'federation_metrics_write_seconds',
      help: 'Time to write one batch of metrics to the database',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers,
    }),
    batchSize: new Histogram({
      name: 'federation_metrics_batch_messages',
      help: 'Messages handled per batch',
      buckets: [1, 10, 50, 100, 250, 500, 1000],
      registers,
    }),
  };
}

export interface MetricsConsumerOptions {
  stream: MetricsStreamOptions;
  durable?: string;
  service: MetricsService;
  clock: Clock;
  log: FastifyBaseLogger;
  counters: MetricsCounters;
  /** Observations older than this are dropped as `expired` (retention would delete them anyway). */
  retentionDays: number;
  onStored?: (event: FeedEvents['metrics']) => void;
  batchMax?: number;
  ackWaitMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  unknownProjectRetries?: number;
  unknownProjectRetryMs?: number;
}

interface Accepted {
  msg: JsMsg;
  value: DecodedMetrics;
}

const DAY_MS = 86_400_000;

function errorCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 4; i++) {
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * PostgreSQL refuses the data itself (class 22 data exception, 23 integrity violation): retrying the same
 * message would fail forever, unlike a lost connection.
 */
export const isDataError = (err: unknown): boolean => /^2[23]/.test(errorCode(err) ?? '');

/**
 * Reads the metrics stream through the shared durable consumer and stores what it reads, batched:
 * acknowledged after the write commits, retried with a delay when the database fails, terminated and
 * counted when the message itself is bad. `attach(nc)` on every new connection; the loop sets the stream
 * up again whenever consuming ends (stream or consumer deleted, JetStream restarted).
 */
export class MetricsConsumer {
  readonly #o: Required<Omit<MetricsConsumerOptions, 'onStored'>> & Pick<MetricsConsumerOptions, 'onStored'>;
  readonly #warn: RateLimitedLog;
  #nc: NatsConnection | undefined;
  #loop: Promise<void> | undefined;
  #messages: ConsumerMessages | undefined;
  #state: MetricsIntakeState = 'idle';
  #lastError: string | undefined;
  #stopping = false;
  #wake: (() => void) | undefined;

  constructor(opts: MetricsConsumerOptions) {
    this.#o = {
      durable: METRICS_DURABLE,
      batchMax: DEFAULT_BATCH_MAX,
      ackWaitMs: DEFAULT_ACK_WAIT_MS,
      retryBaseMs: DEFAULT_RETRY_BASE_MS,
      retryMaxMs: DEFAULT_RETRY_MAX_MS,
      unknownProjectRetries: DEFAULT_UNKNOWN_PROJECT_RETRIES,
      unknownProjectRetryMs: DEFAULT_UNKNOWN_PROJECT_RETRY_MS,
      ...opts,
    };
    this.#warn = new RateLimitedLog(opts.log);
  }

  get state(): MetricsIntakeState {
    return this.#state;
  }
  get lastError(): string | undefined {
    return this.#lastError;
  }
  get stream(): string {
    return this.#o.stream.name;
  }
  get durable(): string {
    return this.#o.durable;
  }

  /** Starts consuming on `nc`; a previous connection's loop ends on its own when that connection closes. */
  attach(nc: NatsConnection): void {
    if (this.#stopping) return;
    this.#nc = nc;
    const previous = this.#loop;
    this.#loop = (async () => {
      if (previous) {
        this.#messages?.close().catch(() => {});
        await previous;
      }
      await this.#run(nc);
    })();
  }

  /** Consumer info (pending counts) for the health check; undefined when not consuming. */
  async info(
    timeoutMs = 1000,
  ): Promise<{ num_pending: number; num_ack_pending: number; num_redelivered: number } | undefined> {
    const nc = this.#nc;
    if (!nc || nc.isClosed() || this.#state !== 'consuming') return undefined;
    const jsm = await jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false });
    const info = await jsm.consumers.info(this.#o.stream.name, this.#o.durable);
    return {
      num_pending: info.num_pending,
      num_ack_pending: info.num_ack_pending,
      num_redelivered: info.num_redelivered,
    };
  }

  /** Stops pulling, lets the batch in hand commit and be acknowledged, hands back what was not started. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    void this.#messages?.close().catch(() => {});
    const loop = this.#loop;
    if (loop) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([loop, new Promise((r) => (timer = setTimeout(r, STOP_WAIT_MS)))]);
      clearTimeout(timer);
    }
    this.#setState('stopped');
  }

  async #run(nc: NatsConnection): Promise<void> {
    let failures = 0;
    while (!this.#stopping && !nc.isClosed() && this.#nc === nc) {
      try {
        this.#setState('starting');
        const jsm = await jetstreamManager(nc);
        await ensureMetricsStream(jsm, this.#o.stream);
        await ensureMetricsConsumer(jsm, this.#o.stream.name, this.#o.durable, this.#o.ackWaitMs);
        const consumer = await jetstream(nc).consumers.get(this.#o.stream.name, this.#o.durable);
        const messages = await consumer.consume({
          max_messages: this.#o.batchMax * 2,
          // End the loop when the stream or consumer is deleted, so that it is created again.
          abort_on_missing_resource: true,
        });
        this.#messages = messages;
        if (this.#stopping) void messages.close().catch(() => {});
        this.#setState('consuming');
        this.#lastError = undefined;
        failures = 0;
        await this.#consume(messages);
      } catch (err) {
        failures += 1;
        this.#lastError = (err as Error).message;
        this.#warn.warn('setup', { err: this.#lastError }, 'metrics intake failed; setting it up again');
      } finally {
        this.#messages = undefined;
      }
      if (this.#stopping || nc.isClosed()) break;
      this.#setState('retrying');
      await this.#sleep(Math.min(SETUP_RETRY_MS * 2 ** Math.max(0, failures - 1), SETUP_RETRY_MAX_MS));
    }
    if (!this.#stopping && this.#state !== 'stopped') this.#setState('idle');
  }

  async #consume(messages: ConsumerMessages): Promise<void> {
    const batch: JsMsg[] = [];
    for await (const msg of messages) {
      if (this.#stopping) {
        // Not started yet: hand it back now so another replica takes it without waiting for ack_wait.
        msg.nak();
        this.#o.counters.retried.inc({ reason: 'shutdown' });
        continue;
      }
      batch.push(msg);
      if (batch.length >= this.#o.batchMax || messages.getPending() === 0) {
        await this.handleBatch(batch.splice(0));
      }
    }
    if (batch.length) await this.handleBatch(batch.splice(0));
  }

  /** Stores one batch of delivered messages; never throws (a bad batch must not end the loop). */
  async handleBatch(msgs: JsMsg[]): Promise<void> {
    const c = this.#o.counters;
    c.received.inc(msgs.length);
    c.batchSize.observe(msgs.length);
    const now = this.#o.clock.now();
    const oldest = new Date(now.getTime() - this.#o.retentionDays * DAY_MS);
    const accepted: Accepted[] = [];
    for (const msg of msgs) {
      const r = decodeMetricsMessage(msg.subject, msg.data, { now, oldest });
      if (r.ok) accepted.push({ msg, value: r.value });
      else this.#reject(msg, r.reason, r.detail);
    }
    if (accepted.length === 0) return;

    let ids: Map<string, number>;
    try {
      ids = await this.#o.service.projectIdsBySlug([...new Set(accepted.map((a) => a.value.slug))]);
    } catch (err) {
      this.#retryLater(accepted, err);
      return;
    }
    const known: Array<Accepted & { projectId: number }> = [];
    for (const a of accepted) {
      const projectId = ids.get(a.value.slug);
      if (projectId !== undefined) known.push({ ...a, projectId });
      else if (a.msg.info.deliveryCount > this.#o.unknownProjectRetries) {
        this.#reject(a.msg, 'unknown_project', `project ${a.value.slug} is not registered`);
      } else {
        c.retried.inc({ reason: 'unknown_project' });
        a.msg.nak(this.#o.unknownProjectRetryMs);
      }
    }
    if (known.length === 0) return;

    const end = c.writeSeconds.startTimer();
    try {
      const inserted = await this.#o.service.insertObservations(known.flatMap(observations), now);
      end();
      this.#settle(known, inserted);
    } catch (err) {
      end();
      if (!isDataError(err)) {
        this.#retryLater(known, err);
        return;
      }
      // One message the database refuses must not hold the others back: write them one by one.
      for (const k of known) {
        try {
          this.#settle([k], await this.#o.service.insertObservations(observations(k), now));
        } catch (oneErr) {
          if (isDataError(oneErr)) this.#reject(k.msg, 'db_rejected', (oneErr as Error).message);
          else this.#retryLater([k], oneErr);
        }
      }
    }
  }

  /** Acknowledges written messages (the commit happened) and announces those that stored something new. */
  #settle(written: Array<Accepted & { projectId: number }>, inserted: Set<string>): void {
    const c = this.#o.counters;
    for (const w of written) {
      let rows = 0;
      for (const o of observations(w)) {
        // Deleting the key credits each new row to one message, even when a batch holds the same one twice.
        if (inserted.delete(observationKey(o.projectId, o.metricType, o.observedAt))) rows += 1;
      }
      w.msg.ack();
      if (rows === 0) {
        c.duplicates.inc();
        continue;
      }
      c.stored.inc();
      c.values.inc(rows);
      this.#o.onStored?.({
        project: w.value.slug,
        kind: w.value.kind,
        observed_at: w.value.observedAt.toISOString(),
        metrics: w.value.metrics,
      });
    }
  }

  #reject(msg: JsMsg, reason: RejectReason, detail: string): void {
    // No reason on the TERM: servers before 2.10 do not parse one and would keep the message pending.
    msg.term();
    this.#o.counters.rejected.inc({ reason });
    this.#warn.warn(
      `reject:${reason}`,
      { reason, subject: msg.subject.slice(0, 200), detail: detail.slice(0, 300), seq: msg.seq },
      'metrics message dropped',
    );
  }

  #retryLater(items: Accepted[], err: unknown): void {
    this.#warn.warn('database', { err: (err as Error).message }, 'metrics write failed; will retry');
    for (const { msg } of items) {
      const delay = Math.min(this.#o.retryBaseMs * 2 ** (msg.info.deliveryCount - 1), this.#o.retryMaxMs);
      msg.nak(delay);
      this.#o.counters.retried.inc({ reason: 'database' });
    }
  }

  #setState(state: MetricsIntakeState): void {
    this.#state = state;
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = undefined;
  }
}

function observations(a: Accepted & { projectId: number }): MetricObservation[] {
  return Object.entries(a.value.metrics).map(([metricType, value]) => ({
    projectId: a.projectId,
    metricType,
    value,
    observedAt: a.value.observedAt,
  }));
}
