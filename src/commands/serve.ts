import { parseArgs } from 'node:util';
import { loadConfig } from '../config.ts';
import { limitHeapGrowth } from '../platform/heap-growth.ts';
import type { Command } from './types.ts';

export const serveCommand: Command = {
  summary: 'run the Federation Service (HTTP API, NATS workers, sweeper)',
  usage: `federation serve

Runs the service on HOST:PORT (127.0.0.1:8001). The database is PostgreSQL when DATABASE_URL is a
postgres:// URL, otherwise embedded PGlite under FED_DATA_DIR (./.federation). Migrations run first.
Configuration comes from the environment; see .env.example.`,
  async run(argv) {
    parseArgs({ args: argv, options: {} }); // no options: anything else is a usage error
    const config = loadConfig();
    limitHeapGrowth();
    // Loaded here, not at the top: `federation serve --help` should not load the whole server.
    // A bad projects.yaml refuses start-up before the database is touched.
    const { loadProjectsFile } = await import('../catalog/projects-file.ts');
    const projectsFile = config.projectsFile ? loadProjectsFile(config.projectsFile) : undefined;
    // The database opens while the rest of the server's modules load: PGlite compiles its
    // WebAssembly on other threads meanwhile. buildApp takes it over (and reports its errors).
    const { openDatabase } = await import('../db/connection.ts');
    const database = openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    database.catch(() => {}); // not unhandled while the modules load; buildApp awaits it
    const { buildApp } = await import('../app.ts');
    const app = await buildApp({ config, database, projectsFile });
    let closing = false;
    const shutdown = async (signal: string) => {
      if (closing) return;
      closing = true;
      app.log.info({ signal }, 'shutting down: stop intake, flush, drain NATS, close database');
      const timer = setTimeout(() => {
        app.log.error('shutdown took longer than 15 s; exiting');
        process.exit(1);
      }, 15_000);
      timer.unref();
      await app.close();
      process.exit(0);
    };
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
    await app.listen({ port: config.port, host: config.host });
    app.log.info(
      { database: app.database.location, engine: app.database.engine, nats: config.natsUrl ?? 'disabled' },
      'federation ready',
    );
    return await new Promise<number>(() => {});
  },
};
