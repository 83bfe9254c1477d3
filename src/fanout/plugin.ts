import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge } from 'prom-client';
import { FanoutRunner } from './fanout-runner.ts';
import { FanoutService } from './fanout-service.ts';
import { FanoutProgressRelay } from './progress-relay.ts';
import { fanoutRoutes } from './routes.ts';

/** A run still 'running' this long after its deadline belongs to an instance that is gone. */
export const ABANDONED_RUN_GRACE_MS = 10_000;
export const ABANDONED_RUN_SWEEP_INTERVAL_MS = 15_000;

declare module 'fastify' {
  interface FastifyInstance {
    /** Starts fan-out runs (scatter/gather over NATS). */
    fanout: FanoutRunner;
    /** Stored runs and results. */
    fanoutService: FanoutService;
  }
}

/** Fan-out actions: POST/GET /api/fed/actions, progress on the SSE feed, counts in /metrics. */
export const fanoutPlugin = fp(
  async (app: FastifyInstance) => {
    const service = new FanoutService({ db: app.db });
    const runsStarted = new Counter({
      name: 'federation_fanout_runs_total',
      help: 'Fan-out runs started',
      labelNames: ['action'],
      registers: [app.metricsRegistry],
    });
    const results = new Counter({
      name: 'federation_fanout_results_total',
      help: 'Per-project fan-out outcomes',
      labelNames: ['outcome'],
      registers: [app.metricsRegistry],
    });
    const relay = new FanoutProgressRelay({
      nats: app.nats,
      feed: app.feed,
      log: app.log,
      clock: app.clock,
      rejected: new Counter({
        name: 'federation_fanout_progress_rejected_total',
        help: 'Fan-out progress messages from NATS dropped as malformed',
        labelNames: ['reason'],
        registers: [app.metricsRegistry],
      }),
    });
    const runner = new FanoutRunner({
      service,
      catalog: app.catalog,
      connection: () => (app.nats.connected ? app.nats.connection : undefined),
      clock: app.clock,
      log: app.log,
      onProgress: (progress) => {
        if (progress.status === 'running' && progress.slug === undefined)
          runsStarted.inc({ action: progress.action });
        relay.publish(progress);
      },
      onResult: (outcome) => results.inc({ outcome }),
    });
    new Gauge({
      name: 'federation_fanout_active_runs',
      help: 'Fan-out runs in flight on this instance',
      registers: [app.metricsRegistry],
      collect() {
        this.set(runner.activeRuns);
      },
    });
    app.decorate('fanout', runner);
    app.decorate('fanoutService', service);

    const finishAbandoned = async () => {
      try {
        const ids = await service.finishAbandonedRuns(app.clock.now(), ABANDONED_RUN_GRACE_MS);
        if (ids.length) app.log.warn({ runs: ids }, 'finished fan-out runs abandoned by a stopped instance');
      } catch (err) {
        app.log.warn({ err }, 'could not finish abandoned fan-out runs; will retry');
      }
    };
    await finishAbandoned();
    const sweep = setInterval(finishAbandoned, ABANDONED_RUN_SWEEP_INTERVAL_MS);
    sweep.unref();
    relay.start();
    app.lifecycle.onStop('intake', async () => {
      clearInterval(sweep);
      // After the runs: their last events still go out to the other replicas.
      await runner.stop();
      relay.stop();
    });

    await app.register(fanoutRoutes);
  },
  { name: 'fanout', dependencies: ['core', 'catalog'] },
);
