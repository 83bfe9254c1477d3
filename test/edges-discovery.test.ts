import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { presenceSubject } from '../src/protocol/index.ts';
import { type AppWithOwnNats, buildAppWithOwnNats, uniqueSlug } from './helpers/app.ts';
import { waitFor } from './helpers/wait.ts';

interface EdgeBody {
  from: string;
  to: string;
  kind: string;
  strength: number;
  source: string;
  last_seen_at: string;
}

const heartbeat = (slug: string, integrations: unknown[]) => ({
  project_slug: slug,
  hub_url: `http://${slug}.local:8000`,
  mesh_namespace: `hub.${slug}`,
  timestamp: new Date().toISOString(),
  version: '1.2.3',
  integrations,
});

/** Edges discovered end to end: a real heartbeat (NATS or HTTP) → presence → the edges sink → the API. */
describe('edges discovered from heartbeats', () => {
  let own: AppWithOwnNats;
  let app: App;
  let nc: NatsConnection;

  beforeAll(async () => {
    own = await buildAppWithOwnNats();
    ({ app, nc } = own);
  });
  afterAll(async () => {
    await own?.close();
  });

  const edgesOf = async (slug: string): Promise<EdgeBody[]> =>
    (await app.inject({ method: 'GET', url: `/api/fed/edges?project=${slug}` })).json<EdgeBody[]>();
  const skippedUnknown = async (): Promise<number> => {
    const m = await app.metricsRegistry.getSingleMetric('federation_edges_discovery_skipped_total')?.get();
    return m?.values.find((v) => v.labels.reason === 'unknown_project')?.value ?? 0;
  };

  it('stores the integrations of a heartbeat published on NATS, and prunes them when the list changes', async () => {
    const [a, b, c] = [uniqueSlug('na'), uniqueSlug('nb'), uniqueSlug('nc')];
    await waitFor(() => app.nats.connected, { what: 'the service to connect to NATS' });
    // b and c exist because their own heartbeats auto-register them. Heartbeats are idempotent, so
    // they are re-sent until seen: the service's subscription may reach the server after our first one.
    await waitFor(
      async () => {
        for (const s of [b, c]) nc.publish(presenceSubject(s), JSON.stringify(heartbeat(s, [])));
        return (await app.catalog.getProjectsBySlugs([b, c])).length === 2;
      },
      { what: 'b and c to be registered by their heartbeats', intervalMs: 100 },
    );
    const unknownBefore = await skippedUnknown();

    nc.publish(
      presenceSubject(a),
      JSON.stringify(
        heartbeat(a, [
          { to: b, kind: 'api', strength: 0.7 },
          { to: c, kind: 'queue' },
          { to: uniqueSlug('ghost'), kind: 'api' },
        ]),
      ),
    );
    const edges = await waitFor(
      async () => {
        const list = await edgesOf(a);
        return list.length === 2 ? list : undefined;
      },
      { what: 'two discovered edges of a' },
    );
    expect(edges.map((e) => `${e.from}>${e.to}:${e.kind}:${e.source}:${e.strength}`).sort()).toEqual(
      [`${a}>${b}:api:discovered:0.7`, `${a}>${c}:queue:discovered:0.5`].sort(),
    );
    await waitFor(async () => (await skippedUnknown()) === unknownBefore + 1, {
      what: 'the integration to an unknown project to be counted',
    });

    // a stops integrating with c: the discovered edge goes, the other stays.
    nc.publish(presenceSubject(a), JSON.stringify(heartbeat(a, [{ to: b, kind: 'api', strength: 0.7 }])));
    await waitFor(async () => (await edgesOf(a)).length === 1, { what: 'a>c to be pruned' });
    expect((await edgesOf(a))[0]).toMatchObject({ to: b, kind: 'api', source: 'discovered' });
  });

  it('stores the integrations of a heartbeat posted over HTTP', async () => {
    const [a, b] = [uniqueSlug('ha'), uniqueSlug('hb')];
    const post = (body: unknown) =>
      app.inject({ method: 'POST', url: '/api/fed/heartbeats', payload: body as object });
    expect((await post(heartbeat(b, []))).statusCode).toBe(202);
    await waitFor(async () => (await app.catalog.findProject(b)) !== undefined, { what: 'b registered' });
    expect((await post(heartbeat(a, [{ to: b, kind: 'shared-schema', strength: 0.4 }]))).statusCode).toBe(
      202,
    );
    const [edge] = await waitFor(
      async () => {
        const list = await edgesOf(a);
        return list.length === 1 ? list : undefined;
      },
      { what: 'the edge a>b from an HTTP heartbeat' },
    );
    expect(edge).toMatchObject({
      from: a,
      to: b,
      kind: 'shared-schema',
      strength: 0.4,
      source: 'discovered',
    });

    const graph = (await app.inject({ method: 'GET', url: '/api/fed/graph' })).json<{
      nodes: Array<{ slug: string; status: string }>;
      edges: EdgeBody[];
    }>();
    expect(graph.nodes.find((n) => n.slug === a)?.status).toBe('online');
    expect(graph.edges.some((e) => e.from === a && e.to === b)).toBe(true);
  });
});
