import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp } from './helpers/app.ts';
import { waitFor } from './helpers/wait.ts';

/**
 * The grouped ecosystem graph and the problems list, on the real app (in-memory PGlite, no NATS).
 * Six projects in three teams (first tag) and two namespace prefixes:
 *   team-a: a1 (online), a2 (degraded)   ns eu
 *   team-b: b1 (online), b2 (offline)    ns eu / us
 *   untagged: c1 (offline), c2 (online)  ns us
 */
describe('GET /api/fed/graph?group_by and /api/fed/problems', () => {
  let app: App;
  const get = async (url: string) => {
    const res = await app.inject({ method: 'GET', url });
    return { status: res.statusCode, body: res.json() };
  };
  const post = async (url: string, payload: unknown) => {
    const res = await app.inject({ method: 'POST', url, payload: payload as object });
    if (res.statusCode >= 300) throw new Error(`${url} → ${res.statusCode} ${res.body}`);
  };
  const project = (slug: string, tags: string[], ns: string) =>
    post('/api/fed/projects', {
      slug,
      name: `Project ${slug.toUpperCase()}`,
      hub_url: `http://127.0.0.1:9/${slug}`,
      mesh_namespace: `${ns}.${slug}`,
      tags,
    });
  const beat = (slug: string, ns: string, health: 'ok' | 'degraded' = 'ok') =>
    post('/api/fed/heartbeats', {
      project_slug: slug,
      hub_url: `http://127.0.0.1:9/${slug}`,
      mesh_namespace: `${ns}.${slug}`,
      timestamp: new Date().toISOString(),
      health,
    });

  beforeAll(async () => {
    app = await buildTestApp({ FED_GRAPH_MAX_NODES: '5' });
    await project('a1', ['team-a', 'python'], 'eu');
    await project('a2', ['team-a'], 'eu');
    await project('b1', ['team-b'], 'eu');
    await project('b2', ['team-b', 'team-a'], 'us');
    await project('c1', [], 'us');
    await project('c2', [], 'us');
    await beat('a1', 'eu');
    await beat('a2', 'eu', 'degraded');
    await beat('b1', 'eu');
    await beat('c2', 'us');
    // HTTP heartbeats are accepted (202) into the writer's buffer: the state to test is once written.
    await app.heartbeatWriter.flush();
    for (const [from, to, kind] of [
      ['a1', 'a2', 'api'],
      ['a1', 'b1', 'api'],
      ['a2', 'b1', 'queue'],
      ['a2', 'b2', 'api'],
      ['b1', 'c1', 'event'],
      ['c2', 'a1', 'library'],
    ]) {
      await post('/api/fed/edges', { from, to, kind });
    }
  });
  afterAll(async () => {
    await app?.close();
  });

  it('refuses the whole graph past FED_GRAPH_MAX_NODES with a 400 that points to group_by', async () => {
    const { status, body } = await get('/api/fed/graph');
    expect(status).toBe(400);
    expect(body.error).toBe('graph_too_large');
    expect(body.message).toMatch(/more than 5 projects.*group_by=tag\|namespace\|status.*&group=<key>/);
  });

  it('groups by first tag: counts per live status and bundled edges between groups', async () => {
    const { status, body } = await get('/api/fed/graph?group_by=tag');
    expect(status).toBe(200);
    expect(body.group_by).toBe('tag');
    const groups = Object.fromEntries(body.groups.map((g: { key: string }) => [g.key, g])) as Record<
      string,
      { count: number; status_counts: unknown; internal_edges: number }
    >;
    expect(Object.keys(groups).sort()).toEqual(['', 'team-a', 'team-b']);
    expect(groups['team-a']).toEqual({
      key: 'team-a',
      count: 2,
      status_counts: { online: 1, degraded: 1, offline: 0 },
      internal_edges: 1,
    });
    expect(groups['team-b']?.status_counts).toEqual({ online: 1, degraded: 0, offline: 1 });
    expect(groups['']?.status_counts).toEqual({ online: 1, degraded: 0, offline: 1 });
    expect(body.edges).toEqual([
      { from: '', to: 'team-a', count: 1, kinds: ['library'] },
      { from: 'team-a', to: 'team-b', count: 3, kinds: ['api', 'queue'] },
      { from: 'team-b', to: '', count: 1, kinds: ['event'] },
    ]);
    // Nothing but groups and edges travels: no project is in the answer.
    expect(JSON.stringify(body)).not.toContain('Project A1');
  });

  it('groups by namespace prefix and by status', async () => {
    const ns = (await get('/api/fed/graph?group_by=namespace')).body;
    expect(ns.groups.map((g: { key: string; count: number }) => [g.key, g.count])).toEqual([
      ['eu', 3],
      ['us', 3],
    ]);
    const byStatus = (await get('/api/fed/graph?group_by=status')).body;
    expect(
      Object.fromEntries(byStatus.groups.map((g: { key: string; count: number }) => [g.key, g.count])),
    ).toEqual({ online: 3, degraded: 1, offline: 2 });
    const online = byStatus.groups.find((g: { key: string }) => g.key === 'online');
    expect(online.status_counts).toEqual({ online: 3, degraded: 0, offline: 0 });
  });

  it('opens one group: its projects, the edges among them and the edges leaving it', async () => {
    const { status, body } = await get('/api/fed/graph?group_by=tag&group=team-a');
    expect(status).toBe(200);
    expect(body.nodes.map((n: { slug: string; status: string }) => [n.slug, n.status])).toEqual([
      ['a1', 'online'],
      ['a2', 'degraded'],
    ]);
    expect(body.nodes[0]).toHaveProperty('metrics');
    expect(body.nodes[0]).toHaveProperty('heartbeat_age_s');
    expect(body.edges.map((e: { from: string; to: string }) => `${e.from}>${e.to}`)).toEqual(['a1>a2']);
    expect(body.external_edges).toEqual([
      { project: 'a1', group: '', direction: 'in', count: 1, kinds: ['library'] },
      { project: 'a1', group: 'team-b', direction: 'out', count: 1, kinds: ['api'] },
      { project: 'a2', group: 'team-b', direction: 'out', count: 2, kinds: ['api', 'queue'] },
    ]);

    const untagged = (await get('/api/fed/graph?group_by=tag&group=')).body;
    expect(untagged.nodes.map((n: { slug: string }) => n.slug)).toEqual(['c1', 'c2']);
    const unknown = (await get('/api/fed/graph?group_by=tag&group=nobody')).body;
    expect(unknown).toMatchObject({ nodes: [], edges: [], external_edges: [] });
  });

  it('names the field for a bad group_by and for a group without group_by', async () => {
    const bad = await get('/api/fed/graph?group_by=colour');
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/group_by/);
    const lone = await get('/api/fed/graph?group=team-a');
    expect(lone.status).toBe(400);
    expect(lone.body).toMatchObject({ error: 'bad_request', details: { field: 'group_by' } });
  });

  it('refuses a group larger than FED_GRAPH_MAX_NODES', async () => {
    const byStatusApp = await buildTestApp({ FED_GRAPH_MAX_NODES: '1' });
    try {
      for (const s of ['x1', 'x2']) {
        await byStatusApp.inject({
          method: 'POST',
          url: '/api/fed/projects',
          payload: { slug: s, name: s, hub_url: 'http://127.0.0.1:9/', mesh_namespace: `hub.${s}` },
        });
      }
      const res = await byStatusApp.inject({ url: '/api/fed/graph?group_by=status&group=offline' });
      expect(res.statusCode).toBe(400);
      expect(res.json().message).toMatch(/group "offline" \(by status\) has more than 1 projects/);
    } finally {
      await byStatusApp.close();
    }
  });

  it('lists problems, the most recent change first, with the reason and each group key', async () => {
    const first = await waitFor(
      async () => {
        const { body } = await get('/api/fed/problems');
        return body.problems.find((p: { slug: string }) => p.slug === 'a2')?.reason ===
          'project reported health degraded'
          ? body
          : undefined;
      },
      { what: 'the degraded transition of a2 recorded with its reason' },
    );
    expect(first.counts).toEqual({ online: 3, degraded: 1, offline: 2 });
    expect(first.problems.map((p: { slug: string }) => p.slug)).toEqual(['a2', 'c1', 'b2']);
    expect(first.problems[0]).toMatchObject({
      name: 'Project A2',
      status: 'degraded',
      groups: { tag: 'team-a', namespace: 'eu', status: 'degraded' },
    });
    expect(first.problems[1]).toMatchObject({
      status: 'offline',
      reason: 'no heartbeat received yet',
      last_heartbeat_at: null,
      groups: { tag: '', namespace: 'us', status: 'offline' },
    });

    // A heartbeat takes b2 off the list; a degraded report puts c1's change on top.
    await beat('b2', 'us');
    await beat('c1', 'us', 'degraded');
    const next = await waitFor(
      async () => {
        const { body } = await get('/api/fed/problems?limit=1');
        return body.problems[0]?.slug === 'c1' && body.counts.offline === 0 ? body : undefined;
      },
      { what: 'c1 on top of the problems' },
    );
    expect(next.problems).toHaveLength(1);
    expect(next.counts).toEqual({ online: 4, degraded: 2, offline: 0 });
    expect((await get('/api/fed/problems?limit=0')).status).toBe(400);
  });
});
