import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { query } from '../src/db/connection.ts';
import { EDGE_KINDS } from '../src/protocol/index.ts';
import { type AppWithOwnNats, buildAppWithOwnNats } from './helpers/app.ts';
import { type AlmostValid, almostValid, brokenJson, isoNow, type Path, wrongValue } from './helpers/fuzz.ts';

/**
 * Every POST and DELETE body and every query string, through app.inject, mostly almost valid. The
 * invariants: no 5xx, no crash or unhandled rejection, every refusal a 4xx JSON error naming the
 * field changed, and nothing stored from a refused input. Case counts add up (with the decoders'
 * fuzz tests) to more than 10,000 per run; a failure prints the seed and the shrunk case.
 */
const RUNS = {
  projects: 1800,
  heartbeats: 1800,
  edges: 900,
  actions: 600,
  deletes: 600,
  queries: 1800,
  notifiers: 600,
};

const hex = fc.stringMatching(/^[a-f0-9]{10}$/);
const tags = fc.array(fc.constantFrom('core', 'api', 'worker', 'edge'), { maxLength: 3 });
const KNOWN = ['fz-known-a', 'fz-known-b', 'fz-known-c'];

const projectArb = fc.record(
  {
    slug: hex.map((h) => `fz-p-${h}`),
    name: fc.string({ minLength: 1, maxLength: 30 }),
    hub_url: fc.constantFrom('http://127.0.0.1:9000', 'https://x.example/hub'),
    mesh_namespace: fc.constantFrom('hub.fz', 'ns.a.b', 'x'),
    tags,
    allow_fanout: fc.array(fc.constantFrom('audit', 'reindex'), { maxLength: 2 }),
  },
  { requiredKeys: ['slug', 'name', 'hub_url', 'mesh_namespace'] },
);

const heartbeatArb = fc.record(
  {
    project_slug: hex.map((h) => `fz-h-${h}`),
    hub_url: fc.constant('http://127.0.0.1:9000'),
    mesh_namespace: fc.constant('hub.fz'),
    timestamp: fc.constant(isoNow()),
    version: fc.constantFrom('1.0.0', '2.1'),
    name: fc.string({ minLength: 1, maxLength: 20 }),
    tags,
    health: fc.constantFrom('ok', 'degraded'),
    interval_s: fc.double({ min: 0.1, max: 3600, noNaN: true }),
    integrations: fc.array(
      fc.record({
        to: fc.constantFrom(...KNOWN),
        kind: fc.constantFrom(...EDGE_KINDS),
        strength: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: ['project_slug', 'hub_url', 'mesh_namespace', 'timestamp'] },
);

// Two different known projects: an edge from a project to itself is refused, whatever field changed.
const edgeArb = fc
  .tuple(fc.nat(KNOWN.length - 1), fc.integer({ min: 1, max: KNOWN.length - 1 }))
  .chain(([i, d]) =>
    fc.record(
      {
        from: fc.constant(KNOWN[i] as string),
        to: fc.constant(KNOWN[(i + d) % KNOWN.length] as string),
        kind: fc.constantFrom(...EDGE_KINDS),
        strength: fc.double({ min: 0, max: 1, noNaN: true }),
        details: fc.dictionary(fc.constantFrom('endpoint', 'queue'), fc.string({ maxLength: 10 }), {
          maxKeys: 2,
        }),
      },
      { requiredKeys: ['from', 'to', 'kind'] },
    ),
  );

// Literal public addresses only: a name would make every case a DNS lookup.
const notifierArb = fc.record(
  {
    name: hex.map((h) => `fz-n-${h}`),
    url: fc.constantFrom('https://93.184.215.14/hook', 'http://8.8.8.8:8080/x/y'),
    secret: fc.constantFrom('fz-secret-0123456789', 'another-long-secret-value'),
    format: fc.constantFrom('json', 'slack'),
    filters: fc.record(
      {
        to: fc.subarray(['online', 'degraded', 'offline']),
        tags,
        slugs: fc.subarray(KNOWN),
        include_planned: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: ['name', 'url'] },
);

const actionArb = fc.record(
  {
    action: fc.constantFrom('audit', 'reindex'),
    targets: fc.oneof(
      fc.record({ slugs: fc.subarray(KNOWN, { minLength: 1 }) }),
      fc.record({ tags: fc.constant(['core']) }),
      fc.record({ status: fc.constantFrom('online', 'offline') }),
      fc.record({ all: fc.constant(true) }),
    ),
    params: fc.jsonValue({ maxDepth: 2 }),
    timeout_ms: fc.integer({ min: 1, max: 30 }),
    include_offline: fc.boolean(),
  },
  { requiredKeys: ['action', 'targets'] },
);

/** The name a refusal must mention: the last key of the changed path (the array's key for an index). */
function fieldName(path: Path): string | undefined {
  for (let i = path.length - 1; i >= 0; i--) if (typeof path[i] === 'string') return path[i] as string;
  return undefined;
}

function checkAnswer(
  res: LightMyRequestResponse,
  input: AlmostValid<unknown> | undefined,
  what: string,
): boolean {
  const where = `${what} → ${res.statusCode} ${res.body.slice(0, 300)}`;
  expect(res.statusCode, where).toBeLessThan(500);
  if (res.statusCode < 400) return true;
  expect(String(res.headers['content-type']), where).toContain('application/json');
  const body = res.json() as { error?: unknown; message?: unknown; details?: unknown };
  expect(typeof body.error, where).toBe('string');
  expect(typeof body.message, where).toBe('string');
  // A body that does not parse (or would poison a prototype) is refused as a whole: the body is the field.
  if ((body.details as Array<{ field?: string }> | undefined)?.[0]?.field === 'body') {
    expect(body.error, where).toBe('invalid_json');
    return false;
  }
  if (res.statusCode === 400 && input?.mutation) {
    const name = input.mutation.kind === 'extra' ? input.mutation.key : fieldName(input.path);
    // A refusal names the field it refuses: the one changed, or (a removed or replaced object) its parent.
    const named = input.path.filter((k): k is string => typeof k === 'string');
    const text = `${body.message} ${JSON.stringify(body.details ?? '')}`;
    const candidates = [name, ...named].filter((n): n is string => n !== undefined);
    if (candidates.length > 0) {
      expect(
        candidates.some((n) => text.includes(n)),
        `${where}: names none of ${candidates.join(', ')}`,
      ).toBe(true);
    }
  }
  return false;
}

describe('fuzzing the HTTP API (fast-check, almost-valid input)', () => {
  let env: AppWithOwnNats;
  let app: App;
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    env = await buildAppWithOwnNats({ FED_RATE_LIMIT_WRITES: '0', FED_RATE_LIMIT_AUTH_FAILURES: '0' });
    app = env.app;
    for (const slug of KNOWN) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: {
          slug,
          name: slug,
          hub_url: 'http://127.0.0.1:9',
          mesh_namespace: `ns.${slug}`,
          tags: ['core'],
          allow_fanout: ['audit'],
        },
      });
      expect(res.statusCode).toBe(201);
    }
  });

  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    await env?.close();
    expect(unhandled).toEqual([]);
  });

  const slugs = async (prefix: string) =>
    new Set(
      (
        await query<{ slug: string }>(app.db, sql`select slug from projects where slug like ${`${prefix}%`}`)
      ).map((r) => r.slug),
    );

  // First, while the catalog is small: the graph and list answers grow with every project stored.
  it(`query strings of every GET route: ${RUNS.queries} cases`, async () => {
    const routes: Array<{ url: string; query: Record<string, string> }> = [
      { url: '/api/fed/projects', query: { status: 'online', tag: 'core', limit: '10' } },
      { url: '/api/fed/edges', query: { project: KNOWN[0] as string, kind: 'api', source: 'api' } },
      { url: '/api/fed/actions', query: { limit: '5', action: 'audit' } },
      { url: `/api/fed/projects/${KNOWN[0]}/history`, query: { limit: '10' } },
      { url: `/api/fed/metrics/${KNOWN[0]}`, query: { history: 'true' } },
      { url: '/api/fed/graph', query: { group_by: 'tag' } },
      { url: '/api/fed/notifications', query: { status: 'pending', limit: '10', notifier: '1', slug: 'a' } },
    ];
    const queryArb = fc.record({
      route: fc.constantFrom(...routes),
      pick: fc.nat(),
      value: fc.oneof(
        wrongValue.map((v) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''))),
        fc.constantFrom('', '0', '-1', '1e3', '1000001', 'ONLINE', 'online,offline', '%', '\u0000'),
      ),
      repeat: fc.boolean(),
      cursor: fc.oneof(
        fc.constant(undefined),
        fc.string({ maxLength: 300 }),
        fc.base64String({ maxLength: 80 }),
      ),
    });
    await fc.assert(
      fc.asyncProperty(queryArb, async ({ route, pick, value, repeat, cursor }) => {
        const keys = Object.keys(route.query);
        const key = keys[pick % keys.length] as string;
        const params = new URLSearchParams(route.query);
        params.set(key, value);
        if (repeat) params.append(key, value);
        if (cursor !== undefined) params.set('cursor', cursor);
        const url = `${route.url}?${params}`;
        const res = await app.inject(url);
        checkAnswer(res, undefined, `GET ${url}`);
        if (res.statusCode === 400) {
          const body = res.json() as { message: string; details?: unknown };
          const text = `${body.message} ${JSON.stringify(body.details ?? '')}`;
          expect(
            text.includes(key) || text.includes('cursor') || text.includes('querystring'),
            `GET ${url}: ${text}`,
          ).toBe(true);
        }
      }),
      { numRuns: RUNS.queries },
    );
  }, 180_000);

  it(`POST /api/fed/projects: ${RUNS.projects} cases, nothing stored when refused`, async () => {
    const accepted = new Set<string>();
    const refused = new Set<string>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 9, arbitrary: almostValid(projectArb) },
          { weight: 1, arbitrary: brokenJson(projectArb) },
        ),
        async (input) => {
          const raw = typeof input === 'string';
          const res = await app.inject({
            method: 'POST',
            url: '/api/fed/projects',
            headers: { 'content-type': 'application/json' },
            payload: raw ? input : JSON.stringify(input.value),
          });
          const ok = checkAnswer(res, raw ? undefined : input, 'POST /api/fed/projects');
          const slug = raw ? undefined : (input.value as { slug?: unknown }).slug;
          if (typeof slug === 'string') (ok ? accepted : refused).add(slug);
        },
      ),
      { numRuns: RUNS.projects },
    );
    const stored = await slugs('');
    for (const s of refused)
      if (!accepted.has(s)) expect(stored.has(s), `refused ${JSON.stringify(s)} was stored`).toBe(false);
    for (const s of accepted) expect(stored.has(s)).toBe(true);
    expect(accepted.size).toBeGreaterThan(50);
  }, 180_000);

  it(`POST /api/fed/heartbeats: ${RUNS.heartbeats} cases, no project registered from a refused one`, async () => {
    const accepted = new Set<string>();
    const refused = new Set<string>();
    const bodies = new Map<string, unknown>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 9, arbitrary: almostValid(heartbeatArb) },
          { weight: 1, arbitrary: brokenJson(heartbeatArb) },
        ),
        async (input) => {
          const raw = typeof input === 'string';
          const res = await app.inject({
            method: 'POST',
            url: '/api/fed/heartbeats',
            headers: { 'content-type': 'application/json' },
            payload: raw ? input : JSON.stringify(input.value),
          });
          const ok = checkAnswer(res, raw ? undefined : input, 'POST /api/fed/heartbeats');
          if (ok) expect(res.statusCode).toBe(202);
          const slug = raw ? undefined : (input.value as { project_slug?: unknown }).project_slug;
          if (typeof slug === 'string') (ok ? accepted : refused).add(slug);
          if (ok && typeof slug === 'string') bodies.set(slug, input);
        },
      ),
      { numRuns: RUNS.heartbeats },
    );
    await app.heartbeatWriter.flush();
    const stored = await slugs('');
    for (const s of refused)
      if (!accepted.has(s)) expect(stored.has(s), `refused ${JSON.stringify(s)} was registered`).toBe(false);
    for (const s of accepted)
      expect(stored.has(s), `accepted ${JSON.stringify(bodies.get(s))} missing`).toBe(true);
    expect(accepted.size).toBeGreaterThan(50);
  }, 180_000);

  it(`POST /api/fed/edges: ${RUNS.edges} cases, only accepted edges stored`, async () => {
    const accepted = new Set<string>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 9, arbitrary: almostValid(edgeArb) },
          { weight: 1, arbitrary: brokenJson(edgeArb) },
        ),
        async (input) => {
          const raw = typeof input === 'string';
          const res = await app.inject({
            method: 'POST',
            url: '/api/fed/edges',
            headers: { 'content-type': 'application/json' },
            payload: raw ? input : JSON.stringify(input.value),
          });
          if (checkAnswer(res, raw ? undefined : input, 'POST /api/fed/edges')) {
            const e = res.json() as { from: string; to: string; kind: string };
            accepted.add(`${e.from}>${e.to}:${e.kind}`);
          }
        },
      ),
      { numRuns: RUNS.edges },
    );
    const rows = (await app.inject('/api/fed/edges')).json() as Array<{
      from: string;
      to: string;
      kind: string;
      source: string;
    }>;
    const stored = new Set(rows.filter((r) => r.source === 'api').map((r) => `${r.from}>${r.to}:${r.kind}`));
    expect(stored).toEqual(accepted);
    expect(accepted.size).toBeGreaterThan(3);
  }, 180_000);

  it(`POST /api/fed/notifiers: ${RUNS.notifiers} cases, stored only when accepted, the secret never echoed`, async () => {
    const accepted = new Set<string>();
    const refused = new Set<string>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 9, arbitrary: almostValid(notifierArb) },
          { weight: 1, arbitrary: brokenJson(notifierArb) },
        ),
        async (input) => {
          const raw = typeof input === 'string';
          const res = await app.inject({
            method: 'POST',
            url: '/api/fed/notifiers',
            headers: { 'content-type': 'application/json' },
            payload: raw ? input : JSON.stringify(input.value),
          });
          const ok = checkAnswer(res, raw ? undefined : input, 'POST /api/fed/notifiers');
          const value = raw ? undefined : (input.value as { name?: unknown; secret?: unknown });
          if (typeof value?.secret === 'string' && value.secret.length >= 8)
            expect(res.body.includes(value.secret), 'the secret was echoed').toBe(false);
          if (typeof value?.name === 'string') (ok ? accepted : refused).add(value.name);
        },
      ),
      { numRuns: RUNS.notifiers },
    );
    const names = new Set(
      ((await app.inject('/api/fed/notifiers')).json() as Array<{ name: string | null }>).map((n) => n.name),
    );
    for (const n of refused)
      if (!accepted.has(n)) expect(names.has(n), `refused ${n} was stored`).toBe(false);
    for (const n of accepted) expect(names.has(n)).toBe(true);
    expect(accepted.size).toBeGreaterThan(20);
  }, 180_000);

  it(`POST /api/fed/actions: ${RUNS.actions} cases, a run stored only when accepted`, async () => {
    const count = async () =>
      (await query<{ n: number }>(app.db, sql`select count(*)::int as n from fanout_runs`))[0]?.n ?? 0;
    const before = await count();
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          { weight: 9, arbitrary: almostValid(actionArb) },
          { weight: 1, arbitrary: brokenJson(actionArb) },
        ),
        async (input) => {
          const raw = typeof input === 'string';
          const res = await app.inject({
            method: 'POST',
            url: '/api/fed/actions',
            headers: { 'content-type': 'application/json' },
            payload: raw ? input : JSON.stringify(input.value),
          });
          if (checkAnswer(res, raw ? undefined : input, 'POST /api/fed/actions')) {
            expect(res.statusCode).toBe(202);
            accepted++;
          }
        },
      ),
      { numRuns: RUNS.actions },
    );
    expect(await count()).toBe(before + accepted);
    expect(accepted).toBeGreaterThan(20);
  }, 180_000);

  it(`DELETE with fuzzed parameters: ${RUNS.deletes} cases, nothing else removed`, async () => {
    const param = fc.oneof(
      wrongValue.map((v) =>
        encodeURIComponent(
          (typeof v === 'string' ? v : (JSON.stringify(v) ?? '')).replace(/\p{Cs}/gu, '\ufffd'),
        ),
      ),
      fc.constantFrom('%', '%zz', '..%2f..', '%00', '-1', '0', '99999999999999999999', '1.5', 'a'.repeat(60)),
      hex.map((h) => `fz-none-${h}`),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('projects', 'edges'), param, async (kind, p) => {
        const res = await app.inject({ method: 'DELETE', url: `/api/fed/${kind}/${p}` });
        checkAnswer(res, undefined, `DELETE /api/fed/${kind}/${p}`);
      }),
      { numRuns: RUNS.deletes },
    );
    // None of the fuzzed parameters names them: they must all still be there.
    for (const slug of KNOWN) expect((await app.inject(`/api/fed/projects/${slug}`)).statusCode).toBe(200);
  }, 180_000);
});
