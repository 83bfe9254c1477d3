/**
 * Dagger module of the Federation Service: the seed's FederationStack (build the image, run the
 * migrations, serve it, test it) and its MetaStack (PostgreSQL with `commandcenter_fed` and NATS with
 * JetStream started as services, migrations run, the service bound to them), in TypeScript.
 * Checked by typechecking and linting here (there is no Dagger engine on the build machine).
 *
 *   dagger call serve --db-url=postgres://… --nats-url=nats://nats:4222 --admin-token=env:FED_ADMIN_TOKEN up
 *   dagger call meta-stack --db-password=env:DB_PASSWORD --admin-token=env:FED_ADMIN_TOKEN up --ports 8001:8001
 *   dagger call meta-stack-test
 */
import {
  argument,
  type Container,
  type Directory,
  dag,
  func,
  object,
  type Secret,
  type Service,
} from '@dagger.io/dagger';

const NODE_IMAGE = 'node:20-bookworm-slim';
const POSTGRES_IMAGE = 'postgres:15';
const NATS_IMAGE = 'nats:2.10';
const PORT = 8001;
const DB_NAME = 'commandcenter_fed';
const DB_USER = 'commandcenter';
/** The hostnames the services are bound under, as in deploy/compose.yaml. */
const POSTGRES_HOST = 'postgres';
const NATS_HOST = 'nats';
const NATS_URL = `nats://${NATS_HOST}:4222`;
const SOURCE_IGNORE = ['node_modules', '.federation', 'web/dist', 'dist'];

/** PostgreSQL 15 creating `commandcenter_fed` owned by `commandcenter` (the image's entrypoint does it). */
function postgresService(password: Secret): Service {
  return dag
    .container()
    .from(POSTGRES_IMAGE)
    .withEnvVariable('POSTGRES_USER', DB_USER)
    .withSecretVariable('POSTGRES_PASSWORD', password)
    .withEnvVariable('POSTGRES_DB', DB_NAME)
    .withExposedPort(5432)
    .asService({ useEntrypoint: true });
}

/** `container` with the database and NATS bound under the hostnames postgres and nats. */
function boundTo(container: Container, postgres: Service, nats: Service, dbPassword: Secret): Container {
  return container
    .withServiceBinding(POSTGRES_HOST, postgres)
    .withServiceBinding(NATS_HOST, nats)
    .withSecretVariable('FED_DB_PASSWORD', dbPassword)
    .withEnvVariable('NATS_URL', NATS_URL)
    .withEnvVariable('TEST_NATS_URL', NATS_URL);
}

/** Runs `args` with DATABASE_URL built in the shell, so the password stays a secret (never in the plan). */
const withDatabaseUrl = (args: string[]): string[] => [
  'sh',
  '-c',
  `export DATABASE_URL="postgres://${DB_USER}:$FED_DB_PASSWORD@${POSTGRES_HOST}:5432/${DB_NAME}"; exec "$@"`,
  '--',
  ...args,
];

/** nats-server with JetStream, configured by deploy/nats.conf (the metrics stream needs JetStream). */
function natsService(source: Directory): Service {
  return dag
    .container()
    .from(NATS_IMAGE)
    .withFile('/etc/nats/nats.conf', source.file('deploy/nats.conf'))
    .withExposedPort(4222)
    .asService({ useEntrypoint: true, args: ['-c', '/etc/nats/nats.conf'] });
}

@object()
export class FederationStack {
  /** The service's container: dependencies installed, the view and dist/ built (what runs). */
  @func()
  build(@argument({ defaultPath: '/', ignore: SOURCE_IGNORE }) source: Directory): Container {
    return dag
      .container()
      .from(NODE_IMAGE)
      .withMountedCache('/root/.npm', dag.cacheVolume('federation-npm'))
      .withWorkdir('/app')
      .withFile('/app/package.json', source.file('package.json'))
      .withFile('/app/package-lock.json', source.file('package-lock.json'))
      .withExec(['npm', 'ci', '--ignore-scripts'])
      .withDirectory('/app', source)
      .withExec(['npm', 'run', 'build:web'])
      .withExec(['npm', 'run', 'build'])
      .withExposedPort(PORT);
  }

  /** Runs the service against the given database and NATS (the seed's `serve`). */
  @func()
  serve(
    @argument({ defaultPath: '/', ignore: SOURCE_IGNORE }) source: Directory,
    dbUrl: string,
    adminToken: Secret,
    natsUrl = NATS_URL,
    port = PORT,
  ): Service {
    return this.build(source)
      .withEnvVariable('DATABASE_URL', dbUrl)
      .withEnvVariable('NATS_URL', natsUrl)
      .withEnvVariable('HOST', '0.0.0.0')
      .withEnvVariable('PORT', String(port))
      .withEnvVariable('LOG_LEVEL', 'info')
      .withSecretVariable('FED_ADMIN_TOKEN', adminToken)
      .withExposedPort(port)
      .asService({ args: ['node', '--max-old-space-size=1536', 'bin/federation.js', 'serve'] });
  }

  /** Applies the migrations to `dbUrl` and returns the output (the seed's `run_migrations`). */
  @func()
  async runMigrations(
    @argument({ defaultPath: '/', ignore: SOURCE_IGNORE }) source: Directory,
    dbUrl: string,
  ): Promise<string> {
    return this.build(source)
      .withEnvVariable('DATABASE_URL', dbUrl)
      .withExec(['node', 'bin/federation.js', 'migrate'])
      .stdout();
  }

  /** The whole test suite against throwaway PostgreSQL 15 and NATS with JetStream (the seed's `test`). */
  @func()
  async test(@argument({ defaultPath: '/', ignore: SOURCE_IGNORE }) source: Directory): Promise<string> {
    const postgres = dag
      .container()
      .from('postgres:15')
      .withEnvVariable('POSTGRES_HOST_AUTH_METHOD', 'trust')
      .withExposedPort(5432)
      .asService();
    return this.build(source)
      .withServiceBinding('postgres', postgres)
      .withServiceBinding(NATS_HOST, natsService(source))
      .withEnvVariable('TEST_POSTGRES_URL', 'postgres://postgres@postgres:5432/postgres')
      .withEnvVariable('TEST_NATS_URL', 'nats://nats:4222')
      .withExec(['npm', 'test'])
      .stdout();
  }

  /**
   * The seed's MetaStack: PostgreSQL (creating commandcenter_fed) and NATS with JetStream as
   * services, the migrations applied to that database, and the Federation Service bound to both.
   */
  @func()
  async metaStack(
    @argument({ defaultPath: '/', ignore: SOURCE_IGNORE }) source: Directory,
    dbPassword: Secret,
    adminToken: Secret,
    port = PORT,
  ): Promise<Service> {
    const postgres = postgresService(dbPassword);
    const nats = natsService(source);
    const app = boundTo(this.build(source), postgres, nats, dbPassword);
    // Migrations first, as the seed does (serve would apply them too); sync() fails the call if they fail.
    await app.withExec(withDatabaseUrl(['node', 'bin/federation.js', 'migrate'])).sync();
    return app
      .withEnvVariable('HOST', '0.0.0.0')
      .withEnvVariable('PORT', String(port))
      .withEnvVariable('LOG_LEVEL', 'info')
      .withSecretVariable('FED_ADMIN_TOKEN', adminToken)
      .withExposedPort(port)
      .asService({
        args: withDatabaseUrl(['node', '--max-old-space-size=1536', 'bin/federation.js', 'serve']),
      });
  }

  /**
   * The test suite against the MetaStack's services: the same PostgreSQL (tests create their
   * databases beside commandcenter_fed, as the commandcenter role may) and NATS with JetStream.
   */
  @func()
  async metaStackTest(
    @argument({ defaultPath: '/', ignore: SOURCE_IGNORE }) source: Directory,
    dbPassword?: Secret,
  ): Promise<string> {
    const password = dbPassword ?? dag.setSecret('fed-meta-test-password', 'commandcenter');
    const postgres = postgresService(password);
    const nats = natsService(source);
    const app = boundTo(this.build(source), postgres, nats, password);
    return app
      .withExec(withDatabaseUrl(['node', 'bin/federation.js', 'migrate']))
      .withExec([
        'sh',
        '-c',
        `TEST_POSTGRES_URL="postgres://${DB_USER}:$FED_DB_PASSWORD@${POSTGRES_HOST}:5432/postgres" npm test`,
      ])
      .stdout();
  }
}
