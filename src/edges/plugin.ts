import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge } from 'prom-client';
import type { IntegrationsSink } from '../core.ts';
import { EdgesService } from './edges-service.ts';
import { edgesRoutes } from './routes.ts';

declare module 'fastify' {
  interface FastifyInstance {
    edges: EdgesService;
  }
}

/** Skipped integrations are logged at most this often; the counter has every one. */
const SKIP_LOG_INTERVAL_MS = 60_000;

/**
 * Integration edges: projects.yaml's `edges:` at start, the edges API, discovery from heartbeat
 * `integrations` (through app.integrationSinks) and the graph the ecosystem view draws.
 */
export const edgesPlugin = fp(
  async (app: FastifyInstance) => {
    const edges = new EdgesService({ db: app.db, clock: app.clock, catalog: app.catalog });
    app.decorate('edges', edges);

    const file = app.projectsFile;
    // Without a projects file there is no declaration to apply: config edges stay as they are.
    if (file) {
      const { upserted, removed } = await edges.syncConfigEdges(file.edges);
      app.log.info({ file: file.path, edges: file.edges.length, upserted, removed }, 'loaded config edges');
    }

    const discovered = new Counter({
      name: 'federation_edges_discovery_upserts_total',
      help: 'Edges written or refreshed from heartbeat integrations',
      registers: [app.metricsRegistry],
    });
    const pruned = new Counter({
      name: 'federation_edges_discovery_pruned_total',
      help: 'Discovered edges removed because their project stopped reporting them',
      registers: [app.metricsRegistry],
    });
    const skipped = new Counter({
      name: 'federation_edges_discovery_skipped_total',
      help: 'Heartbeat integrations not stored, by reason (unknown_project, self, invalid)',
      labelNames: ['reason'],
      registers: [app.metricsRegistry],
    });
    const failed = new Counter({
      name: 'federation_edges_discovery_failed_total',
      help: 'Batches of heartbeat integrations that could not be stored (retried at the next refresh)',
      registers: [app.metricsRegistry],
    });
    new Gauge({
      name: 'federation_edges',
      help: 'Integration edges by source',
      labelNames: ['source'],
      registers: [app.metricsRegistry],
      async collect() {
        // Keep the last counts while the database is down instead of failing the whole scrape.
        const counts = await edges.countBySource().catch(() => undefined);
        if (counts) for (const [source, n] of Object.entries(counts)) this.set({ source }, n);
      },
    });

    let lastSkipLog = Number.NEGATIVE_INFINITY;
    const sink: IntegrationsSink = async (batch) => {
      try {
        const result = await edges.recordDiscovered(batch);
        discovered.inc(result.upserted);
        pruned.inc(result.pruned);
        const skips = Object.entries(result.skipped).filter(([, n]) => n > 0);
        for (const [reason, n] of skips) skipped.inc({ reason }, n);
        const now = app.clock.now().getTime();
        if (skips.length > 0 && now - lastSkipLog >= SKIP_LOG_INTERVAL_MS) {
          lastSkipLog = now;
          app.log.warn(
            { skipped: Object.fromEntries(skips) },
            'heartbeat integrations skipped (see federation_edges_discovery_skipped_total)',
          );
        }
      } catch (err) {
        // Presence re-sends a project's list periodically, so a lost batch heals by itself.
        failed.inc();
        app.log.error({ err, projects: batch.length }, 'storing discovered edges failed');
      }
    };
    app.integrationSinks.push(sink);

    // A project registered, changed or deleted through this instance's API: the grouped overviews are
    // read afresh at once (other replicas see it by the project count or within STRUCTURE_MAX_AGE_MS).
    app.addHook('onResponse', async (request, reply) => {
      if (request.method === 'GET' || request.method === 'HEAD' || reply.statusCode >= 300) return;
      if (request.url.startsWith('/api/fed/projects')) edges.catalogChanged();
    });

    await app.register(edgesRoutes, { edges, maxNodes: app.config.graphMaxNodes });
  },
  { name: 'edges', dependencies: ['core', 'catalog'] },
);
