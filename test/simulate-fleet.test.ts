import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulatedFleet } from '../src/commands/simulate.ts';
import { type AppWithOwnNats, buildAppWithOwnNats, uniqueSlug } from './helpers/app.ts';
import { waitFor } from './helpers/wait.ts';

describe('simulatedFleet in teams and regions', () => {
  it('puts the team first among the tags, the region first in the namespace, links mostly within a team', () => {
    const fleet = simulatedFleet({ projects: 120, prefix: 'f', degradedRatio: 0, integrations: true });
    const teams = new Set(fleet.map((p) => p.tags[0]));
    expect(teams.size).toBe(6);
    expect(new Set(fleet.map((p) => p.meshNamespace.split('.')[0]))).toEqual(new Set(['eu', 'us', 'ap']));
    const team = new Map(fleet.map((p) => [p.slug, p.team]));
    const links = fleet.flatMap((p) => (p.integrations ?? []).map((i) => [p.team, team.get(i.to)]));
    const inside = links.filter(([a, b]) => a === b).length;
    expect(inside / links.length).toBeGreaterThan(0.6);
    expect(inside).toBeLessThan(links.length);
    expect(fleet[0]?.name).toBe('Billing API 1');
  });
});

describe('federation simulate: a fleet that dies, comes back, publishes metrics and answers audits', () => {
  let env: AppWithOwnNats;
  let base: string;
  const prefix = uniqueSlug('fl');
  const json = async <T>(path: string, init?: RequestInit): Promise<T> => {
    const res = await fetch(`${base}${path}`, init);
    return (await res.json()) as T;
  };

  beforeAll(async () => {
    env = await buildAppWithOwnNats({ FED_SWEEP_INTERVAL_S: '0.1' });
    await env.app.listen({ host: '127.0.0.1', port: 0 });
    const address = env.app.server.address();
    if (!address || typeof address === 'string') throw new Error('no TCP address');
    base = `http://127.0.0.1:${address.port}`;
  });
  afterAll(async () => {
    await env?.close();
  });

  it('registers allow_fanout, answers "Audit all", publishes metrics, churns, and sums up at SIGINT', async () => {
    const child = spawn(
      process.execPath,
      [
        'bin/federation.js',
        'simulate',
        ...['--projects', '12', '--interval', '0.3', '--prefix', prefix, '--integrations'],
        ...['--churn', '5', '--metrics', '--metrics-every', '1', '--degraded-ratio', '0.25'],
        ...['--api-url', base, '--nats-url', env.nats.url],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    type Project = { slug: string; allow_fanout: string[]; tags: string[]; mesh_namespace: string };
    try {
      const mine = await waitFor(
        async () => {
          const all = await json<Project[]>('/api/fed/projects?limit=1000');
          const ours = all.filter((p) => p.slug.startsWith(`${prefix}-`) && p.allow_fanout.includes('audit'));
          return ours.length === 12 ? ours : undefined;
        },
        { timeoutMs: 20_000, what: 'all 12 simulated projects registered with allow_fanout audit' },
      );
      expect(mine[0]?.tags[0]).toBe('billing');
      expect(mine[0]?.mesh_namespace).toMatch(new RegExp(`^(eu|us|ap)\\.${prefix}\\.${prefix}-`));

      // "Audit all" as the page sends it: every online project, answered by the simulated responders.
      const run = await json<{ id: string }>('/api/fed/actions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'audit', targets: { status: 'online' } }),
      });
      const done = await waitFor(
        async () => {
          const r = await json<{ status: string; counts: Record<string, number> }>(
            `/api/fed/actions/${run.id}`,
          );
          return r.status === 'done' ? r : undefined;
        },
        { timeoutMs: 15_000, what: 'the audit run to finish' },
      );
      expect(done.counts.ok).toBeGreaterThan(0);
      expect(done.counts.not_allowed).toBe(0);

      // Metrics through JetStream: graph and audit summaries.
      await waitFor(
        async () => {
          const m = await json<{ latest: Record<string, unknown> }>(`/api/fed/metrics/${prefix}-00`);
          return 'graph.nodes' in m.latest && 'audit.ok_count' in m.latest;
        },
        { timeoutMs: 15_000, what: 'graph and audit metrics of the first project' },
      );

      // Churn: some project went offline for silence and came back.
      await waitFor(
        async () => {
          for (const p of mine) {
            const h = await json<{ transitions: Array<{ from: string; to: string; reason: string }> }>(
              `/api/fed/projects/${p.slug}/history`,
            );
            const died = h.transitions.findIndex(
              (t) => t.to === 'offline' && /no heartbeat for more/.test(t.reason),
            );
            if (died >= 0 && h.transitions.slice(died + 1).some((t) => t.to !== 'offline')) return true;
          }
          return false;
        },
        { timeoutMs: 25_000, what: 'a simulated project that died and came back' },
      );
      expect(stderr).toMatch(/simulating 12 projects .*churn 5\/min, metrics, answering audits/);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(stderr).toMatch(
      /SIGINT: stopped 12 simulated projects after \d+s: [\d,]+ heartbeats \(0 failed\), \d+ deaths and \d+ recoveries, [\d,]+ metrics summaries \(0 failed\), \d+ audits answered, 12 projects registered/,
    );
  });
});
