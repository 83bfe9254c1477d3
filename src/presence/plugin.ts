import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { EventStreams } from './event-stream.ts';
import { HeartbeatIntake } from './heartbeat-intake.ts';
import { HeartbeatWorker } from './heartbeat-worker.ts';
import { HeartbeatWriter } from './heartbeat-writer.ts';
import { HistoryService } from './history-service.ts';
import { PresenceOfflineGuard } from './offline-guard.ts';
import { HeartbeatRejections, PresenceMetrics } from './presence-metrics.ts';
import { presenceRoutes } from './routes.ts';
import { StatusRelay } from './status-relay.ts';
import { StatusSweeper } from './status-sweeper.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** Coalesces heartbeats per project and writes them in batches (enqueue, flush, pending). */
    heartbeatWriter: HeartbeatWriter;
    /** Claims status transitions every FED_SWEEP_INTERVAL_S and publishes them. */
    sweeper: StatusSweeper;
    /** The guards against false offline that the catalog consults. */
    offlineGuard: PresenceOfflineGuard;
    /** Checks a heartbeat from any transport and hands it to the writer. */
    heartbeatIntake: HeartbeatIntake;
  }
}

/**
 * Presence: heartbeats in (NATS and HTTP), batched writes, the sweeper that claims status
 * transitions, the guards against false offline, the change feed (SSE) and status history.
 */
export const presencePlugin = fp(
  async (app: FastifyInstance) => {
    const { config, clock } = app;
    const metrics = new PresenceMetrics(app.metricsRegistry);
    const rejections = new HeartbeatRejections(metrics, app.log, clock);
    const writer = new HeartbeatWriter({
      catalog: app.catalog,
      clock,
      log: app.log,
      metrics,
      rejections,
      autoRegister: config.autoRegister,
      flushIntervalMs: config.flushIntervalMs,
      bufferMax: config.heartbeatBufferMax,
      bufferMaxBytes: config.heartbeatBufferMaxBytes,
      // PGlite runs one statement at a time: a second batch in flight would only wait.
      concurrency: app.database.engine === 'postgres' ? 2 : 1,
      silenceMs: (config.degradedAfterS > 0 ? config.degradedAfterS : config.offlineAfterS) * 1000,
      integrationSinks: app.integrationSinks,
    });
    const intake = new HeartbeatIntake({
      writer,
      rejections,
      metrics,
      clock,
      db: app.db,
      autoRegister: config.autoRegister,
    });
    const worker = new HeartbeatWorker({ nats: app.nats, intake, log: app.log });

    const guard = new PresenceOfflineGuard({
      startedAt: app.startedAt,
      offlineAfterS: config.offlineAfterS,
      nats: app.nats,
      log: app.log,
    });
    app.catalog.setGuard(guard);

    const relay = new StatusRelay({ nats: app.nats, feed: app.feed, log: app.log, clock });
    // Transitions a heartbeat makes (back online, a new project's first status) are claimed as it is
    // written, not by the next sweep.
    app.catalog.onHeartbeatTransitions((transitions) => {
      for (const t of transitions) metrics.transitions.inc({ to: t.to });
      return relay.publish(transitions);
    });
    const sweeper = new StatusSweeper({
      catalog: app.catalog,
      guard,
      clock,
      log: app.log,
      metrics,
      intervalMs: config.sweepIntervalS * 1000,
      // Heartbeats this instance received but has not written yet must count before anything is
      // judged silent: a sweep leaves their projects to the writer. The sweeper never waits for the
      // writer, and a writer behind delays no other project's claim.
      unwritten: (slug, deadline) => writer.holds(slug, deadline),
      unwrittenRetryMs: () => writer.backlogMs,
      onTransitions: (transitions) => relay.publish(transitions),
    });
    const streams = new EventStreams(app.feed, { maxClients: config.sseMaxClients });
    const history = new HistoryService({ db: app.db, clock });

    app.decorate('heartbeatWriter', writer);
    app.decorate('sweeper', sweeper);
    app.decorate('offlineGuard', guard);
    app.decorate('heartbeatIntake', intake);

    app.health.register('heartbeat_writer', () => writer.health());
    app.health.register('presence', () => guard.health(clock.now()));
    app.health.register('nats', () => {
      const nats = app.nats;
      const ok = nats.state === 'connected' || nats.state === 'disabled';
      return {
        status: ok ? 'ok' : 'degraded',
        state: nats.state,
        since: nats.since.toISOString(),
        ...(nats.lastError ? { last_error: nats.lastError } : {}),
      };
    });

    await app.register(presenceRoutes, { intake, history, streams });

    worker.start();
    relay.start();
    app.addHook('onReady', async () => {
      const queued = await app.catalog.reconcile();
      if (queued > 0) app.log.info({ projects: queued }, 'queued the deadlines of live projects');
      sweeper.start();
    });
    // SSE responses are hijacked: end them, or the server would wait for them to close.
    app.addHook('preClose', async () => streams.closeAll());
    app.lifecycle.onStop('intake', async () => {
      await Promise.all([worker.stop(), sweeper.stop()]);
    });
    app.lifecycle.onStop('flush', () => writer.close());
  },
  { name: 'presence', dependencies: ['core', 'catalog'] },
);
