import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';

const ADMIN = 'ownership-admin';
const auth = { authorization: `Bearer ${ADMIN}` };

describe('who owns a project’s address', () => {
  let app: App;
  beforeAll(async () => {
    app = await buildTestApp({ FED_ADMIN_TOKEN: ADMIN });
  });
  afterAll(async () => {
    await app?.close();
  });

  const beat = async (slug: string, ns: string, hub: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      headers: auth,
      payload: { project_slug: slug, hub_url: hub, mesh_namespace: ns, timestamp: new Date().toISOString() },
    });
    expect(res.statusCode).toBe(202);
    await app.heartbeatWriter.flush();
  };

  it('a project registered by its heartbeat follows its heartbeats until an operator registers it', async () => {
    const slug = uniqueSlug('owned');
    await beat(slug, 'first.ns', 'http://first:1');
    expect((await app.inject({ url: `/api/fed/projects/${slug}` })).json()).toMatchObject({
      source: 'heartbeat',
      mesh_namespace: 'first.ns',
    });
    await beat(slug, 'moved.ns', 'http://moved:1');
    expect((await app.inject({ url: `/api/fed/projects/${slug}` })).json().mesh_namespace).toBe('moved.ns');

    const registered = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      headers: auth,
      payload: {
        slug,
        name: 'Owned',
        hub_url: 'http://good:1',
        mesh_namespace: 'good.ns',
        allow_fanout: ['audit'],
      },
    });
    expect(registered.statusCode).toBe(200);
    expect(registered.json().source).toBe('api');

    // Anyone who can publish a heartbeat could otherwise redirect the admin's fan-outs.
    await beat(slug, 'attacker.ns', 'http://attacker:1');
    const after = (await app.inject({ url: `/api/fed/projects/${slug}` })).json();
    expect(after).toMatchObject({
      source: 'api',
      mesh_namespace: 'good.ns',
      hub_url: 'http://good:1',
      status: 'online',
    });
  });
});
