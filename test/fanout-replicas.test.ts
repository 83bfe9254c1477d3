import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { Counter, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { ActionResponder } from '../src/client/action-responder.ts';
import { systemClock } from '../src/clock.ts';
import { EventFeed, type FeedEvents } from '../src/events.ts';
import type { FanoutProgress } from '../src/fanout/fanout-runner.ts';
import { FanoutProgressRelay } from '../src/fanout/progress-relay.ts';
import type { FanoutRunResponse } from '../src/fanout/routes.ts';
import { fanoutSubject } from '../src/protocol/index.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { waitFor } from './helpers/wait.ts';

const ADMIN = 'admin-secret';
const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;
const admin = { authorization: `Bearer ${ADMIN}` };

type Fanout = FeedEvents['fanout'];
const describeEvent = (e: Fanout) =>
  `${String(e.status)}:${String(e.slug ?? '-')}:${String(e.outcome ?? '-')}`;

/** Resolves once everything published before it, on any connection, has reached both apps. */
async function barrier(apps: App[]): Promise<void> {
  for (const a of apps) await a.nats.connection?.flush();
  for (const a of apps) await a.nats.connection?.flush();
}

describe('fan-out progress on two instances behind one NATS', () => {
  let database: TestDatabase;
  let nats: TestNatsServer;
  let appA: App;
  let appB: App;
  let nc: NatsConnection;
  const responders: ActionResponder[] = [];
  const slugs = [uniqueSlug('replica-fan'), uniqueSlug('replica-fan')];

  beforeAll(async () => {
    database = await createPostgresDatabase();
    nats = await startNatsServer();
    const env = { DATABASE_URL: database.url, NATS_URL: nats.url, FED_ADMIN_TOKEN: ADMIN };
    appA = await buildTestApp(env);
    appB = await buildTestApp(env);
    await waitFor(() => appA.nats.connected && appB.nats.connected, { what: 'both instances on NATS' });
    nc = await connect({ servers: nats.url });
    for (const slug of slugs) {
      const res = await appA.inject({
        method: 'POST',
        url: '/api/fed/projects',
        headers: admin,
        payload: {
          slug,
          name: slug,
          hub_url: 'http://127.0.0.1:9000',
          mesh_namespace: `ns.${slug}`,
          allow_fanout: ['audit'],
        },
      });
      expect(res.statusCode, res.body).toBe(201);
      await appA.catalog.updateHeartbeat(slug);
      const r = new ActionResponder({ nc, slug, meshNamespace: `ns.${slug}`, allowed: ['audit'] });
      r.onAction('audit', () => ({ findings: slug.length }));
      r.start();
      responders.push(r);
    }
    await nc.flush();
  });

  afterAll(async () => {
    await Promise.all(responders.map((r) => r.stop()));
    await nc?.close();
    await Promise.all([appA?.close(), appB?.close()]);
    await nats?.destroy();
    await database?.drop();
  });

  it("shows a run started on A to B's clients, and to A's, each event exactly once", async () => {
    const seen: Record<'A' | 'B', Fanout[]> = { A: [], B: [] };
    const offA = appA.feed.on('fanout', (e) => seen.A.push(e));
    const offB = appB.feed.on('fanout', (e) => seen.B.push(e));
    try {
      const res = await appA.inject({
        method: 'POST',
        url: '/api/fed/actions',
        headers: admin,
        payload: { action: 'audit', targets: { slugs }, timeout_ms: 10_000 },
      });
      expect(res.statusCode, res.body).toBe(202);
      const id = (res.json() as FanoutRunResponse).id;
      const mine = (events: Fanout[]) => events.filter((e) => e.id === id);
      await waitFor(
        () => mine(seen.A).some((e) => e.status === 'done') && mine(seen.B).some((e) => e.status === 'done'),
        { what: 'the done event on both instances' },
      );
      await barrier([appA, appB]);

      const want = ['running:-:-', ...slugs.map((s) => `running:${s}:ok`), 'done:-:-'].sort();
      for (const name of ['A', 'B'] as const) {
        const events = mine(seen[name]);
        expect(events.map(describeEvent).sort(), `events on ${name}`).toEqual(want);
        expect(events[0], `first event on ${name}`).toMatchObject({
          status: 'running',
          counts: { pending: 2 },
        });
        expect(events.at(-1), `last event on ${name}`).toMatchObject({
          status: 'done',
          counts: { ok: 2, pending: 0 },
        });
      }
      // One publisher, one connection: both instances see the same events in the same order.
      expect(mine(seen.B)).toEqual(mine(seen.A));
    } finally {
      offA();
      offB();
    }
  });

  it('drops malformed progress from NATS, counts it by reason and keeps relaying', async () => {
    const seen: Fanout[] = [];
    const off = appB.feed.on('fanout', (e) => seen.push(e));
    const marker = `marker-${uniqueSlug()}`;
    try {
      const subject = fanoutSubject('bogus');
      nc.publish(subject, 'not json {');
      nc.publish(subject, '[1,2]');
      nc.publish(subject, 'null');
      nc.publish(subject, '{"id":42,"status":"running"}');
      nc.publish(subject, '{"id":"","status":"running"}');
      nc.publish(fanoutSubject(marker), JSON.stringify({ id: marker, status: 'done' }));
      // Same publisher: the marker arrives after every malformed message has been handled.
      await waitFor(() => seen.some((e) => e.id === marker), {
        what: 'the valid message after the bad ones',
      });
      expect(seen).toEqual([{ id: marker, status: 'done' }]);

      const metrics = await appB.inject({ method: 'GET', url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toMatch(/federation_fanout_progress_rejected_total\{reason="invalid_json"\} 1\b/);
      expect(metrics.body).toMatch(/federation_fanout_progress_rejected_total\{reason="invalid_event"\} 4\b/);
      expect(appB.nats.connected).toBe(true);
    } finally {
      off();
    }
  });

  describe('FanoutProgressRelay on a real connection', () => {
    const progress = (id: string): FanoutProgress => ({
      id,
      action: 'audit',
      status: 'running',
      counts: { ok: 0, error: 0, timeout: 0, not_allowed: 0, offline: 0, pending: 1 },
    });
    const rejected = () =>
      new Counter({ name: 'rejected_total', help: 'x', labelNames: ['reason'], registers: [new Registry()] });

    it("shows its own events once, at once (noEcho), and every other replica's from NATS", async () => {
      // As src/nats.ts connects: what this connection publishes never comes back to it.
      const own = await connect({ servers: nats.url, noEcho: true });
      const other = await connect({ servers: nats.url });
      const feed = new EventFeed();
      const seen: Fanout[] = [];
      feed.on('fanout', (e) => seen.push(e));
      const relay = new FanoutProgressRelay({
        nats: { onConnect: (fn) => void fn(own), connection: own },
        feed,
        log,
        clock: systemClock,
        rejected: rejected(),
      });
      relay.start();
      await own.flush();

      const mine = `mine-${uniqueSlug()}`;
      relay.publish(progress(mine));
      expect(seen.map((e) => e.id)).toEqual([mine]);
      const theirs = `theirs-${uniqueSlug()}`;
      other.publish(fanoutSubject(theirs), JSON.stringify(progress(theirs)));
      await waitFor(() => seen.length === 2, { what: "the other replica's event from NATS" });
      // Ours was published before theirs on the same server: had it come back, it would be here by now.
      await own.flush();
      expect(seen.map((e) => e.id)).toEqual([mine, theirs]);

      // NATS dropped mid-run: publish throws on the closed connection, the local clients still see it.
      await own.close();
      const after = `after-${uniqueSlug()}`;
      relay.publish(progress(after));
      expect(seen.map((e) => e.id)).toEqual([mine, theirs, after]);
      relay.stop();
      await other.close();
    });

    it('shows an event locally when it is not subscribed on the connection it publishes on', async () => {
      const own = await connect({ servers: nats.url });
      const listener = await connect({ servers: nats.url });
      try {
        const remote: string[] = [];
        listener.subscribe(fanoutSubject('>'), {
          callback: (_e, m) => void remote.push(m.json<Fanout>().id),
        });
        await listener.flush();
        const feed = new EventFeed();
        const seen: Fanout[] = [];
        feed.on('fanout', (e) => seen.push(e));
        const relay = new FanoutProgressRelay({
          nats: { onConnect: () => {}, connection: own },
          feed,
          log,
          clock: systemClock,
          rejected: rejected(),
        });
        relay.start();
        const id = `unsubscribed-${uniqueSlug()}`;
        relay.publish(progress(id));
        expect(seen.map((e) => e.id)).toEqual([id]);
        await waitFor(() => remote.includes(id), { what: 'the event on NATS for the other replicas' });
      } finally {
        await own.close();
        await listener.close();
      }
    });
  });
});
