import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { CatalogService } from './catalog/catalog-service.ts';
import type { ProjectsFile } from './catalog/projects-file.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { Database, DatabaseHandle } from './db/connection.ts';
import { EventFeed } from './events.ts';
import { HealthChecks } from './health.ts';
import type { NatsManager } from './nats.ts';
import type { Heartbeat } from './protocol/index.ts';

/** Shutdown runs in phases so that nothing is lost: stop intake, flush, drain NATS, close the database. */
export type ShutdownPhase = 'intake' | 'flush' | 'nats' | 'database';
const PHASES: ShutdownPhase[] = ['intake', 'flush', 'nats', 'database'];

export class Lifecycle {
  readonly #steps = new Map<ShutdownPhase, Array<() => Promise<void> | void>>();
  onStop(phase: ShutdownPhase, step: () => Promise<void> | void): void {
    const list = this.#steps.get(phase) ?? [];
    list.push(step);
    this.#steps.set(phase, list);
  }
  async stop(log: FastifyInstance['log']): Promise<void> {
    for (const phase of PHASES) {
      const results = await Promise.allSettled((this.#steps.get(phase) ?? []).map((s) => s()));
      for (const r of results)
        if (r.status === 'rejected') log.error({ err: r.reason, phase }, 'shutdown step failed');
    }
  }
}

/**
 * Heartbeats that carry `integrations` are handed to these sinks after they are written (the edges
 * feature registers one to store discovered edges). Presence calls them only when a project's list
 * changed or has not been refreshed for a while, never once per heartbeat.
 */
export type IntegrationsSink = (
  batch: Array<{ slug: string; integrations: NonNullable<Heartbeat['integrations']>; at: Date }>,
) => Promise<void> | void;

declare module 'fastify' {
  interface FastifyInstance {
    config: Readonly<Config>;
    clock: Clock;
    database: DatabaseHandle;
    db: Database;
    nats: NatsManager;
    feed: EventFeed;
    health: HealthChecks;
    metricsRegistry: Registry;
    lifecycle: Lifecycle;
    catalog: CatalogService;
    projectsFile: ProjectsFile | undefined;
    /** When this instance started listening: the start-up grace of the offline guard counts from here. */
    startedAt: Date;
    integrationSinks: IntegrationsSink[];
  }
}

export interface CoreDeps {
  config: Readonly<Config>;
  clock: Clock;
  database: DatabaseHandle;
  nats: NatsManager;
  catalog: CatalogService;
  projectsFile: ProjectsFile | undefined;
}

/** Decorates the app with the shared parts every feature plugin depends on. */
export const corePlugin = fp(
  async (app: FastifyInstance, deps: CoreDeps) => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const lifecycle = new Lifecycle();
    app.decorate('config', deps.config);
    app.decorate('clock', deps.clock);
    app.decorate('database', deps.database);
    app.decorate('db', deps.database.db);
    app.decorate('nats', deps.nats);
    app.decorate('feed', new EventFeed());
    app.decorate('health', new HealthChecks());
    app.decorate('metricsRegistry', registry);
    app.decorate('lifecycle', lifecycle);
    app.decorate('catalog', deps.catalog);
    app.decorate('projectsFile', deps.projectsFile);
    app.decorate('startedAt', deps.clock.now());
    app.decorate('integrationSinks', [] as IntegrationsSink[]);

    app.lifecycle.onStop('nats', () => deps.nats.stop());
    app.lifecycle.onStop('database', () => deps.database.close());
    app.addHook('onClose', async () => lifecycle.stop(app.log));
  },
  { name: 'core' },
);
