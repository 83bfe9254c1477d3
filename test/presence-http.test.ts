import { type AddressInfo, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { waitFor } from './helpers/wait.ts';

const heartbeat = (slug: string, extra: Record<string, unknown> = {}) => ({
  project_slug: slug,
  hub_url: `http://${slug}.local:8000`,
  mesh_namespace: `hub.${slug}`,
  timestamp: new Date().toISOString(),
  version: '1.2.3',
  ...extra,
});

function counter(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('POST /api/fed/heartbeats', () => {
  let app: App;
  beforeAll(async () => {
    app = await buildTestApp();
  });
  afterAll(async () => {
    await app.close();
  });

  it('accepts a heartbeat with 202 and the project is online in the API right after', async () => {
    const slug = uniqueSlug('http');
    const res = await app.inject({ method: 'POST', url: '/api/fed/heartbeats', payload: heartbeat(slug) });
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ accepted: true, slug });
    const project = await waitFor(
      async () => {
        const r = await app.inject(`/api/fed/projects/${slug}`);
        return r.statusCode === 200 ? r.json() : undefined;
      },
      { timeoutMs: 2000, what: 'the project to appear' },
    );
    expect(project).toMatchObject({ slug, status: 'online', version: '1.2.3', source: 'heartbeat' });
    expect(project.last_heartbeat_at).toMatch(/Z$/);
  });

  it('answers 400 with a JSON error naming the field, and counts it', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: { ...heartbeat('x'), project_slug: 'Not A Slug' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toContain('project_slug');
    const missing = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: { hub_url: 'x' },
    });
    expect(missing.statusCode).toBe(400);
    expect(missing.json()).toHaveProperty('error');
    const metrics = (await app.inject('/metrics')).body;
    expect(counter(metrics, 'federation_heartbeats_rejected_total', '{reason="invalid"}')).toBe(2);
  });

  it('answers 400 naming the field for text the database cannot store, counts it, and goes on', async () => {
    const invalid = async () =>
      counter(
        (await app.inject('/metrics')).body,
        'federation_heartbeats_rejected_total',
        '{reason="invalid"}',
      );
    const before = await invalid();
    const slug = uniqueSlug('nul');
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeat(slug, { version: '1.0\u0000' }),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      error: 'bad_request',
      message:
        'invalid heartbeat: version contains text that cannot be stored (NUL or an unpaired surrogate)',
      details: [{ field: 'version' }],
    });
    const surrogate = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeat(slug, { tags: ['edge', 'x\ud800'] }),
    });
    expect(surrogate.statusCode).toBe(400);
    expect(surrogate.json().details).toEqual([{ field: 'tags.1', message: expect.any(String) }]);
    expect(await invalid()).toBe(before + 2);
    expect((await app.inject(`/api/fed/projects/${slug}`)).statusCode).toBe(404);

    const good = await app.inject({ method: 'POST', url: '/api/fed/heartbeats', payload: heartbeat(slug) });
    expect(good.statusCode).toBe(202);
    await waitFor(async () => (await app.inject(`/api/fed/projects/${slug}`)).json().status === 'online', {
      timeoutMs: 2000,
      what: 'the good heartbeat to be written',
    });
  });

  it('answers 413 for a body larger than a heartbeat may be', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeat(uniqueSlug('big'), { padding: 'x'.repeat(10_000) }),
    });
    expect(res.statusCode).toBe(413);
    expect(res.json().error).toBe('payload_too_large');
  });
});

describe('POST /api/fed/heartbeats with FED_AUTO_REGISTER off', () => {
  let app: App;
  beforeAll(async () => {
    app = await buildTestApp({ FED_AUTO_REGISTER: 'false' });
  });
  afterAll(async () => {
    await app.close();
  });

  it('refuses an unknown project with 404 and counts it', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeat(uniqueSlug('unknown')),
    });
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toBe('not_found');
    const metrics = (await app.inject('/metrics')).body;
    expect(counter(metrics, 'federation_heartbeats_rejected_total', '{reason="unknown_project"}')).toBe(1);
  });

  it('accepts a registered project', async () => {
    const slug = uniqueSlug('known');
    const created = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: { slug, name: 'Known', hub_url: 'http://known:8000', mesh_namespace: 'hub.known' },
    });
    expect(created.statusCode).toBe(201);
    const res = await app.inject({ method: 'POST', url: '/api/fed/heartbeats', payload: heartbeat(slug) });
    expect(res.statusCode).toBe(202);
    await waitFor(async () => (await app.inject(`/api/fed/projects/${slug}`)).json().status === 'online', {
      timeoutMs: 2000,
      what: 'the project to be online',
    });
    const project = (await app.inject(`/api/fed/projects/${slug}`)).json();
    // Metadata set through the API is not overwritten by the heartbeat.
    expect(project).toMatchObject({ name: 'Known', hub_url: 'http://known:8000', source: 'api' });
  });
});

describe('POST /api/fed/heartbeats with FED_ADMIN_TOKEN set', () => {
  let app: App;
  beforeAll(async () => {
    app = await buildTestApp({ FED_ADMIN_TOKEN: 'secret-admin' });
  });
  afterAll(async () => {
    await app.close();
  });

  it('needs the admin token', async () => {
    const slug = uniqueSlug('auth');
    const without = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeat(slug),
    });
    expect(without.statusCode).toBe(401);
    expect(without.json().error).toBe('unauthorized');
    const wrong = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeat(slug),
      headers: { authorization: 'Bearer nope' },
    });
    expect(wrong.statusCode).toBe(401);
    const ok = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeat(slug),
      headers: { authorization: 'Bearer secret-admin' },
    });
    expect(ok.statusCode).toBe(202);
  });
});

describe('HTTP heartbeats while NATS_URL points at no server', () => {
  let app: App;
  beforeAll(async () => {
    // A port nothing listens on: every connection attempt is refused, as with the default NATS_URL
    // and no nats-server running.
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    app = await buildTestApp({
      NATS_URL: `nats://127.0.0.1:${port}`,
      FED_OFFLINE_AFTER_S: '1',
      FED_DEGRADED_AFTER_S: '0',
      FED_SWEEP_INTERVAL_S: '0.1',
    });
  });
  afterAll(async () => {
    await app.close();
  });

  it('a project that stops beating goes offline after the start-up grace: NATS never connected, so nothing is paused', async () => {
    const slug = uniqueSlug('nonats');
    expect(
      (await app.inject({ method: 'POST', url: '/api/fed/heartbeats', payload: heartbeat(slug) })).statusCode,
    ).toBe(202);
    await waitFor(async () => (await app.inject(`/api/fed/projects/${slug}`)).json().status === 'online', {
      timeoutMs: 2000,
      what: 'the project to be online',
    });
    const health = (await app.inject('/api/fed/health')).json();
    expect(health.checks.nats).toMatchObject({ status: 'degraded', state: 'disconnected' });
    expect(health.checks.presence.nats_pause).toMatch(/has not connected since start/);
    // Silent from here: offline one threshold after its last heartbeat (and after the grace).
    const offline = await waitFor(
      async () => {
        const p = (await app.inject(`/api/fed/projects/${slug}`)).json();
        return p.status === 'offline' ? p : undefined;
      },
      { timeoutMs: 10_000, what: 'the silent project to go offline' },
    );
    expect(offline.status).toBe('offline');
    // The API reads the rule at once; the sweeper stores (and publishes) the transition.
    const stored = await waitFor(
      async () => {
        const { transitions } = (await app.inject(`/api/fed/projects/${slug}/history`)).json();
        return transitions.find((t: { to: string }) => t.to === 'offline');
      },
      { timeoutMs: 5000, what: 'the sweeper to store the offline transition' },
    );
    expect(stored).toMatchObject({ from: 'online', reason: 'no heartbeat for more than 1s' });
    expect((await app.inject('/api/fed/health')).json().checks.presence.nats_pause).toMatch(
      /follow the status rule/,
    );
  });
});
