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
});
