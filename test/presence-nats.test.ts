import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { MAX_HEARTBEAT_BYTES, presenceSubject } from '../src/protocol/index.ts';
import { type AppWithOwnNats, buildAppWithOwnNats, buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { findProject, heartbeatPayload, metricsText, metricValue } from './helpers/presence.ts';
import { waitFor } from './helpers/wait.ts';

describe('heartbeats over NATS', () => {
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

  it('registers an unknown project from its heartbeat and shows it online (the seed integration test)', async () => {
    const slug = uniqueSlug('testproject');
    nc.publish(presenceSubject(slug), JSON.stringify(heartbeatPayload(slug, { version: '0.9.0' })));
    const project = await waitFor(
      async () => {
        const res = await app.inject('/api/fed/projects');
        const list = res.json() as Array<{ slug: string; status: string; last_heartbeat_at: string | null }>;
        return list.find((p) => p.slug === slug && p.status === 'online');
      },
      { timeoutMs: 5000, what: `${slug} to be online` },
    );
    expect(project.last_heartbeat_at).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
    expect(project).toMatchObject({ version: '0.9.0', name: slug });
  });

  it('uses the receive time, not the sender clock', async () => {
    const slug = uniqueSlug('clock');
    const before = Date.now();
    nc.publish(
      presenceSubject(slug),
      JSON.stringify(heartbeatPayload(slug, { timestamp: '1999-01-01T00:00:00Z' })),
    );
    const project = await waitFor(() => findProject(app, slug), { timeoutMs: 5000 });
    expect(new Date(project.last_heartbeat_at as string).getTime()).toBeGreaterThanOrEqual(before - 5);
    expect(project.status).toBe('online');
  });

  it('drops and counts spoofed, non-JSON, oversize and invalid heartbeats, and goes on', async () => {
    const victim = uniqueSlug('victim');
    const attacker = uniqueSlug('attacker');
    const sent = {
      subject_mismatch: () => nc.publish(presenceSubject(victim), JSON.stringify(heartbeatPayload(attacker))),
      not_json: () => nc.publish(presenceSubject(victim), 'this is not json {'),
      oversize: () =>
        nc.publish(
          presenceSubject(victim),
          JSON.stringify(heartbeatPayload(victim, { padding: 'x'.repeat(MAX_HEARTBEAT_BYTES) })),
        ),
      invalid: () => {
        const { project_slug: _, ...missing } = heartbeatPayload(victim);
        nc.publish(presenceSubject(victim), JSON.stringify(missing));
        nc.publish(presenceSubject('BAD_SLUG'), JSON.stringify(heartbeatPayload('BAD_SLUG')));
        nc.publish(presenceSubject(victim), JSON.stringify([1, 2, 3]));
      },
    };
    for (const send of Object.values(sent)) send();
    const expected = { subject_mismatch: 1, not_json: 1, oversize: 1, invalid: 3 };
    await waitFor(
      async () => {
        const text = await metricsText(app);
        return Object.entries(expected).every(
          ([reason, n]) =>
            metricValue(text, 'federation_heartbeats_rejected_total', `{reason="${reason}"}`) === n,
        );
      },
      { timeoutMs: 5000, what: 'every bad heartbeat to be counted by reason' },
    );
    const good = uniqueSlug('good');
    nc.publish(presenceSubject(good), JSON.stringify(heartbeatPayload(good)));
    await waitFor(async () => (await findProject(app, good))?.status === 'online', { timeoutMs: 5000 });
    expect(await findProject(app, victim)).toBeUndefined();
    expect(await findProject(app, attacker)).toBeUndefined();
    const text = await metricsText(app);
    expect(
      metricValue(text, 'federation_heartbeats_received_total', '{transport="nats"}'),
    ).toBeGreaterThanOrEqual(9);
  });

  it('drops and counts heartbeats with text the database cannot store; the writes around them go on', async () => {
    const poisoned = uniqueSlug('nul');
    const neighbour = uniqueSlug('neighbour');
    const invalid = async () =>
      metricValue(await metricsText(app), 'federation_heartbeats_rejected_total', '{reason="invalid"}');
    const before = await invalid();
    nc.publish(
      presenceSubject(poisoned),
      JSON.stringify(heartbeatPayload(poisoned, { version: '1.0\u0000' })),
    );
    nc.publish(
      presenceSubject(poisoned),
      JSON.stringify(heartbeatPayload(poisoned, { tags: ['ok', '\ud800'] })),
    );
    nc.publish(presenceSubject(neighbour), JSON.stringify(heartbeatPayload(neighbour)));
    await waitFor(async () => (await invalid()) === before + 2, {
      timeoutMs: 5000,
      what: 'both unstorable heartbeats to be counted as invalid',
    });
    await waitFor(async () => (await findProject(app, neighbour))?.status === 'online', { timeoutMs: 5000 });
    expect(await findProject(app, poisoned)).toBeUndefined();

    nc.publish(presenceSubject(poisoned), JSON.stringify(heartbeatPayload(poisoned, { version: '1.0.1' })));
    const project = await waitFor(
      async () => {
        const p = await findProject(app, poisoned);
        return p?.status === 'online' ? p : undefined;
      },
      { timeoutMs: 5000, what: 'the next good heartbeat to be written' },
    );
    expect(project.version).toBe('1.0.1');
    expect((await app.inject('/api/fed/health')).json().checks.heartbeat_writer).toMatchObject({
      status: 'ok',
      pending: 0,
    });
  });

  it('reports the NATS connection in health', async () => {
    const health = (await app.inject('/api/fed/health')).json();
    expect(health.checks.nats).toMatchObject({ status: 'ok', state: 'connected' });
    expect(health.checks.presence.status).toBe('ok');
  });
});

describe('NATS restarted mid-test', () => {
  let nats: TestNatsServer;
  let app: App;
  let publisher: NatsConnection;
  let beat: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    nats = await startNatsServer();
    app = await buildTestApp({
      NATS_URL: nats.url,
      FED_DEGRADED_AFTER_S: '1',
      FED_OFFLINE_AFTER_S: '2',
      FED_SWEEP_INTERVAL_S: '0.1',
    });
    publisher = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  });
  afterAll(async () => {
    if (beat) clearInterval(beat);
    await publisher?.close();
    await app?.close();
    await nats?.destroy();
  });

  it('reconnects, keeps processing heartbeats, and flips no project offline because of the outage', async () => {
    const slug = uniqueSlug('restart');
    let lastSent = 0;
    const send = () => {
      lastSent = Date.now();
      publisher.publish(presenceSubject(slug), JSON.stringify(heartbeatPayload(slug)));
    };
    send();
    beat = setInterval(send, 200);
    await waitFor(async () => (await findProject(app, slug))?.status === 'online', { timeoutMs: 5000 });

    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const p = await findProject(app, slug);
        if (p) seen.add(p.status);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    await nats.stop();
    const stoppedAt = Date.now();
    await waitFor(() => !app.nats.connected, { timeoutMs: 5000, what: 'the app to see NATS down' });
    const health = (await app.inject('/api/fed/health')).json();
    expect(health.status).toBe('degraded');
    expect(health.checks.nats.state).toBe('disconnected');
    expect(health.checks.presence).toMatchObject({ status: 'degraded' });
    expect(health.checks.presence.reason).toMatch(/NATS disconnected/);
    // The outage outlasts the offline threshold (2 s) by a margin.
    await waitFor(() => Date.now() - stoppedAt > 3500, { timeoutMs: 10_000, intervalMs: 100 });

    await nats.start();
    const restartedAt = Date.now();
    await waitFor(() => app.nats.connected, { timeoutMs: 10_000, what: 'the app to reconnect' });
    await waitFor(
      async () => {
        const p = await findProject(app, slug);
        return (
          p?.last_heartbeat_at &&
          new Date(p.last_heartbeat_at).getTime() > restartedAt &&
          p.status === 'online'
        );
      },
      { timeoutMs: 10_000, what: 'a heartbeat sent after the restart to be processed' },
    );
    expect(lastSent).toBeGreaterThan(restartedAt);
    watching = false;
    await watcher;

    expect(seen.has('offline')).toBe(false);
    const history = (await app.inject(`/api/fed/projects/${slug}/history`)).json();
    expect(history.transitions.filter((t: { to: string }) => t.to === 'offline')).toEqual([]);
    expect((await app.inject('/api/fed/health')).json().checks.presence.status).toBe('ok');
  });
});
