import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram } from 'prom-client';
import { ConfigError } from '../errors.ts';
import { SERVICE_VERSION } from '../http/system-routes.ts';
import { DeliveryWorker } from './delivery-worker.ts';
import { NotifierService } from './notifier-service.ts';
import { NotificationOutbox } from './outbox.ts';
import { notifyRoutes } from './routes.ts';
import { sendWebhook } from './sender.ts';
import { checkWebhookUrl, WebhookUrlError } from './url-check.ts';

declare module 'fastify' {
  interface FastifyInstance {
    notifiers: NotifierService;
    /** Sends the outbox's deliveries; `kick()` makes it look now. */
    deliveryWorker: DeliveryWorker;
  }
}

/**
 * Webhook notifications: projects.yaml's `notifications:` and the notifiers API, the outbox written
 * with every stored transition (maintenance and flap damping decided there), and the worker that
 * delivers, signs and retries.
 */
export const notifyPlugin = fp(
  async (app: FastifyInstance) => {
    const { config, clock } = app;
    const notifiers = new NotifierService({ db: app.db, clock, allowPrivate: config.webhookAllowPrivate });
    app.decorate('notifiers', notifiers);

    const file = app.projectsFile;
    if (file) {
      file.notifications.forEach((n, i) => {
        try {
          checkWebhookUrl(n.url, config.webhookAllowPrivate);
        } catch (err) {
          if (err instanceof WebhookUrlError)
            throw new ConfigError(
              `${file.path}: notifications[${i}] (name ${n.name}) field url: ${err.message}`,
            );
          throw err;
        }
      });
      const { upserted, removed } = await notifiers.syncConfig(file.notifications);
      app.log.info({ file: file.path, notifiers: upserted, removed }, 'loaded config notifiers');
    }

    const outcomes = new Counter({
      name: 'federation_notifications_total',
      help: 'Webhook delivery attempts by outcome (delivered, retry, failed), and transitions not notified (maintenance, flapping)',
      labelNames: ['outcome'],
      registers: [app.metricsRegistry],
    });
    const enqueued = new Counter({
      name: 'federation_notifications_enqueued_total',
      help: 'Deliveries written to the outbox with the transitions that caused them',
      registers: [app.metricsRegistry],
    });
    const delay = new Histogram({
      name: 'federation_notification_delay_seconds',
      help: 'From the transition to its delivery (2xx from the receiver)',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 3600],
      registers: [app.metricsRegistry],
    });
    new Gauge({
      name: 'federation_notifications_pending',
      help: 'Deliveries not yet made (waiting for their next attempt)',
      registers: [app.metricsRegistry],
      async collect() {
        const counts = await notifiers.countByStatus().catch(() => undefined);
        if (counts) this.set(counts.pending);
      },
    });

    const outbox = new NotificationOutbox({
      clock,
      flapChanges: config.flapChanges,
      flapWindowS: config.flapWindowS,
      flapSettleS: config.flapSettleS,
      maxAgeS: config.webhookMaxAgeS,
    });
    outbox.onResult = (r) => {
      if (r.enqueued) enqueued.inc(r.enqueued);
      if (r.maintenance) outcomes.inc({ outcome: 'suppressed_maintenance' }, r.maintenance);
      if (r.flapping) outcomes.inc({ outcome: 'suppressed_flapping' }, r.flapping);
    };
    app.catalog.onTransitionsStored(outbox.stored);

    const worker = new DeliveryWorker({
      db: app.db,
      clock,
      log: app.log,
      outbox,
      send: sendWebhook,
      timeoutMs: config.webhookTimeoutMs,
      retryMaxS: config.webhookRetryMaxS,
      concurrency: config.webhookConcurrency,
      allowPrivate: config.webhookAllowPrivate,
      userAgent: `commandcenter-federation/${SERVICE_VERSION}`,
      onOutcome: (outcome, ms) => {
        outcomes.inc({ outcome });
        if (ms !== undefined) delay.observe(ms / 1000);
      },
    });
    app.decorate('deliveryWorker', worker);
    // Rows written with transitions this replica just committed: send them now, not at the next poll.
    app.catalog.onTransitionsCommitted(() => worker.kick());

    // A receiver that is down is its owner's problem, not the service's: the check says how much waits,
    // and stays ok (the database check reports a database that cannot be read).
    app.health.register('notifications', async () => {
      const counts = await notifiers.countByStatus();
      return { status: 'ok', pending: counts.pending, failed: counts.failed, in_flight: worker.inFlight };
    });

    await app.register(notifyRoutes, { notifiers, maxAgeS: config.webhookMaxAgeS });

    app.addHook('onReady', async () => worker.start());
    // After intake stops (no new transitions), before the database closes; a send in flight is
    // bounded by its timeout, and an unfinished one is sent again by the next claim.
    app.lifecycle.onStop('flush', () => worker.stop());
  },
  { name: 'notify', dependencies: ['core', 'catalog'] },
);
