import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { ensureBuilt } from './helpers/build.ts';
import { freePort } from './helpers/ports.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { heartbeatPayload, metricsText, metricValue } from './helpers/presence.ts';
import { waitFor } from './helpers/wait.ts';
import { startWebhookReceiver, type WebhookReceiver } from './helpers/webhook-receiver.ts';

// Fewer than the mass-offline guard's minimum (10), so their offline flips are not held back.
const PROJECTS = 8;

describe('two replicas on one PostgreSQL database: each delivery once', () => {
  let database: TestDatabase;
  let apps: App[] = [];
  let receiver: WebhookReceiver;

  beforeAll(async () => {
    database = await createPostgresDatabase();
    receiver = await startWebhookReceiver();
    const env = {
      DATABASE_URL: database.url,
      FED_WEBHOOK_ALLOW_PRIVATE: 'true',
      FED_DEGRADED_AFTER_S: '0',
      FED_OFFLINE_AFTER_S: '1.5',
      // Both sweep and deliver often, so that they race for the same rows.
      FED_SWEEP_INTERVAL_S: '0.05',
    };
    apps = [await buildTestApp(env), await buildTestApp(env)];
  });
  afterAll(async () => {
    await Promise.all(apps.map((a) => a.close()));
    await receiver?.close();
    await database?.drop();
  });

  it('sends every transition either replica claimed exactly once', async () => {
    const slugs = Array.from({ length: PROJECTS }, () => uniqueSlug('rep'));
    const res = await apps[0]?.inject({
      method: 'POST',
      url: '/api/fed/notifiers',
      payload: { url: receiver.url, filters: { slugs } },
    });
    expect(res?.statusCode).toBe(201);
    // Heartbeats through both replicas; the offline flips after 1.5 s of silence go to whichever sweeps first.
    for (const [i, slug] of slugs.entries()) {
      const app = apps[i % 2] as App;
      const r = await app.inject({
        method: 'POST',
        url: '/api/fed/heartbeats',
        payload: heartbeatPayload(slug),
      });
      expect(r.statusCode).toBe(202);
    }
    const total = PROJECTS * 2;
    const ours = () => receiver.received.filter((r) => slugs.includes(String(r.json.slug)));
    await waitFor(() => ours().length >= total, { timeoutMs: 20_000, what: `${total} deliveries` });
    // Both workers poll at least every second: give them two more rounds to send anything twice.
    const settled = Date.now();
    await waitFor(() => Date.now() > settled + 2500, { timeoutMs: 5000 });

    const got = ours();
    expect(got).toHaveLength(total);
    expect(new Set(got.map((g) => g.headers['x-federation-delivery'])).size).toBe(total);
    const key = (g: (typeof got)[number]) => `${g.json.slug}:${g.json.from}>${g.json.to}`;
    expect(got.map(key).sort()).toEqual(
      slugs.flatMap((s) => [`${s}:offline>online`, `${s}:online>offline`]).sort(),
    );
    const delivered = await Promise.all(
      apps.map(async (a) =>
        metricValue(await metricsText(a), 'federation_notifications_total', '{outcome="delivered"}'),
      ),
    );
    expect(delivered.reduce((a, b) => a + b, 0)).toBe(total);
  });
});

const BIN = resolve(import.meta.dirname, '../bin/federation.js');

describe('a service SIGKILLed with a pending delivery', () => {
  let database: TestDatabase;
  let receiver: WebhookReceiver;
  let child: ChildProcess | undefined;
  let port: number;

  const serve = async () => {
    const proc = spawn(process.execPath, [BIN, 'serve'], {
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        HOST: '127.0.0.1',
        DATABASE_URL: database.url,
        NATS_URL: 'none',
        FED_PROJECTS_FILE: 'none',
        LOG_LEVEL: 'warn',
        FED_WEBHOOK_ALLOW_PRIVATE: 'true',
        FED_WEBHOOK_RETRY_MAX_S: '0.5',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${port}/api/fed/health`).catch(() => undefined))?.ok,
      { timeoutMs: 30_000, what: 'the service to answer' },
    );
    return proc;
  };
  const api = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${port}${path}`, init);
  const post = (path: string, body: unknown) =>
    api(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    ensureBuilt();
    database = await createPostgresDatabase();
    receiver = await startWebhookReceiver();
    port = await freePort();
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await receiver?.close();
    await database?.drop();
  });

  it('delivers it after the restart, once', async () => {
    child = await serve();
    const slug = uniqueSlug('killed');
    const control = uniqueSlug('after-kill');
    expect(
      (await post('/api/fed/notifiers', { url: receiver.url, filters: { slugs: [slug, control] } })).status,
    ).toBe(201);
    receiver.respondWith(() => 503);
    expect((await post('/api/fed/heartbeats', heartbeatPayload(slug))).status).toBe(202);
    const pending = await waitFor(
      async () => {
        const list = (await (
          await api(`/api/fed/notifications?slug=${slug}&status=pending`)
        ).json()) as Array<{
          id: string;
          attempts: number;
        }>;
        return list[0] && list[0].attempts >= 1 ? list[0] : undefined;
      },
      { what: 'a refused attempt' },
    );

    const exited = new Promise((r) => child?.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    receiver.respondWith(() => 200);
    child = await serve();

    await waitFor(() => receiver.accepted().some((r) => r.headers['x-federation-delivery'] === pending.id), {
      timeoutMs: 15_000,
      what: 'the delivery after the restart',
    });
    // One more delivery through the restarted worker: anything it would send twice would be sent by now.
    expect((await post('/api/fed/heartbeats', heartbeatPayload(control))).status).toBe(202);
    await waitFor(() => receiver.accepted().some((r) => r.json.slug === control), {
      what: 'a later delivery',
    });
    await waitFor(async () => {
      const list = (await (await api(`/api/fed/notifications?slug=${slug}`)).json()) as Array<{
        status: string;
      }>;
      return list.length === 1 && list[0]?.status === 'delivered';
    });
    expect(receiver.accepted().filter((r) => r.headers['x-federation-delivery'] === pending.id)).toHaveLength(
      1,
    );
    child.kill('SIGTERM');
  });
});
