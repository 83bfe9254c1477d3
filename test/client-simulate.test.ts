import { spawn } from 'node:child_process';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Value } from 'typebox/value';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulatedFleet } from '../src/commands/simulate.ts';
import { type Heartbeat, HeartbeatSchema } from '../src/protocol/index.ts';
import { uniqueSlug } from './helpers/app.ts';
import { SHARED_NATS_URL } from './helpers/nats-server.ts';
import { waitFor } from './helpers/wait.ts';

let nc: NatsConnection;
beforeAll(async () => {
  nc = await connect({ servers: SHARED_NATS_URL });
});
afterAll(async () => {
  await nc.drain();
});

describe('simulatedFleet', () => {
  it('marks the requested share degraded, spread out, and links projects only to each other', () => {
    const fleet = simulatedFleet({ projects: 100, prefix: 'sim', degradedRatio: 0.25, integrations: true });
    expect(fleet).toHaveLength(100);
    expect(fleet[0]?.slug).toBe('sim-00');
    expect(fleet.filter((p) => p.health === 'degraded')).toHaveLength(25);
    expect(fleet.slice(0, 50).filter((p) => p.health === 'degraded').length).toBeGreaterThan(5);
    const slugs = new Set(fleet.map((p) => p.slug));
    for (const p of fleet) {
      expect(p.integrations?.length).toBeGreaterThan(0);
      for (const i of p.integrations ?? []) {
        expect(slugs.has(i.to)).toBe(true);
        expect(i.to).not.toBe(p.slug);
      }
    }
    expect(simulatedFleet({ projects: 10, prefix: 'x', degradedRatio: 0, integrations: false })).toSatisfy(
      (f: ReturnType<typeof simulatedFleet>) => f.every((p) => p.health === 'ok' && !p.integrations),
    );
  });
});

describe('federation simulate (CLI)', () => {
  it('publishes valid heartbeats for every project until SIGINT, then exits 0', async () => {
    const prefix = uniqueSlug('sim');
    const seen = new Map<string, Heartbeat>();
    // NATS wildcards match whole tokens only, so filter the prefix here.
    const sub = nc.subscribe('hub.presence.*');
    void (async () => {
      for await (const m of sub) {
        if (!m.subject.startsWith(`hub.presence.${prefix}-`)) continue;
        const hb = m.json<Heartbeat>();
        seen.set(hb.project_slug, hb);
      }
    })();
    await nc.flush();
    const child = spawn(
      process.execPath,
      [
        'bin/federation.js',
        'simulate',
        '--projects',
        '20',
        '--interval',
        '0.3',
        '--prefix',
        prefix,
        '--degraded-ratio',
        '0.5',
        '--integrations',
        // No API to register with here (and none of another test's to write into).
        '--no-audit',
      ],
      { env: { ...process.env, NATS_URL: SHARED_NATS_URL }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => seen.size === 20, { timeoutMs: 20_000, what: 'all 20 simulated projects' });
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/stopped 20 simulated projects/);
    sub.unsubscribe();
    const beats = [...seen.values()];
    for (const hb of beats) expect(Value.Errors(HeartbeatSchema, hb)).toEqual([]);
    expect(beats.filter((hb) => hb.health === 'degraded')).toHaveLength(10);
    expect(beats.every((hb) => (hb.integrations?.length ?? 0) > 0 && hb.interval_s === 0.3)).toBe(true);
  });

  it('refuses a missing --projects with a clear message', async () => {
    const child = spawn(process.execPath, ['bin/federation.js', 'simulate'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(stderr).toMatch(/--projects "" is invalid/);
  });
});
