import type { FastifyBaseLogger } from 'fastify';
import type { CatalogService, Transition } from '../catalog/catalog-service.ts';
import type { Clock } from '../clock.ts';
import { RateLimitedLog } from '../rate-limited-log.ts';
import type { PresenceOfflineGuard } from './offline-guard.ts';
import type { PresenceMetrics } from './presence-metrics.ts';

/** The rule flips strictly after a threshold: wake this much after a deadline, not at it. */
const DEADLINE_SLACK_MS = 2;
const MIN_DELAY_MS = 5;
/** How often (in sweeps) the per-status count deltas are summed into one row. */
const COMPACT_COUNTS_EVERY_SWEEPS = 60;

export interface StatusSweeperOptions {
  catalog: Pick<CatalogService, 'sweepStatuses' | 'countPendingOffline'> & {
    compactCounts?: CatalogService['compactCounts'];
    nextDueAt?: CatalogService['nextDueAt'];
    recordMassHold?: CatalogService['recordMassHold'];
    currentMassHold?: CatalogService['currentMassHold'];
    pruneSupersededDeadlines?: CatalogService['pruneSupersededDeadlines'];
    readonly sweepLagMs?: number;
  };
  guard: Pick<PresenceOfflineGuard, 'observe' | 'adopt' | 'triggers' | 'massHolding'>;
  clock: Clock;
  log: FastifyBaseLogger;
  metrics?: PresenceMetrics;
  intervalMs: number;
  /** Runs before each sweep. */
  beforeSweep?: () => Promise<void>;
  /**
   * Whether this instance holds a heartbeat of the project, not written yet, heard by `deadline`
   * (the local writer's buffer): a sweep does not judge that project silent.
   */
  unwritten?: (slug: string, deadline: Date) => boolean;
  /** How long the local writer needs for what it holds: a project left to it is looked at again no sooner. */
  unwrittenRetryMs?: () => number;
  /** Receives the transitions this instance claimed, once each. */
  onTransitions?: (transitions: Transition[]) => Promise<void> | void;
}

/**
 * Every interval, lets the mass-offline guard look at what would go offline, then claims every
 * pending status transition (the catalog's UPDATE … RETURNING: each claimed by one replica only)
 * and passes them on to be published. A failed sweep is logged and the loop goes on.
 */
export class StatusSweeper {
  readonly #o: StatusSweeperOptions;
  readonly #errors: RateLimitedLog;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  /** A prune running beside the sweeps (`#pruneBeside`). */
  #pruning: Promise<void> | undefined;
  #started = false;
  #stopped = false;
  #lastSweepAt: Date | undefined;
  #sweeps = 0;
  #observedAt: number | undefined;
  #nextDelayMs: number;

  constructor(opts: StatusSweeperOptions) {
    this.#o = opts;
    this.#nextDelayMs = opts.intervalMs;
    this.#errors = new RateLimitedLog(opts.log, opts.clock);
  }

  get lastSweepAt(): Date | undefined {
    return this.#lastSweepAt;
  }

  /** Started and not yet stopped. */
  get running(): boolean {
    return this.#started && !this.#stopped;
  }

  start(): void {
    if (this.#started) throw new Error('StatusSweeper already started');
    this.#started = true;
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
    await this.#pruning;
  }

  /** One sweep: returns the transitions this instance claimed. */
  async sweepOnce(): Promise<Transition[]> {
    await this.#o.beforeSweep?.();
    // The mass-offline guard looks at most once an interval: under load the sweeper wakes at every
    // deadline bucket, and the guard counts a whole threshold of flips anyway.
    const at = this.#o.clock.now().getTime();
    if (this.#observedAt === undefined || at - this.#observedAt >= this.#o.intervalMs) {
      this.#observedAt = at;
      const guard = this.#o.guard;
      // The exact count only where it can matter: it could trigger the guard, or a hold is on (its
      // health shows the count).
      const counts = await this.#o.catalog.countPendingOffline({
        needed: (atMost) => guard.massHolding(this.#o.clock.now()) || guard.triggers(atMost),
      });
      const started = this.#o.guard.observe(counts, this.#o.clock.now());
      // A hold this replica starts is recorded for the others; if one of theirs came first, it stands.
      if (started && this.#o.catalog.recordMassHold) {
        this.#o.guard.adopt(await this.#o.catalog.recordMassHold(started), this.#o.clock.now());
      }
    } else {
      // Between those looks, a hold another replica has just recorded is adopted at once (one row).
      const hold = await this.#o.catalog.currentMassHold?.();
      if (hold && hold.until > this.#o.clock.now()) this.#o.guard.adopt(hold, this.#o.clock.now());
    }
    // A heartbeat received but not yet written (waiting behind a long write) must count before its
    // project is judged silent: such a project is left to its write.
    const sweepStarted = performance.now();
    const transitions = await this.#o.catalog.sweepStatuses({
      unwritten: this.#o.unwritten,
      unwrittenRetryMs: this.#o.unwrittenRetryMs?.() ?? 0,
    });
    this.#o.metrics?.sweepSeconds.observe((performance.now() - sweepStarted) / 1000);
    if (this.#o.catalog.sweepLagMs !== undefined)
      this.#o.metrics?.sweepLag.set(this.#o.catalog.sweepLagMs / 1000);
    this.#lastSweepAt = this.#o.clock.now();
    for (const t of transitions) this.#o.metrics?.transitions.inc({ to: t.to });
    if (transitions.length > 0) await this.#o.onTransitions?.(transitions);
    // Superseded deadlines leave the queue before they fall due, so status pages and counts read
    // only what may really change (a no-op until a step of the horizon has passed). Beside the
    // sweeps, not between them: a prune that looks ids up can take a while under load, and the next
    // sweep's claims must not wait for it (both take rows `skip locked`; a prune takes none due yet).
    this.#pruneBeside();
    // The count deltas grow with transitions; summing them now and then keeps reading them cheap.
    if (++this.#sweeps % COMPACT_COUNTS_EVERY_SWEEPS === 0) await this.#o.catalog.compactCounts?.();
    // Wake at the next deadline when it comes before the next interval: a project is then claimed
    // within a flush and a statement of its threshold, not up to a whole interval later.
    const next = await this.#o.catalog.nextDueAt?.();
    const untilNext = next ? next.getTime() - this.#o.clock.now().getTime() + DEADLINE_SLACK_MS : Infinity;
    this.#nextDelayMs = Math.max(MIN_DELAY_MS, Math.min(this.#o.intervalMs, untilNext));
    return transitions;
  }

  /** Starts a prune unless one is running; its failure is logged, and the next sweep starts another. */
  #pruneBeside(): void {
    const catalog = this.#o.catalog;
    if (this.#stopped || this.#pruning || !catalog.pruneSupersededDeadlines) return;
    const prune = catalog.pruneSupersededDeadlines.bind(catalog);
    this.#pruning = (async () => {
      try {
        const pruned = await prune();
        if (pruned) this.#o.metrics?.deadlinesPruned.inc(pruned);
      } catch (err) {
        this.#errors.warn(
          'prune',
          { err },
          'pruning superseded deadlines failed; trying again after the next sweep',
        );
      } finally {
        this.#pruning = undefined;
      }
    })();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.sweepOnce()
        .then(
          () => {},
          (err) => {
            this.#errors.warn('sweep', { err }, 'status sweep failed; trying again next interval');
          },
        )
        .finally(() => {
          this.#running = undefined;
          this.#schedule();
        });
    }, this.#nextDelayMs);
    this.#timer.unref();
  }
}
