import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { waitFor } from './helpers/wait.ts';

describe('fan-out while NATS is down', () => {
  let nats: TestNatsServer;
  let app: App;
  const slug = uniqueSlug('fd');

  beforeAll(async () => {
    nats = await startNatsServer();
    app = await buildTestApp({ NATS_URL: nats.url });
    await waitFor(() => app.nats.connected, { what: 'connected' });
    await app.catalog.registerProject({
      slug,
      name: slug,
      hubUrl: 'http://127.0.0.1:9000',
      meshNamespace: `ns.${slug}`,
      allowFanout: ['audit'],
    });
    await app.catalog.updateHeartbeat(slug);
  });
  afterAll(async () => {
    await app?.close();
    await nats?.destroy();
  });

  const post = () =>
    app.inject({
      method: 'POST',
      url: '/api/fed/actions',
      payload: { action: 'audit', targets: { slugs: [slug] }, timeout_ms: 500 },
    });

  it('answers 503 JSON while disconnected and works again after the reconnect', async () => {
    await nats.stop();
    await waitFor(() => !app.nats.connected, { what: 'disconnect noticed' });
    const down = await post();
    expect(down.statusCode).toBe(503);
    expect(down.json()).toMatchObject({ error: 'unavailable', message: expect.stringMatching(/NATS/) });

    await nats.start();
    await waitFor(() => app.nats.connected, { what: 'reconnected', timeoutMs: 20_000 });
    const up = await post();
    expect(up.statusCode).toBe(202);
    const id = up.json().id as string;
    const run = await waitFor(async () => {
      const r = (await app.inject({ method: 'GET', url: `/api/fed/actions/${id}` })).json();
      return r.status === 'done' ? r : undefined;
    });
    // Nobody answers on this private server.
    expect(run.results[0]).toMatchObject({ slug, outcome: 'error', error: 'no responders' });
  });
});
