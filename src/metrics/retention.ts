import type { FastifyBaseLogger } from 'fastify';
import type { Clock } from '../clock.ts';
import type { MetricsService } from './metrics-service.ts';

export const DEFAULT_PRUNE_INTERVAL_MS = 60 * 60 * 1000;
const DAY_MS = 86_400_000;

/** Deletes metrics older than the retention window: once at start, then every interval. */
export class MetricsRetention {
  readonly #service: MetricsService;
  readonly #clock: Clock;
  readonly #log: FastifyBaseLogger;
  readonly #retentionDays: number;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;
  #started = false;
  #lastRunAt: Date | undefined;
  #lastDeleted = 0;

  constructor(deps: {
    service: MetricsService;
    clock: Clock;
    log: FastifyBaseLogger;
    retentionDays: number;
    intervalMs?: number;
  }) {
    this.#service = deps.service;
    this.#clock = deps.clock;
    this.#log = deps.log;
    this.#retentionDays = deps.retentionDays;
    this.#intervalMs = deps.intervalMs ?? DEFAULT_PRUNE_INTERVAL_MS;
  }

  get lastRunAt(): Date | undefined {
    return this.#lastRunAt;
  }
  get lastDeleted(): number {
    return this.#lastDeleted;
  }

  /** The oldest observation time that is kept, now. */
  cutoff(): Date {
    return new Date(this.#clock.now().getTime() - this.#retentionDays * DAY_MS);
  }

  start(): void {
    if (this.#started) throw new Error('MetricsRetention already started');
    this.#started = true;
    void this.#tick();
    this.#timer = setInterval(() => void this.#tick(), this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => {});
  }

  /** Prunes now; returns how many rows were deleted. Concurrent calls share one run. */
  async pruneNow(): Promise<number> {
    if (!this.#running) {
      this.#running = (async () => {
        try {
          const deleted = await this.#service.pruneOlderThan(this.cutoff());
          this.#lastRunAt = this.#clock.now();
          this.#lastDeleted = deleted;
          if (deleted > 0)
            this.#log.info({ deleted, retention_days: this.#retentionDays }, 'pruned old metrics');
          return deleted;
        } finally {
          this.#running = undefined;
        }
      })();
    }
    return this.#running;
  }

  async #tick(): Promise<void> {
    try {
      await this.pruneNow();
    } catch (err) {
      // The next tick tries again; a database outage must not stop retention for good.
      this.#log.warn({ err: (err as Error).message }, 'pruning old metrics failed');
    }
  }
}
