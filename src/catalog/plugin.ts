import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Gauge } from 'prom-client';
import { MaintenanceService } from './maintenance.ts';
import { maintenanceRoutes } from './maintenance-routes.ts';
import { catalogRoutes } from './routes.ts';

/** The catalog: projects.yaml at start, the projects API, project counts in /metrics. */
export const catalogPlugin = fp(
  async (app: FastifyInstance) => {
    const file = app.projectsFile;
    if (file) {
      for (const p of file.projects) {
        await app.catalog.registerProject(
          {
            slug: p.slug,
            name: p.name,
            hubUrl: p.hub_url,
            meshNamespace: p.mesh_namespace,
            tags: p.tags ?? [],
            allowFanout: p.allow_fanout ?? [],
          },
          'config',
        );
      }
      const dropped = await app.catalog.markUnconfigured(file.projects.map((p) => p.slug));
      app.log.info(
        { file: file.path, projects: file.projects.length, unconfigured: dropped },
        'loaded projects file',
      );
    }

    const catalog = app.catalog;
    new Gauge({
      name: 'federation_projects',
      help: 'Projects in the catalog by live status',
      labelNames: ['status'],
      registers: [app.metricsRegistry],
      // A scrape must answer while the database is down (that is when it matters most): keep the
      // last counts rather than failing the whole /metrics response.
      async collect() {
        const counts = await catalog.countByStatus().catch(() => undefined);
        if (counts) for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
    });

    await app.register(catalogRoutes);
    await app.register(maintenanceRoutes, {
      maintenance: new MaintenanceService({ db: app.db, clock: app.clock }),
    });
  },
  { name: 'catalog', dependencies: ['core'] },
);
