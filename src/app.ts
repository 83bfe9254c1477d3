import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { CatalogService } from './catalog/catalog-service.ts';
import { catalogPlugin } from './catalog/plugin.ts';
import { loadProjectsFile, type ProjectsFile } from './catalog/projects-file.ts';
import { type Clock, systemClock } from './clock.ts';
import type { Config } from './config.ts';
import { corePlugin } from './core.ts';
import { type DatabaseHandle, openDatabase } from './db/connection.ts';
import { edgesPlugin } from './edges/plugin.ts';
import { fanoutPlugin } from './fanout/plugin.ts';
import { authPlugin } from './http/auth.ts';
import { compressionPlugin } from './http/compression.ts';
import { DeferredCompilers } from './http/deferred-compile.ts';
import { errorsPlugin } from './http/errors.ts';
import { openApiOptions } from './http/openapi.ts';
import { ErrorSchema } from './http/schemas.ts';
import { securityPlugin } from './http/security.ts';
import { SERVICE_VERSION, systemRoutes } from './http/system-routes.ts';
import { textGuardPlugin } from './http/text-guard.ts';
import { metricsPlugin } from './metrics/plugin.ts';
import { NatsManager } from './nats.ts';
import { notifyPlugin } from './notify/plugin.ts';
import { presencePlugin } from './presence/plugin.ts';
import { webPlugin } from './web/plugin.ts';

export interface BuildAppOptions {
  config: Readonly<Config>;
  clock?: Clock;
  /** A pino logger or false; defaults to one at config.logLevel. */
  logger?: boolean | object;
  /** Where the default logger writes (stdout); tests read the log from here. */
  logStream?: NodeJS.WritableStream;
  /** How long start-up waits for NATS before serving without it (it keeps trying). */
  natsFirstConnectWaitMs?: number;
  /**
   * The database, already opening: `serve` starts PGlite before it loads the app's modules, so that
   * its WebAssembly compiles on another core meanwhile. The app owns it from here (closes it).
   * Default: opened here from config.
   */
  database?: Promise<DatabaseHandle>;
  /** projects.yaml, already read and checked (`serve` reads it before it opens the database). */
  projectsFile?: ProjectsFile;
}

export type App = FastifyInstance;

/** Request log lines without secrets: `?access_token=` (how EventSource sends a token) is masked. */
export function serializeRequest(req: { method: string; url: string; host?: string; ip?: string }) {
  return {
    method: req.method,
    url: req.url.replace(/([?&]access_token=)[^&]*/gi, '$1***'),
    host: req.host,
    remoteAddress: req.ip,
  };
}

/**
 * Builds the whole service: database (migrated), projects.yaml, NATS and every feature.
 * `federation serve` runs exactly this; tests build it and talk to it with `app.inject`.
 */
export async function buildApp(opts: BuildAppOptions): Promise<App> {
  const { config } = opts;
  const clock = opts.clock ?? systemClock;
  // Read projects.yaml first: a bad file must stop start-up before anything is touched.
  const projectsFile =
    opts.projectsFile ?? (config.projectsFile ? loadProjectsFile(config.projectsFile) : undefined);
  const opening = opts.database ?? openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  const compilers = new DeferredCompilers();

  const app = Fastify({
    logger: opts.logger ?? {
      level: config.logLevel,
      redact: ['req.headers.authorization', 'req.headers.cookie'],
      serializers: { req: serializeRequest },
      ...(opts.logStream ? { stream: opts.logStream } : {}),
    },
    bodyLimit: config.bodyLimitBytes,
    schemaController: { compilersFactory: { buildSerializer: compilers.buildSerializer } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(compilers.validatorCompiler);

  const database = await opening;
  try {
    await database.migrate();
  } catch (err) {
    await database.close();
    throw err;
  }
  const catalog = new CatalogService({
    db: database.db,
    clock,
    thresholds: { degradedAfterS: config.degradedAfterS, offlineAfterS: config.offlineAfterS },
    // A heartbeat waits up to a flush interval in a replica's buffer before it is written.
    claimGraceMs: 2 * config.flushIntervalMs,
  });
  const nats = new NatsManager(config, app.log, clock);
  // Connecting is network round trips: it proceeds while the plugins register (each feature's
  // onConnect listener runs when it registers, or when the connection comes, whichever is later).
  const natsStarted = nats.start(opts.natsFirstConnectWaitMs);

  try {
    app.addSchema(ErrorSchema);
    await app.register(corePlugin, { config, clock, database, nats, catalog, projectsFile });
    await app.register(errorsPlugin);
    await app.register(compressionPlugin);
    // Headers, CORS and rate limits: before auth, so an address over its failure budget is refused first.
    await app.register(securityPlugin, {
      corsOrigins: config.corsOrigins,
      rateLimitWrites: config.rateLimitWrites,
      rateLimitAuthFailures: config.rateLimitAuthFailures,
      rateLimitWindowS: config.rateLimitWindowS,
    });
    await app.register(textGuardPlugin);
    await app.register(authPlugin, { adminToken: config.adminToken, readToken: config.readToken });
    await app.register(swagger, openApiOptions(SERVICE_VERSION));
    await app.register(swaggerUi, { routePrefix: '/api/fed/docs' });

    app.health.register('database', async () => {
      const t0 = performance.now();
      await database.ping();
      return {
        status: 'ok',
        engine: database.engine,
        latency_ms: Math.round((performance.now() - t0) * 10) / 10,
      };
    });

    await app.register(systemRoutes);
    await app.register(catalogPlugin);
    // Before presence: the outbox hook must be in place before the first sweep stores a transition.
    await app.register(notifyPlugin);
    await app.register(presencePlugin);
    await app.register(metricsPlugin);
    await app.register(edgesPlugin);
    await app.register(fanoutPlugin);
    await app.register(webPlugin);

    await natsStarted;
    await app.ready();
  } catch (err) {
    await app.close().catch(() => {});
    await nats.stop(); // it was started before the plugins that would stop it had all registered
    throw err;
  }
  // What no request has needed yet is compiled now, in the background: the first call of a route
  // then rarely pays for its schema.
  void compilers.warmUp().then((failures) => {
    for (const f of failures)
      app.log.error({ err: f.error, route: f.route }, 'route schema does not compile');
  });
  return app;
}
