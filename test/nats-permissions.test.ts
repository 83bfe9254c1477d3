import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { ActionResponder } from '../src/client/action-responder.ts';
import { projectConnectionOptions } from '../src/client/connection.ts';
import { FederationHeartbeat } from '../src/client/heartbeat.ts';
import { natsUsersCommand } from '../src/commands/nats-users.ts';
import type { FanoutRunResponse } from '../src/fanout/routes.ts';
import { parseCredentialsEnv } from '../src/platform/nats-permissions.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { findProject, heartbeatPayload, metricsText, metricValue } from './helpers/presence.ts';
import { waitFor } from './helpers/wait.ts';

const quiet = { warn: () => {}, info: () => {} };

/** Collects the permission violations the server reports on a connection. */
function violations(nc: NatsConnection): string[] {
  const seen: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error') seen.push(String(s.error));
    }
  })();
  return seen;
}

describe('NATS permissions per project (deploy/nats/, federation nats-users)', () => {
  const a = uniqueSlug('perm-a');
  const b = uniqueSlug('perm-b');
  let dir: string;
  let server: TestNatsServer;
  let app: App;
  let ncA: NatsConnection;
  let ncB: NatsConnection;
  let seenA: string[];
  const creds = (user: string) => {
    const c = parseCredentialsEnv(readFileSync(join(dir, 'credentials', `${user}.env`), 'utf8'));
    return { NATS_USER: c.user ?? '', NATS_PASS: c.password ?? '' };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fed-nats-perm-'));
    const projectsFile = join(dir, 'projects.yaml');
    writeFileSync(
      projectsFile,
      [a, b]
        .map(
          (s) =>
            `  - { slug: ${s}, name: ${s}, hub_url: "http://127.0.0.1:9/${s}", mesh_namespace: ns.${s}, allow_fanout: [audit] }`,
        )
        .join('\n')
        .replace(/^/, 'projects:\n'),
    );
    expect(await natsUsersCommand.run(['--projects', projectsFile, '--out', dir])).toBe(0);
    // The server configuration as deploy/nats/nats.conf has it: the generated users included.
    const conf = join(dir, 'nats.conf');
    writeFileSync(conf, 'include ./users.conf\n');
    server = await startNatsServer(undefined, { configFile: conf });

    app = await buildTestApp({
      NATS_URL: server.url,
      ...creds('federation'),
      FED_PROJECTS_FILE: projectsFile,
      FED_ADMIN_TOKEN: 'perm-admin',
    });
    await waitFor(() => app.nats.connected, { what: 'the service connected as "federation"' });
    ncA = await connect({ servers: server.url, ...projectConnectionOptions(a, creds(a)) });
    ncB = await connect({ servers: server.url, ...projectConnectionOptions(b, creds(b)) });
    seenA = violations(ncA);
  });

  afterAll(async () => {
    await ncA?.close();
    await ncB?.close();
    await app?.close();
    await server?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('keeps passwords already issued when run again', async () => {
    const before = creds(a).NATS_PASS;
    expect(before.length).toBeGreaterThan(20);
    expect(await natsUsersCommand.run(['--projects', join(dir, 'projects.yaml'), '--out', dir])).toBe(0);
    expect(creds(a).NATS_PASS).toBe(before);
  });

  it('refuses a heartbeat and metrics A publishes as B; A’s own heartbeat arrives', async () => {
    ncA.publish(`hub.presence.${b}`, JSON.stringify(heartbeatPayload(b, { mesh_namespace: `ns.${b}` })));
    ncA.publish(
      `audit.summary.${b}`,
      JSON.stringify({ project_slug: b, observed_at: new Date().toISOString(), metrics: { forged: 1 } }),
    );
    await ncA.flush();
    // A's own heartbeat, through the client library with credentials from the environment.
    const hb = new FederationHeartbeat({
      slug: a,
      meshNamespace: `ns.${a}`,
      hubUrl: `http://127.0.0.1:9/${a}`,
      natsUrl: server.url,
      env: creds(a),
      logger: quiet,
    });
    await hb.beat();
    await hb.stop();
    await waitFor(async () => (await findProject(app, a))?.last_heartbeat_at, { what: `${a} heard` });
    await waitFor(() => seenA.length >= 2, { what: 'two permission violations reported to A' });
    expect(seenA.join('\n')).toMatch(new RegExp(`Publish.*hub\\.presence\\.${b}`, 'i'));
    expect(seenA.join('\n')).toMatch(new RegExp(`Publish.*audit\\.summary\\.${b}`, 'i'));
    // Published before A's own on the same connection: had the server let it through, it would be here.
    expect((await findProject(app, b))?.last_heartbeat_at).toBeNull();
    expect(
      metricValue(await metricsText(app), 'federation_heartbeats_received_total', '{transport="nats"}'),
    ).toBe(1);
  });

  it('stores A’s own metrics (JetStream ack on A’s inbox) and none forged for B', async () => {
    const ack = await jetstream(ncA).publish(
      `audit.summary.${a}`,
      JSON.stringify({ project_slug: a, observed_at: new Date().toISOString(), metrics: { findings: 3 } }),
    );
    expect(ack.seq).toBeGreaterThan(0);
    await waitFor(
      async () => {
        const res = await app.inject(`/api/fed/metrics/${a}`);
        return res.statusCode === 200 && (res.json() as { latest: Record<string, unknown> }).latest.findings;
      },
      { what: `metrics of ${a}` },
    );
    const forged = await app.inject(`/api/fed/metrics/${b}`);
    expect(forged.statusCode, forged.body).toBe(200);
    expect((forged.json() as { latest: object }).latest).toEqual({});
  });

  it('lets B answer its own actions and A answer none of B’s', async () => {
    // A tries to listen on B's action subject: the server refuses the subscription.
    const before = seenA.length;
    const rogue = ncA.subscribe(`ns.${b}.actions.>`, {
      callback: (err, msg) => {
        if (!err) msg.respond(JSON.stringify({ ok: true, result: 'from A' }));
      },
    });
    await ncA.flush();
    await waitFor(() => seenA.slice(before).some((e) => /Subscription.*actions/i.test(e)), {
      what: `A refused the subscription to B’s actions (seen: ${seenA.join('; ')})`,
      timeoutMs: 3000,
    });
    expect(rogue).toBeDefined();

    const run = async (): Promise<FanoutRunResponse> => {
      const started = await app.inject({
        method: 'POST',
        url: '/api/fed/actions',
        headers: { authorization: 'Bearer perm-admin' },
        payload: { action: 'audit', targets: { slugs: [b] }, timeout_ms: 1500, include_offline: true },
      });
      expect(started.statusCode, started.body).toBe(202);
      const id = (started.json() as FanoutRunResponse).id;
      return waitFor(
        async () => {
          const r = (
            await app.inject({
              url: `/api/fed/actions/${id}`,
              headers: { authorization: 'Bearer perm-admin' },
            })
          ).json() as FanoutRunResponse;
          return r.status === 'done' ? r : undefined;
        },
        { what: 'fan-out done' },
      );
    };
    // Nobody may listen there but B: with B away, NATS reports no responders, and A's answer never comes.
    const unanswered = (await run()).results[0];
    expect(unanswered?.slug).toBe(b);
    expect(['error', 'timeout']).toContain(unanswered?.outcome);
    expect(unanswered?.result).toBeUndefined();

    const responder = new ActionResponder({ nc: ncB, slug: b, meshNamespace: `ns.${b}`, allowed: ['audit'] });
    responder.onAction('audit', () => ({ by: b }));
    responder.start();
    await ncB.flush();
    try {
      expect((await run()).results[0]).toMatchObject({ slug: b, outcome: 'ok', result: { by: b } });
    } finally {
      await responder.stop();
    }
  });
});
