import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { createMetricsCounters, MetricsConsumer } from './metrics-consumer.ts';
import { MetricsService } from './metrics-service.ts';
import { MetricsRetention } from './retention.ts';
import { metricsRoutes } from './routes.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Reads and writes project metrics (also used by the graph for node metrics). */
    metricsService: MetricsService;
    metricsIntake: MetricsConsumer;
    metricsRetention: MetricsRetention;
  }
}

/**
 * Metrics aggregation: a JetStream stream keeps every `graph|audit.summary.<slug>` message, one durable
 * consumer shared by all replicas stores them (losslessly, once), retention prunes old rows, and the
 * API serves latest values and history.
 */
export const metricsPlugin = fp(
  async (app: FastifyInstance) => {
    const { config } = app;
    const service = new MetricsService({ db: app.db });
    const intake = new MetricsConsumer({
      stream: {
        name: config.metricsStream,
        maxAgeDays: config.metricsStreamMaxAgeDays,
        maxBytes: config.metricsStreamMaxBytes,
      },
      service,
      clock: app.clock,
      log: app.log.child({ feature: 'metrics' }),
      counters: createMetricsCounters(app.metricsRegistry),
      retentionDays: config.metricsRetentionDays,
      onStored: (event) => app.feed.emit('metrics', event),
    });
    const retention = new MetricsRetention({
      service,
      clock: app.clock,
      log: app.log.child({ feature: 'metrics' }),
      retentionDays: config.metricsRetentionDays,
    });
    app.decorate('metricsService', service);
    app.decorate('metricsIntake', intake);
    app.decorate('metricsRetention', retention);

    app.nats.onConnect((nc) => intake.attach(nc));
    app.addHook('onReady', async () => retention.start());
    app.lifecycle.onStop('intake', async () => {
      await intake.stop();
      await retention.stop();
    });

    app.health.register('metrics', async () => {
      const retentionInfo = {
        retention_days: config.metricsRetentionDays,
        last_pruned_at: retention.lastRunAt?.toISOString() ?? null,
      };
      if (!app.nats.enabled) {
        return {
          status: 'ok',
          intake: 'off',
          note: 'NATS is disabled (NATS_URL=none): no metrics intake',
          ...retentionInfo,
        };
      }
      const base = {
        stream: intake.stream,
        consumer: intake.durable,
        intake: intake.state,
        ...retentionInfo,
      };
      if (!app.nats.connected) {
        return { status: 'degraded', ...base, reason: 'NATS disconnected; metrics wait in the stream' };
      }
      if (intake.state !== 'consuming') {
        return { status: 'degraded', ...base, ...(intake.lastError ? { reason: intake.lastError } : {}) };
      }
      try {
        return { status: 'ok', ...base, ...(await intake.info()) };
      } catch (err) {
        return { status: 'ok', ...base, info_error: (err as Error).message };
      }
    });

    await app.register(metricsRoutes, { service });
  },
  { name: 'metrics', dependencies: ['core', 'catalog'] },
);
