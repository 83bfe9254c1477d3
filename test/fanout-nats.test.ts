import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { App } from '../src/app.ts';
import { ActionResponder } from '../src/client/action-responder.ts';
import { fanoutCommand } from '../src/commands/fanout.ts';
import type { FanoutProgress } from '../src/fanout/fanout-runner.ts';
import type { FanoutRunResponse } from '../src/fanout/routes.ts';
import { actionSubject } from '../src/protocol/index.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { waitFor } from './helpers/wait.ts';

const ADMIN = 'admin-secret';
const admin = { authorization: `Bearer ${ADMIN}` };

describe('fan-out over real NATS and PostgreSQL', () => {
  let natsServer: TestNatsServer;
  let db: TestDatabase;
  let app: App;
  let nc: NatsConnection;
  const env = () => ({ DATABASE_URL: db.url, NATS_URL: natsServer.url, FED_ADMIN_TOKEN: ADMIN });
  const tag = uniqueSlug('tag');
  const slug = {
    fast: uniqueSlug('fast'),
    failing: uniqueSlug('failing'),
    silent: uniqueSlug('silent'),
    refusing: uniqueSlug('refusing'),
    offline: uniqueSlug('offline'),
    deaf: uniqueSlug('deaf'),
    garbled: uniqueSlug('garbled'),
    unstorable: uniqueSlug('unstorable'),
  };
  const received: Record<string, number> = {};
  const responders: ActionResponder[] = [];
  const subs: Subscription[] = [];

  async function register(s: string, allow: string[], tags: string[] = [tag]): Promise<void> {
    const res = await app.inject({
      method: 'POST',
      url: '/api/fed/projects',
      headers: admin,
      payload: {
        slug: s,
        name: s,
        hub_url: 'http://127.0.0.1:9000',
        mesh_namespace: `ns.${s}`,
        tags,
        allow_fanout: allow,
      },
    });
    expect(res.statusCode).toBe(201);
  }

  function respond(s: string, handler: () => unknown): void {
    const r = new ActionResponder({ nc, slug: s, meshNamespace: `ns.${s}`, allowed: ['audit'] });
    r.onAction('audit', () => {
      received[s] = (received[s] ?? 0) + 1;
      return handler();
    });
    r.start();
    responders.push(r);
  }

  async function start(body: object): Promise<FanoutRunResponse> {
    const res = await app.inject({ method: 'POST', url: '/api/fed/actions', headers: admin, payload: body });
    expect(res.statusCode, res.body).toBe(202);
    return res.json() as FanoutRunResponse;
  }

  async function get(id: string): Promise<FanoutRunResponse> {
    const res = await app.inject({ method: 'GET', url: `/api/fed/actions/${id}`, headers: admin });
    expect(res.statusCode).toBe(200);
    return res.json() as FanoutRunResponse;
  }

  const waitDone = (id: string, timeoutMs = 10_000) =>
    waitFor(
      async () => {
        const run = await get(id);
        return run.status === 'done' ? run : undefined;
      },
      { timeoutMs, what: `run ${id} done` },
    );

  const bySlug = (run: FanoutRunResponse) => Object.fromEntries(run.results.map((r) => [r.slug, r]));

  beforeAll(async () => {
    // A NATS of its own: on the shared one, other files' apps in the queue group would take heartbeats.
    natsServer = await startNatsServer();
    db = await createPostgresDatabase();
    app = await buildTestApp(env());
    await waitFor(() => app.nats.connected, { what: 'service connected to NATS' });
    nc = await connect({ servers: natsServer.url });

    await register(slug.fast, ['audit']);
    await register(slug.failing, ['audit']);
    await register(slug.silent, ['audit']);
    await register(slug.refusing, ['lint']);
    await register(slug.offline, ['audit']);
    await register(slug.deaf, ['audit'], []);
    await register(slug.garbled, ['audit'], []);
    await register(slug.unstorable, ['audit'], []);
    for (const s of [
      slug.fast,
      slug.failing,
      slug.silent,
      slug.refusing,
      slug.deaf,
      slug.garbled,
      slug.unstorable,
    ]) {
      await app.catalog.updateHeartbeat(s);
    }

    respond(slug.fast, () => ({ findings: 0 }));
    respond(slug.failing, () => {
      throw new Error('disk full');
    });
    respond(slug.refusing, () => 'should never run');
    respond(slug.offline, () => 'woken up');
    // Subscribed but never replies: the request must time out, not be "no responders".
    subs.push(
      nc.subscribe(actionSubject(`ns.${slug.silent}`, '>'), {
        callback: () => {
          received[slug.silent] = (received[slug.silent] ?? 0) + 1;
        },
      }),
    );
    subs.push(
      nc.subscribe(actionSubject(`ns.${slug.garbled}`, '>'), {
        callback: (_err, msg) => {
          msg.respond('{"status":"fine"}');
        },
      }),
    );
    subs.push(
      nc.subscribe(actionSubject(`ns.${slug.unstorable}`, '>'), {
        callback: (_err, msg) => {
          msg.respond('{"ok":true,"result":{"x":"a\\u0000b"}}');
        },
      }),
    );
    await nc.flush();
  });

  afterAll(async () => {
    await Promise.all(responders.map((r) => r.stop()));
    for (const s of subs) s.unsubscribe();
    await nc?.close();
    await app?.close();
    await db?.drop();
    await natsServer?.destroy();
  });

  it('reports ok, error, timeout, not_allowed and offline; a silent project becomes a timeout', async () => {
    const events: FanoutProgress[] = [];
    const off = app.feed.on('fanout', (e) => events.push(e as FanoutProgress));
    try {
      const created = await start({
        action: 'audit',
        targets: { tags: [tag] },
        params: { depth: 1 },
        timeout_ms: 1500,
      });
      expect(created.status).toBe('running');
      expect(created.counts).toMatchObject({ not_allowed: 1, offline: 1, pending: 3 });

      const run = await waitDone(created.id);
      expect(run.counts).toEqual({ ok: 1, error: 1, timeout: 1, not_allowed: 1, offline: 1, pending: 0 });
      expect(run.finished_at).not.toBeNull();
      const r = bySlug(run);
      expect(r[slug.fast]).toMatchObject({ outcome: 'ok', result: { findings: 0 } });
      expect(r[slug.failing]).toMatchObject({ outcome: 'error', error: 'disk full' });
      expect(r[slug.silent]?.outcome).toBe('timeout');
      // A timeout is only reported after the full timeout has passed.
      expect(r[slug.silent]?.duration_ms).toBeGreaterThanOrEqual(1400);
      expect(r[slug.refusing]).toMatchObject({ outcome: 'not_allowed', duration_ms: null });
      expect(r[slug.offline]).toMatchObject({ outcome: 'offline', duration_ms: null });
      expect(received[slug.refusing]).toBeUndefined();
      expect(received[slug.offline]).toBeUndefined();
      expect(received[slug.silent]).toBe(1);

      // Progress on the feed: the start, one event per answer, the end. It travels through NATS
      // (fed.fanout.<id>), so it may land a moment after the database says the run is done.
      await waitFor(() => events.some((e) => e.id === created.id && e.status === 'done'), {
        what: 'the done event on the feed',
      });
      const mine = events.filter((e) => e.id === created.id);
      expect(mine[0]).toMatchObject({ status: 'running', action: 'audit', counts: { pending: 3 } });
      expect(mine[0]?.slug).toBeUndefined();
      expect(
        mine
          .filter((e) => e.slug)
          .map((e) => `${e.slug}:${e.outcome}`)
          .sort(),
      ).toEqual([`${slug.failing}:error`, `${slug.fast}:ok`, `${slug.silent}:timeout`].sort());
      expect(mine.at(-1)).toMatchObject({ status: 'done', counts: run.counts });
      expect(mine).toHaveLength(5);
    } finally {
      off();
    }
  });

  it('ends as soon as the last live target answers, long before a 30 s timeout', async () => {
    const created = await start({
      action: 'audit',
      targets: { slugs: [slug.fast, slug.failing, slug.refusing, slug.offline] },
      timeout_ms: 30_000,
    });
    // A run that waited for its timeout could not be done within 10 s.
    const run = await waitDone(created.id, 10_000);
    expect(run.counts).toMatchObject({ ok: 1, error: 1, timeout: 0, not_allowed: 1, offline: 1 });
  });

  it('sends to offline projects with include_offline', async () => {
    const run = await waitDone(
      (await start({ action: 'audit', targets: { slugs: [slug.offline] }, include_offline: true })).id,
    );
    expect(bySlug(run)[slug.offline]).toMatchObject({ outcome: 'ok', result: 'woken up' });
  });

  it('reports "no responders" as an error at once, and an invalid reply as an error', async () => {
    const created = await start({
      action: 'audit',
      targets: { slugs: [slug.deaf, slug.garbled] },
      timeout_ms: 30_000,
    });
    const run = await waitDone(created.id, 10_000);
    const r = bySlug(run);
    expect(r[slug.deaf]).toMatchObject({ outcome: 'error', error: 'no responders' });
    expect(r[slug.garbled]).toMatchObject({
      outcome: 'error',
      error: expect.stringMatching(/invalid reply/),
    });
  });

  it('records a reply with text the database cannot store as an error, and the run still finishes', async () => {
    const created = await start({
      action: 'audit',
      targets: { slugs: [slug.unstorable, slug.fast] },
      timeout_ms: 30_000,
    });
    const run = await waitDone(created.id, 10_000);
    expect(run.counts).toMatchObject({ ok: 1, error: 1, pending: 0 });
    const r = bySlug(run);
    expect(r[slug.unstorable]).toMatchObject({
      outcome: 'error',
      error: 'invalid reply: result.x contains text that cannot be stored (NUL or an unpaired surrogate)',
    });
    expect(r[slug.unstorable]?.result ?? null).toBeNull();
    expect(r[slug.fast]).toMatchObject({ outcome: 'ok', result: { findings: 0 } });
  });

  it('filters by status and lists runs newest first with counts', async () => {
    const created = await start({ action: 'audit', targets: { tags: [tag], status: 'offline' } });
    const run = await waitDone(created.id);
    expect(run.results.map((x) => x.slug)).toEqual([slug.offline]);
    const list = await app.inject({ method: 'GET', url: '/api/fed/actions?limit=2', headers: admin });
    expect(list.statusCode).toBe(200);
    const runs = list.json() as FanoutRunResponse[];
    expect(runs).toHaveLength(2);
    expect(runs[0]?.id).toBe(created.id);
    expect(runs[0]?.counts).toMatchObject({ offline: 1 });
    expect(runs[0]).not.toHaveProperty('results');
    expect(list.headers['x-next-cursor']).toBeTruthy();
  });

  it('the CLI posts, polls until done, prints the table and fails when a project errored', async () => {
    const address = await listenOnce();
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a) => void lines.push(a.join(' ')));
    const err = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const ok = await fanoutCommand.run(['audit', '--slug', slug.fast, '--url', address, '--token', ADMIN]);
      expect(ok).toBe(0);
      expect(lines.join('\n')).toMatch(new RegExp(`${slug.fast}\\s+ok`));
      expect(lines.join('\n')).toMatch(/1 ok, 0 error, 0 timeout/);
      lines.length = 0;
      const failed = await fanoutCommand.run([
        'audit',
        '--tag',
        tag,
        '--status',
        'online',
        '--timeout-ms',
        '800',
        '--params',
        '{"depth":2}',
        '--url',
        address,
        '--token',
        ADMIN,
      ]);
      expect(failed).toBe(1);
      expect(lines.join('\n')).toMatch(new RegExp(`${slug.failing}\\s+error\\s+\\d+\\s+disk full`));
      expect(await fanoutCommand.run(['audit', '--slug', slug.fast, '--url', address])).toBe(1);
      expect(err).toHaveBeenCalledWith(expect.stringMatching(/401/));
    } finally {
      log.mockRestore();
      err.mockRestore();
    }
  });

  let listening: string | undefined;
  async function listenOnce(): Promise<string> {
    listening ??= await app.listen({ port: 0, host: '127.0.0.1' });
    return listening;
  }

  it('on shutdown, a run still waiting records its silent targets as timeouts; the next start finishes abandoned runs', async () => {
    const other = await buildTestApp(env());
    await waitFor(() => other.nats.connected, { what: 'second instance connected' });
    const res = await other.inject({
      method: 'POST',
      url: '/api/fed/actions',
      headers: admin,
      payload: { action: 'audit', targets: { slugs: [slug.fast, slug.silent] }, timeout_ms: 60_000 },
    });
    expect(res.statusCode).toBe(202);
    const id = (res.json() as FanoutRunResponse).id;
    await waitFor(async () => (await get(id)).counts.ok === 1, { what: 'fast answer stored' });
    await other.close();
    const run = await get(id);
    expect(run.status).toBe('done');
    expect(bySlug(run)[slug.silent]?.outcome).toBe('timeout');
    expect(bySlug(run)[slug.fast]?.outcome).toBe('ok');

    // A run left 'running' by an instance that died (no shutdown at all).
    const crashedId = crypto.randomUUID();
    await app.fanoutService.createRun(
      {
        id: crashedId,
        action: 'audit',
        targets: { slugs: [slug.silent] },
        params: null,
        timeoutMs: 5000,
        createdAt: new Date(Date.now() - 3_600_000),
      },
      [{ slug: slug.silent, outcome: 'pending', durationMs: null }],
    );
    const restarted = await buildTestApp(env());
    try {
      const after = await get(crashedId);
      expect(after.status).toBe('done');
      expect(after.results[0]?.outcome).toBe('timeout');
    } finally {
      await restarted.close();
    }
  });
});
