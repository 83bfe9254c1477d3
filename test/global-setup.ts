import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { ensureBuilt } from './helpers/build.ts';
import { SHARED_NATS_URL } from './helpers/nats-server.ts';
import { POSTGRES_ADMIN_URL } from './helpers/postgres.ts';

/** The suite needs real PostgreSQL and NATS; say so plainly instead of failing in a hundred places. */
export default async function setup(): Promise<void> {
  ensureBuilt();
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (err) {
    throw new Error(
      `PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL} (${(err as Error).message}); start it (see README, "Running the tests")`,
    );
  } finally {
    await client.end().catch(() => {});
  }
  try {
    const nc = await connect({ servers: SHARED_NATS_URL, timeout: 3000 });
    await nc.close();
  } catch (err) {
    throw new Error(
      `NATS is not reachable at ${SHARED_NATS_URL} (${(err as Error).message}); start it (see README, "Running the tests")`,
    );
  }
}
