/**
 * Dagger module of the Federation Service (the seed's FederationStack, in TypeScript): build the
 * image, run migrations, serve it, run the tests against throwaway PostgreSQL and NATS services.
 * Checked by typechecking and linting here (there is no Dagger engine on the build machine).
 *
 *   dagger call serve --db-url=postgres://… --nats-url=nats://nats:4222 --admin-token=env:FED_ADMIN_TOKEN up
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
const PORT = 8001;

@object()
export class FederationStack {
  /** The service's container: dependencies installed, the ecosystem view built. */
  @func()
  build(
    @argument({ defaultPath: '/', ignore: ['node_modules', '.federation', 'web/dist'] }) source: Directory,
  ): Container {
    return dag
      .container()
      .from(NODE_IMAGE)
      .withMountedCache('/root/.npm', dag.cacheVolume('federation-npm'))
      .withWorkdir('/app')
      .withFile('/app/package.json', source.file('package.json'))
      .withFile('/app/package-lock.json', source.file('package-lock.json'))
      .withExec(['npm', 'ci', '--ignore-scripts'])
      .withDirectory('/app', source)
      .withExec(['npm', 'run', 'build:web', '--if-present'])
      .withExposedPort(PORT);
  }

  /** Runs the service against the given database and NATS (the seed's `serve`). */
  @func()
  serve(
    @argument({ defaultPath: '/', ignore: ['node_modules', '.federation', 'web/dist'] }) source: Directory,
    dbUrl: string,
    adminToken: Secret,
    natsUrl = 'nats://nats:4222',
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
      .asService({ args: ['node', 'bin/federation.js', 'serve'] });
  }

  /** Applies the migrations to `dbUrl` and returns the output (the seed's `run_migrations`). */
  @func()
  async runMigrations(
    @argument({ defaultPath: '/', ignore: ['node_modules', '.federation', 'web/dist'] }) source: Directory,
    dbUrl: string,
  ): Promise<string> {
    return this.build(source)
      .withEnvVariable('DATABASE_URL', dbUrl)
      .withExec(['node', 'bin/federation.js', 'migrate'])
      .stdout();
  }

  /** The whole test suite against throwaway PostgreSQL 15 and NATS with JetStream (the seed's `test`). */
  @func()
  async test(
    @argument({ defaultPath: '/', ignore: ['node_modules', '.federation', 'web/dist'] }) source: Directory,
  ): Promise<string> {
    const postgres = dag
      .container()
      .from('postgres:15')
      .withEnvVariable('POSTGRES_HOST_AUTH_METHOD', 'trust')
      .withExposedPort(5432)
      .asService();
    const nats = dag
      .container()
      .from('nats:2.10')
      .withExposedPort(4222)
      .asService({ args: ['nats-server', '-js'] });
    return this.build(source)
      .withServiceBinding('postgres', postgres)
      .withServiceBinding('nats', nats)
      .withEnvVariable('TEST_POSTGRES_URL', 'postgres://postgres@postgres:5432/postgres')
      .withEnvVariable('TEST_NATS_URL', 'nats://nats:4222')
      .withExec(['npm', 'test'])
      .stdout();
  }
}
