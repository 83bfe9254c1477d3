/**
 * GET /api/fed/projects without `limit` streams the whole catalog (the seed's one JSON array) batch
 * by batch, and large responses are compressed as the client asks.
 */
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { STREAM_BATCH_ROWS } from '../src/catalog/catalog-service.ts';
import { type ProjectResponse, toProjectResponse } from '../src/catalog/schemas.ts';
import { query } from '../src/db/connection.ts';
import { buildTestApp } from './helpers/app.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';

const N = STREAM_BATCH_ROWS * 2 + 123; // several batches and a partial one

let database: TestDatabase;
let app: App;

beforeAll(async () => {
  database = await createPostgresDatabase();
  app = await buildTestApp({ DATABASE_URL: database.url });
  await query(
    app.db,
    sql`insert into projects (slug, name, hub_url, mesh_namespace, tags)
        select 'stream-' || lpad(i::text, 5, '0'), 'Stream ' || i, 'http://s' || i, 'hub.s' || i,
               case when i % 3 = 0 then '["third"]'::jsonb else '[]'::jsonb end
        from generate_series(1, ${N}) i`,
  );
  // Some live ones, through the real write path.
  for (let i = 1; i <= 40; i++) {
    await app.catalog.updateHeartbeat(
      `stream-${String(i).padStart(5, '0')}`,
      i % 4 === 0 ? { health: 'degraded' } : {},
    );
  }
});
afterAll(async () => {
  await app?.close();
  await database?.drop();
});

async function paged(qs: string): Promise<ProjectResponse[]> {
  const all: ProjectResponse[] = [];
  let cursor: string | undefined;
  do {
    const res = await app.inject({
      url: `/api/fed/projects?limit=1000${qs}${cursor ? `&cursor=${cursor}` : ''}`,
    });
    expect(res.statusCode).toBe(200);
    all.push(...res.json<ProjectResponse[]>());
    cursor = res.headers['x-next-cursor'] as string | undefined;
  } while (cursor);
  return all;
}

describe('a page', () => {
  it('is the JSON of the catalog rows as toProjectResponse maps them, with the same cursors', async () => {
    // A few rows with every optional field set.
    await query(
      app.db,
      sql`update projects set version = '2.0', interval_s = 15, allow_fanout = '["restart"]'::jsonb,
            maintenance_until = now() + interval '1 hour', maintenance_reason = 'upgrade "db"', flapping = true
          where slug in ('stream-00002', 'stream-00007')`,
    );
    for (const qs of ['', '&status=online', '&status=offline', '&tag=third']) {
      const filters = Object.fromEntries(new URLSearchParams(qs.slice(1)));
      const expected: unknown[] = [];
      let cursor: string | undefined;
      do {
        const page = await app.catalog.getProjects({
          ...filters,
          limit: 1000,
          ...(cursor ? { cursor } : {}),
        });
        expected.push(...page.projects.map(toProjectResponse));
        cursor = page.nextCursor;
      } while (cursor);
      expect(await paged(qs)).toEqual(JSON.parse(JSON.stringify(expected)));
    }
    // One project by slug: the same JSON as its row mapped.
    for (const slug of ['stream-00002', 'stream-00004', 'stream-00100']) {
      const res = await app.inject({ url: `/api/fed/projects/${slug}` });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.json()).toEqual(
        JSON.parse(JSON.stringify(toProjectResponse(await app.catalog.getProject(slug)))),
      );
    }
    const missing = await app.inject({ url: '/api/fed/projects/stream-missing' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error).toBeDefined();
    const [one] = await paged('').then((all) => all.filter((p) => p.slug === 'stream-00002'));
    expect(one).toMatchObject({ version: '2.0', interval_s: 15, allow_fanout: ['restart'], flapping: true });
    expect(one?.maintenance).toMatchObject({ reason: 'upgrade "db"' });
  });
});

describe('the whole catalog, streamed', () => {
  it('is one JSON array equal to the paged list, in slug order', async () => {
    const res = await app.inject({ url: '/api/fed/projects' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const streamed = res.json<ProjectResponse[]>();
    expect(streamed).toHaveLength(N);
    expect(streamed).toEqual(await paged(''));
    expect(streamed.filter((p) => p.status === 'online')).toHaveLength(30);
    expect(streamed.filter((p) => p.status === 'degraded')).toHaveLength(10);
  });

  it('takes the same filters as a page', async () => {
    for (const qs of ['&status=degraded', '&status=offline', '&tag=third', '&status=online&tag=third']) {
      const res = await app.inject({ url: `/api/fed/projects?${qs.slice(1)}` });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual(await paged(qs));
    }
  });

  it('is an empty array when nothing matches', async () => {
    const res = await app.inject({ url: '/api/fed/projects?tag=nothing-has-this' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual([]);
  });

  it('still refuses a bad filter with a 400 naming it', async () => {
    const res = await app.inject({ url: '/api/fed/projects?status=bogus' });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(/status/);
  });
});

describe('compression', () => {
  it('answers brotli, gzip or plain as Accept-Encoding asks, with the same JSON', async () => {
    const plain = await app.inject({ url: '/api/fed/projects' });
    expect(plain.headers['content-encoding']).toBeUndefined();

    const br = await app.inject({ url: '/api/fed/projects', headers: { 'accept-encoding': 'gzip, br' } });
    expect(br.headers['content-encoding']).toBe('br');
    expect(JSON.parse(brotliDecompressSync(br.rawPayload).toString('utf8'))).toEqual(plain.json());
    expect(br.rawPayload.length).toBeLessThan(plain.rawPayload.length / 4);

    const gz = await app.inject({
      url: '/api/fed/projects?limit=500',
      headers: { 'accept-encoding': 'gzip' },
    });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(gz.rawPayload).toString('utf8'))).toHaveLength(500);

    const identity = await app.inject({
      url: '/api/fed/projects',
      headers: { 'accept-encoding': 'identity' },
    });
    expect(identity.headers['content-encoding']).toBeUndefined();
    expect(identity.json()).toHaveLength(N);
  });

  it('compresses a whole page in one piece, with its length, as Accept-Encoding asks', async () => {
    const url = '/api/fed/projects?limit=300';
    const plain = await app.inject({ url, headers: { 'accept-encoding': 'identity' } });
    expect(plain.headers['content-encoding']).toBeUndefined();
    const expected = plain.json<ProjectResponse[]>();
    expect(expected).toHaveLength(300);
    for (const [accept, encoding, decode] of [
      ['br;q=1, gzip;q=0.5', 'br', brotliDecompressSync],
      ['gzip', 'gzip', gunzipSync],
      ['x-gzip', 'gzip', gunzipSync],
      ['*', 'gzip', gunzipSync],
    ] as const) {
      const res = await app.inject({ url, headers: { 'accept-encoding': accept } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-encoding']).toBe(encoding);
      expect(res.headers.vary).toMatch(/accept-encoding/i);
      expect(res.headers['x-next-cursor']).toBe(plain.headers['x-next-cursor']);
      expect(Number(res.headers['content-length'])).toBe(res.rawPayload.length);
      expect(res.rawPayload.length).toBeLessThan(plain.rawPayload.length / 4);
      expect(JSON.parse(decode(res.rawPayload).toString('utf8'))).toEqual(expected);
    }
    // Nothing we speak, or the client asks for none: plain.
    for (const headers of [
      { 'accept-encoding': 'zstd' },
      { 'accept-encoding': 'br', 'x-no-compression': '1' },
    ]) {
      const res = await app.inject({ url, headers });
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.json()).toEqual(expected);
    }
    // One project is small: plain.
    const one = await app.inject({
      url: '/api/fed/projects/stream-00001',
      headers: { 'accept-encoding': 'br' },
    });
    expect(one.headers['content-encoding']).toBeUndefined();
  });

  it('leaves small responses alone', async () => {
    const res = await app.inject({ url: '/api/fed/health', headers: { 'accept-encoding': 'br' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-encoding']).toBeUndefined();
  });
});
