import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp } from './helpers/app.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.ts';
import { waitFor } from './helpers/wait.ts';

describe('PostgreSQL unreachable', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let app: App;

  beforeAll(async () => {
    db = await createPostgresDatabase();
    const target = new URL(db.url);
    proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
    const viaProxy = new URL(db.url);
    viaProxy.port = String(proxy.port);
    app = await buildTestApp({ DATABASE_URL: viaProxy.toString() });
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: {
        slug: 'outage',
        name: 'Outage',
        hub_url: 'http://localhost:1',
        mesh_namespace: 'hub.outage',
      },
    });
    expect(res.statusCode).toBe(201);
  });

  afterAll(async () => {
    await app?.close();
    await proxy?.close();
    await db?.drop();
  });

  it('answers reads with 503 and a JSON error, health says degraded, and recovers by itself', async () => {
    await proxy.down();
    const read = await app.inject({ url: '/api/fed/projects' });
    expect(read.statusCode).toBe(503);
    expect(read.json()).toMatchObject({ error: 'unavailable' });
    expect(read.json().message).toMatch(/database/);

    const health = await app.inject({ url: '/api/fed/health' });
    expect(health.statusCode).toBe(200);
    expect(health.json().status).toBe('degraded');
    expect(health.json().checks.database.status).toBe('down');

    // Prometheus still gets an answer: the scrape matters most during an outage.
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toContain('federation_heartbeats_received_total');

    await proxy.up();
    const back = await waitFor(
      async () => {
        const r = await app.inject({ url: '/api/fed/projects/outage' });
        return r.statusCode === 200 ? r : undefined;
      },
      { what: 'reads to work again after the database came back' },
    );
    expect(back.json().slug).toBe('outage');
  });

  it('answers 503 naming the timeout when the database gives up on a read, not 500', async () => {
    // A real statement the database cancels, the way a statement timeout does (SQLSTATE 57014): the
    // read waits on a lock another session holds, and that wait is cancelled.
    const pg = await import('pg');
    const holder = new pg.default.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table projects in access exclusive mode');
      let answered = false;
      const read = app.inject({ url: '/api/fed/projects/outage' }).finally(() => {
        answered = true;
      });
      // Every statement waiting on the lock is cancelled (the sweeper's and the writer's retry).
      await waitFor(
        async () => {
          await holder.query(
            `select pg_cancel_backend(pid) from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`,
          );
          return answered;
        },
        { what: 'the read waiting on the lock, cancelled' },
      );
      const res = await read;
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.json()).toMatchObject({ error: 'timeout' });
      expect(res.json().message).toMatch(/did not answer in time/);
    } finally {
      await holder.query('rollback').catch(() => {});
      await holder.end();
    }
    expect((await app.inject({ url: '/api/fed/projects/outage' })).statusCode).toBe(200);
  });
});
