import type { FastifyBaseLogger } from 'fastify';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Clock } from '../clock.ts';
import { RateLimitedLog } from '../rate-limited-log.ts';
import { REJECT_REASONS, type RejectReason } from './heartbeat-check.ts';

/** The presence feature's Prometheus series, registered on one app's registry. */
export class PresenceMetrics {
  readonly received: Counter<'transport'>;
  readonly rejected: Counter<'reason'>;
  readonly written: Counter;
  readonly autoRegistered: Counter;
  readonly flushes: Counter<'result'>;
  readonly flushSeconds: Histogram;
  readonly transitions: Counter<'to'>;
  readonly pending: Gauge;
  readonly pendingBytes: Gauge;
  readonly sweepSeconds: Histogram;
  readonly sweepLag: Gauge;
  readonly deadlinesPruned: Counter;

  /**
   * Counts NATS heartbeats in a plain number, added to `received` whenever the registry is read:
   * incrementing a labelled child of a prom-client counter cost 2-3 % of the intake per message.
   */
  readonly receivedNats = {
    count: 0,
    inc(): void {
      this.count += 1;
    },
  };

  constructor(registry: Registry) {
    const registers = [registry];
    const receivedNats = this.receivedNats;
    this.received = new Counter({
      name: 'federation_heartbeats_received_total',
      help: 'Heartbeats received, before any check, by transport',
      labelNames: ['transport'],
      registers,
      collect() {
        if (receivedNats.count === 0) return;
        this.inc({ transport: 'nats' }, receivedNats.count);
        receivedNats.count = 0;
      },
    });
    this.rejected = new Counter({
      name: 'federation_heartbeats_rejected_total',
      help: 'Heartbeats dropped, by reason',
      labelNames: ['reason'],
      registers,
    });
    for (const transport of ['nats', 'http']) this.received.inc({ transport }, 0);
    for (const reason of REJECT_REASONS) this.rejected.inc({ reason }, 0);
    this.written = new Counter({
      name: 'federation_heartbeats_written_total',
      help: 'Heartbeats written to the database (after coalescing per project)',
      registers,
    });
    this.autoRegistered = new Counter({
      name: 'federation_projects_auto_registered_total',
      help: 'Projects registered from their first heartbeat (FED_AUTO_REGISTER)',
      registers,
    });
    this.flushes = new Counter({
      name: 'federation_heartbeat_flushes_total',
      help: 'Batched heartbeat writes, by result',
      labelNames: ['result'],
      registers,
    });
    this.flushSeconds = new Histogram({
      name: 'federation_heartbeat_flush_seconds',
      help: 'Duration of one batched heartbeat write',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.transitions = new Counter({
      name: 'federation_status_transitions_total',
      help: 'Status transitions claimed by this instance, by new status',
      labelNames: ['to'],
      registers,
    });
    this.pending = new Gauge({
      name: 'federation_heartbeat_buffer_pending',
      help: 'Projects with a heartbeat waiting to be written',
      registers,
    });
    this.pendingBytes = new Gauge({
      name: 'federation_heartbeat_buffer_bytes',
      help: 'Approximate bytes (payload sizes) of the heartbeats waiting to be written',
      registers,
    });
    this.sweepSeconds = new Histogram({
      name: 'federation_status_sweep_seconds',
      help: 'Duration of one status sweep (its batches of due deadlines)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.deadlinesPruned = new Counter({
      name: 'federation_status_deadlines_pruned_total',
      help: 'Superseded deadlines dropped from the queue before they fell due (a later heartbeat of the project was written)',
      registers,
    });
    this.sweepLag = new Gauge({
      name: 'federation_status_sweep_lag_seconds',
      help: 'How long the oldest deadline the last sweep took had been ready to take (past its due time plus the claim grace, or its not_before), 0 when none was due: how far behind the sweeper is',
      registers,
    });
  }
}

/** Counts a dropped heartbeat by reason and logs it at a bounded rate. */
export class HeartbeatRejections {
  readonly #metrics: PresenceMetrics;
  readonly #log: RateLimitedLog;

  constructor(metrics: PresenceMetrics, log: FastifyBaseLogger, clock: Clock) {
    this.#metrics = metrics;
    this.#log = new RateLimitedLog(log, clock);
  }

  reject(reason: RejectReason, details: Record<string, unknown>, message: string, count = 1): void {
    this.#metrics.rejected.inc({ reason }, count);
    this.#log.warn(reason, { reason, ...details }, `heartbeat dropped: ${message}`);
  }
}
