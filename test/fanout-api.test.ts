import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';

const ADMIN = 'admin-secret';
const READ = 'read-secret';
const admin = { authorization: `Bearer ${ADMIN}` };

describe('fan-out API: auth, validation and NATS off', () => {
  let app: App;
  const slug = uniqueSlug('fa');

  beforeAll(async () => {
    // NATS_URL=none: the fan-out must answer 503, never hang or crash.
    app = await buildTestApp({ FED_ADMIN_TOKEN: ADMIN, FED_READ_TOKEN: READ });
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      headers: admin,
      payload: {
        slug,
        name: 'A',
        hub_url: 'http://127.0.0.1:9000',
        mesh_namespace: `ns-${slug}`,
        tags: ['python'],
        allow_fanout: ['audit'],
      },
    });
    expect(res.statusCode).toBe(201);
  });
  afterAll(async () => {
    await app?.close();
  });

  const post = (payload: unknown, headers: Record<string, string> = admin) =>
    app.inject({ method: 'POST', url: '/api/fed/actions', headers, payload: payload as object });

  it('needs the admin token to start a run', async () => {
    const body = { action: 'audit', targets: { slugs: [slug] } };
    const none = await post(body, {});
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ error: 'unauthorized' });
    expect((await post(body, { authorization: 'Bearer wrong' })).statusCode).toBe(401);
    // The read-only key may look at runs but not start one.
    expect((await post(body, { authorization: `Bearer ${READ}` })).statusCode).toBe(401);
  });

  it('needs a token to read runs when FED_READ_TOKEN is set', async () => {
    expect((await app.inject({ method: 'GET', url: '/api/fed/actions' })).statusCode).toBe(401);
    const ok = await app.inject({
      method: 'GET',
      url: '/api/fed/actions',
      headers: { authorization: `Bearer ${READ}` },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual([]);
  });

  it.each([
    ['a bad action name', { action: 'Bad Action!', targets: { all: true } }, 'action'],
    ['no action', { targets: { all: true } }, 'action'],
    ['timeout_ms above 60000', { action: 'audit', targets: { all: true }, timeout_ms: 60_001 }, 'timeout_ms'],
    ['timeout_ms of 0', { action: 'audit', targets: { all: true }, timeout_ms: 0 }, 'timeout_ms'],
    ['an unknown field', { action: 'audit', targets: { all: true }, force: true }, ''],
    ['an unknown target criterion', { action: 'audit', targets: { names: ['x'] } }, ''],
    ['a bad status', { action: 'audit', targets: { status: 'asleep' } }, 'targets.status'],
    ['an empty slugs list', { action: 'audit', targets: { slugs: [] } }, 'targets.slugs'],
  ])('answers 400 for %s', async (_what, body, field) => {
    const res = await post(body);
    expect(res.statusCode).toBe(400);
    const json = res.json();
    expect(json.error).toBe('validation_failed');
    if (field) expect(JSON.stringify(json.details)).toContain(field);
  });

  it('refuses an empty targets object unless all is true', async () => {
    const res = await post({ action: 'audit', targets: {} });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(/"all": true/);
  });

  it('names unknown slugs', async () => {
    const res = await post({ action: 'audit', targets: { slugs: [slug, 'no-such-a', 'no-such-b'] } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({
      message: 'unknown project slugs: no-such-a, no-such-b',
      details: { unknown: ['no-such-a', 'no-such-b'] },
    });
  });

  it('refuses targets that match no project', async () => {
    const res = await post({ action: 'audit', targets: { tags: [uniqueSlug('nomatch')] } });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(/no project matches/);
  });

  it('answers 503 with JSON when NATS is disabled, and stores nothing', async () => {
    const res = await post({ action: 'audit', targets: { slugs: [slug] } });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ error: 'unavailable', message: expect.stringMatching(/NATS/) });
    const list = await app.inject({ method: 'GET', url: '/api/fed/actions', headers: admin });
    expect(list.json()).toEqual([]);
  });

  it('refuses text the database cannot store in params and cursors with 400, never 500', async () => {
    const params = await post({ action: 'audit', targets: { slugs: [slug] }, params: { path: 'a\u0000' } });
    expect(params.statusCode).toBe(400);
    expect(params.json()).toMatchObject({ error: 'bad_request', details: { field: 'params.path' } });
    const cursor = Buffer.from(JSON.stringify({ c: new Date().toISOString(), i: 'a\u0000' })).toString(
      'base64url',
    );
    const page = await app.inject({
      method: 'GET',
      url: `/api/fed/actions?cursor=${cursor}`,
      headers: admin,
    });
    expect(page.statusCode).toBe(400);
    expect(page.json()).toMatchObject({ error: 'bad_request', details: { field: 'cursor' } });
  });

  it('404s an unknown run', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/api/fed/actions/00000000-0000-0000-0000-000000000000',
      headers: admin,
    });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ error: 'not_found' });
  });

  it('documents the routes in the OpenAPI document', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/api/fed/openapi.json' })).json();
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/api/fed/actions', '/api/fed/actions/{id}']),
    );
    expect(Object.keys(doc.paths['/api/fed/actions'].post.responses)).toEqual(
      expect.arrayContaining(['202', '400', '401', '503']),
    );
  });
});
