import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp } from './helpers/app.ts';

const valid = (slug: string, extra: Record<string, unknown> = {}) => ({
  slug,
  name: 'Veria',
  hub_url: 'http://localhost:8010',
  mesh_namespace: `hub.${slug}`,
  tags: ['finance', 'compliance'],
  ...extra,
});

describe('catalog API', () => {
  let app: App;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fed-api-'));
    const file = join(dir, 'projects.yaml');
    writeFileSync(
      file,
      'projects:\n  - slug: commandcenter\n    name: CommandCenter\n    hub_url: http://localhost:8000\n    mesh_namespace: hub.commandcenter\n    tags: [python, fastapi, rag]\n    allow_fanout: []\n',
    );
    app = await buildTestApp({ FED_PROJECTS_FILE: file });
  });
  afterAll(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('health answers the seed body plus a database check', async () => {
    const res = await app.inject({ url: '/api/fed/health' });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      status: 'ok',
      service: 'federation',
      checks: { database: { status: 'ok' } },
    });
    expect(body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('lists the project from projects.yaml as offline', async () => {
    const res = await app.inject({ url: '/api/fed/projects' });
    expect(res.statusCode).toBe(200);
    const cc = res.json().find((p: { slug: string }) => p.slug === 'commandcenter');
    expect(cc).toMatchObject({
      slug: 'commandcenter',
      name: 'CommandCenter',
      status: 'offline',
      tags: ['python', 'fastapi', 'rag'],
      last_heartbeat_at: null,
      version: null,
      source: 'config',
      configured: true,
    });
    expect(cc.created_at).toMatch(/Z$/);
  });

  it('POST creates (201), the same slug again updates (200) with the same id', async () => {
    const first = await app.inject({ method: 'POST', url: '/api/fed/projects', payload: valid('veria') });
    expect(first.statusCode).toBe(201);
    const second = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: valid('veria', { name: 'Veria 2', tags: ['finance'] }),
    });
    expect(second.statusCode).toBe(200);
    expect(second.json().id).toBe(first.json().id);
    expect(second.json()).toMatchObject({
      name: 'Veria 2',
      tags: ['finance'],
      status: 'offline',
      source: 'api',
    });

    const got = await app.inject({ url: '/api/fed/projects/veria' });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({
      id: first.json().id,
      name: 'Veria 2',
      hub_url: 'http://localhost:8010',
    });
  });

  it('tags default to an empty list', async () => {
    const { tags: _omit, ...body } = valid('no-tags');
    const res = await app.inject({ method: 'POST', url: '/api/fed/projects', payload: body });
    expect(res.statusCode).toBe(201);
    expect(res.json().tags).toEqual([]);
  });

  const badBodies: Array<[string, Record<string, unknown>, string]> = [
    ['slug with capitals', valid('Bad-Slug'), 'slug'],
    ['slug with a space', valid('bad slug'), 'slug'],
    ['slug longer than 50', valid('a'.repeat(51)), 'slug'],
    ['name longer than 200', valid('long-name', { name: 'n'.repeat(201) }), 'name'],
    ['hub_url not http(s)', valid('bad-url', { hub_url: 'ftp://example.com' }), 'hub_url'],
    ['hub_url longer than 500', valid('long-url', { hub_url: `http://x/${'a'.repeat(500)}` }), 'hub_url'],
    [
      'mesh_namespace longer than 100',
      valid('long-ns', { mesh_namespace: 'n'.repeat(101) }),
      'mesh_namespace',
    ],
    ['tags not strings', valid('bad-tags', { tags: [1, 2] }), 'tags'],
    ['tags not a list', valid('bad-tags2', { tags: 'python' }), 'tags'],
    ['unknown field', valid('extra', { colour: 'red' }), 'colour'],
  ];
  it.each(badBodies)('POST with %s → 400 naming the field', async (_label, payload, field) => {
    const res = await app.inject({ method: 'POST', url: '/api/fed/projects', payload });
    expect(res.statusCode).toBe(400);
    const body = res.json();
    expect(body.error).toBe('validation_failed');
    expect(JSON.stringify(body.details) + body.message).toContain(field);
  });

  it.each(['slug', 'name', 'hub_url', 'mesh_namespace'])('POST without %s → 400 naming it', async (field) => {
    const payload: Record<string, unknown> = valid('missing');
    delete payload[field];
    const res = await app.inject({ method: 'POST', url: '/api/fed/projects', payload });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toContain(field);
  });

  it('POST with a body that is not JSON → 400 with a JSON error', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      headers: { 'content-type': 'application/json' },
      payload: '{"slug":',
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toHaveProperty('error');
    expect(res.json()).toHaveProperty('message');
  });

  it('filters by status and tag; an unknown status → 400 listing the accepted ones', async () => {
    await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: valid('live-one', { tags: ['live'] }),
    });
    await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: valid('dead-one', { tags: ['live'] }),
    });
    await app.catalog.updateHeartbeat('live-one');

    const online = await app.inject({ url: '/api/fed/projects?status=online&tag=live' });
    expect(online.json().map((p: { slug: string }) => p.slug)).toEqual(['live-one']);
    const offline = await app.inject({ url: '/api/fed/projects?status=offline&tag=live' });
    expect(offline.json().map((p: { slug: string }) => p.slug)).toEqual(['dead-one']);
    const tagged = await app.inject({ url: '/api/fed/projects?tag=live' });
    expect(tagged.json()).toHaveLength(2);

    const bogus = await app.inject({ url: '/api/fed/projects?status=bogus' });
    expect(bogus.statusCode).toBe(400);
    expect(bogus.json().error).toBe('validation_failed');
    expect(bogus.json().message).toMatch(/status.*online, offline, degraded/);
  });

  it('pages with limit and X-Next-Cursor; the body stays an array', async () => {
    for (const s of ['pg-1', 'pg-2', 'pg-3']) {
      await app.inject({ method: 'POST', url: '/api/fed/projects', payload: valid(s, { tags: ['paged'] }) });
    }
    const first = await app.inject({ url: '/api/fed/projects?tag=paged&limit=2' });
    expect(first.json().map((p: { slug: string }) => p.slug)).toEqual(['pg-1', 'pg-2']);
    const cursor = first.headers['x-next-cursor'];
    expect(cursor).toBeTypeOf('string');
    const second = await app.inject({ url: `/api/fed/projects?tag=paged&limit=2&cursor=${cursor}` });
    expect(second.json().map((p: { slug: string }) => p.slug)).toEqual(['pg-3']);
    expect(second.headers['x-next-cursor']).toBeUndefined();

    expect((await app.inject({ url: '/api/fed/projects?limit=0' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/api/fed/projects?limit=100000' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/api/fed/projects?cursor=garbage' })).statusCode).toBe(400);
  });

  it('GET and DELETE of an unknown slug → 404 with a JSON error; DELETE → 204', async () => {
    const missing = await app.inject({ url: '/api/fed/projects/nope' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found' });

    await app.inject({ method: 'POST', url: '/api/fed/projects', payload: valid('short-lived') });
    const del = await app.inject({ method: 'DELETE', url: '/api/fed/projects/short-lived' });
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    expect((await app.inject({ method: 'DELETE', url: '/api/fed/projects/short-lived' })).statusCode).toBe(
      404,
    );
    expect((await app.inject({ url: '/api/fed/projects/BAD!' })).statusCode).toBe(400);
  });

  it('text the database cannot store → 400 naming the field, never a 500', async () => {
    const refusal = (where: string, field: string) => ({
      error: 'bad_request',
      message: `invalid ${where}: field ${field} contains text that cannot be stored (NUL or an unpaired surrogate)`,
      details: { field },
    });
    const nul = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: valid('nul-name', { name: 'Ver\u0000ia' }),
    });
    expect(nul.statusCode).toBe(400);
    expect(nul.json()).toEqual(refusal('body', 'name'));
    const surrogate = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      payload: valid('nul-name', { tags: ['ok', 'x\ud800'] }),
    });
    expect(surrogate.statusCode).toBe(400);
    expect(surrogate.json()).toEqual(refusal('body', 'tags.1'));
    expect((await app.inject({ url: '/api/fed/projects/nul-name' })).statusCode).toBe(404);

    const tag = await app.inject({ url: '/api/fed/projects?tag=%00' });
    expect(tag.statusCode).toBe(400);
    expect(tag.json()).toEqual(refusal('querystring', 'tag'));
    const slug = await app.inject({ url: '/api/fed/projects/a%00b' });
    expect(slug.statusCode).toBe(400);
    expect(slug.json()).toEqual(refusal('params', 'slug'));

    // A cursor is base64url, so the NUL only appears once it is decoded.
    const cursor = Buffer.from(JSON.stringify({ s: 'a\u0000' })).toString('base64url');
    const page = await app.inject({ url: `/api/fed/projects?cursor=${cursor}` });
    expect(page.statusCode).toBe(400);
    expect(page.json()).toMatchObject({ error: 'bad_request', details: { field: 'cursor' } });
  });

  it('an unknown route → 404 JSON', async () => {
    const res = await app.inject({ url: '/api/fed/nowhere' });
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toBe('not_found');
  });

  it('serves OpenAPI, the docs UI and Prometheus text', async () => {
    const spec = await app.inject({ url: '/api/fed/openapi.json' });
    expect(spec.statusCode).toBe(200);
    expect(spec.json().paths).toHaveProperty('/api/fed/projects');
    expect(spec.json().paths['/api/fed/projects'].get.responses).toHaveProperty('400');
    const docs = await app.inject({ url: '/api/fed/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.body).toContain('swagger');
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toMatch(/federation_projects\{status="offline"\} \d+/);
  });
});

describe('catalog API limits and tokens', () => {
  it('a body over the limit → 413 with a JSON error', async () => {
    const app = await buildTestApp({ FED_BODY_LIMIT_BYTES: '2048' });
    try {
      const res = await app.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: valid('big', { tags: Array.from({ length: 40 }, (_, i) => `tag-${i}-${'x'.repeat(60)}`) }),
      });
      expect(res.statusCode).toBe(413);
      expect(res.json()).toMatchObject({ error: 'payload_too_large' });
    } finally {
      await app.close();
    }
  });

  it('writes need the admin token when it is set; reads are open without a read token', async () => {
    const app = await buildTestApp({ FED_ADMIN_TOKEN: 'admin-secret' });
    try {
      const none = await app.inject({ method: 'POST', url: '/api/fed/projects', payload: valid('guarded') });
      expect(none.statusCode).toBe(401);
      expect(none.json()).toMatchObject({ error: 'unauthorized' });
      const wrong = await app.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: valid('guarded'),
        headers: { authorization: 'Bearer nope' },
      });
      expect(wrong.statusCode).toBe(401);
      const del = await app.inject({ method: 'DELETE', url: '/api/fed/projects/guarded' });
      expect(del.statusCode).toBe(401);
      const ok = await app.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: valid('guarded'),
        headers: { authorization: 'Bearer admin-secret' },
      });
      expect(ok.statusCode).toBe(201);
      expect((await app.inject({ url: '/api/fed/projects/guarded' })).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('reads need the read token (or the admin token) when FED_READ_TOKEN is set; health stays open', async () => {
    const app = await buildTestApp({ FED_ADMIN_TOKEN: 'admin-secret', FED_READ_TOKEN: 'read-secret' });
    try {
      expect((await app.inject({ url: '/api/fed/projects' })).statusCode).toBe(401);
      expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);
      expect(
        (await app.inject({ url: '/api/fed/projects', headers: { authorization: 'Bearer wrong' } }))
          .statusCode,
      ).toBe(401);
      expect(
        (await app.inject({ url: '/api/fed/projects', headers: { authorization: 'Bearer read-secret' } }))
          .statusCode,
      ).toBe(200);
      expect(
        (await app.inject({ url: '/api/fed/projects', headers: { authorization: 'Bearer admin-secret' } }))
          .statusCode,
      ).toBe(200);
      expect((await app.inject({ url: '/api/fed/projects?access_token=read-secret' })).statusCode).toBe(200);
      // The read token does not allow writes.
      const write = await app.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: valid('read-only'),
        headers: { authorization: 'Bearer read-secret' },
      });
      expect(write.statusCode).toBe(401);
      expect((await app.inject({ url: '/api/fed/health' })).statusCode).toBe(200);
      // The router decodes %61 to "a": the token check must not be walked around that way.
      expect((await app.inject({ url: '/%61pi/fed/projects' })).statusCode).toBe(401);
      const encodedWrite = await app.inject({
        method: 'POST',
        url: '/%61pi/fed/projects',
        payload: valid('sneaky'),
      });
      expect(encodedWrite.statusCode).toBe(401);
      expect((await app.inject({ url: '/%6detrics' })).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });
});

describe('embedded database on disk', () => {
  it('keeps what was registered across a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fed-disk-'));
    try {
      const env = { DATABASE_URL: '', FED_DATA_DIR: dir };
      const first = await buildTestApp(env);
      const created = await first.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: valid('durable'),
      });
      expect(created.statusCode).toBe(201);
      await first.close();

      const second = await buildTestApp(env);
      try {
        const got = await second.inject({ url: '/api/fed/projects/durable' });
        expect(got.statusCode).toBe(200);
        expect(got.json().id).toBe(created.json().id);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
