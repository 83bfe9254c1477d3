import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { DEFAULT_NATS_URL, FederationHeartbeat, type HeartbeatIntegration } from '../client/heartbeat.ts';
import { EDGE_KINDS, SLUG_MAX_LENGTH } from '../protocol/index.ts';
import { untilSignal } from './heartbeat.ts';
import type { Command } from './types.ts';

export const MAX_SIMULATED_PROJECTS = 1_000_000;
const TAG_POOL = ['python', 'typescript', 'fastapi', 'fastify', 'worker', 'frontend', 'ml', 'infra'];

export interface SimulatedProject {
  slug: string;
  name: string;
  tags: string[];
  health: 'ok' | 'degraded';
  integrations: HeartbeatIntegration[] | undefined;
}

/** A deterministic fleet: the same arguments describe the same projects, so repeated demos line up. */
export function simulatedFleet(opts: {
  projects: number;
  prefix: string;
  degradedRatio: number;
  integrations: boolean;
}): SimulatedProject[] {
  const width = String(opts.projects - 1).length;
  const slugOf = (i: number) => `${opts.prefix}-${String(i).padStart(width, '0')}`;
  const degradedEvery = opts.degradedRatio > 0 ? 1 / opts.degradedRatio : Number.POSITIVE_INFINITY;
  const fleet: SimulatedProject[] = [];
  for (let i = 0; i < opts.projects; i++) {
    let integrations: HeartbeatIntegration[] | undefined;
    if (opts.integrations && opts.projects > 1) {
      // Each project talks to one to three others nearby, so the graph has clusters rather than a hairball.
      const count = 1 + (i % 3);
      const seen = new Set<number>();
      integrations = [];
      for (let k = 1; k <= count; k++) {
        const j = (i + k * 7 + (i % 5)) % opts.projects;
        if (j === i || seen.has(j)) continue;
        seen.add(j);
        integrations.push({
          to: slugOf(j),
          kind: EDGE_KINDS[(i + k) % EDGE_KINDS.length] ?? 'api',
          strength: Math.round((0.3 + ((i * 13 + k * 29) % 70) / 100) * 100) / 100,
        });
      }
    }
    fleet.push({
      slug: slugOf(i),
      name: `Simulated ${opts.prefix} ${i}`,
      tags: ['simulated', TAG_POOL[i % TAG_POOL.length] ?? 'sim'],
      // Spread the degraded ones evenly instead of putting them all at the start.
      health: Math.floor((i + 1) / degradedEvery) > Math.floor(i / degradedEvery) ? 'degraded' : 'ok',
      integrations,
    });
  }
  return fleet;
}

export const simulateCommand: Command = {
  summary: 'run N fake projects publishing heartbeats (demos and load); Ctrl-C stops',
  usage: `federation simulate --projects N [options]

Runs N simulated projects <prefix>-0 … <prefix>-(N-1) over one NATS connection. Their first
heartbeats are spread over one interval and every later one is jittered (±10 %).

  --projects N         how many projects (required)
  --interval S         seconds between each project's heartbeats (default 30)
  --prefix P           slug prefix (default sim)
  --degraded-ratio r   fraction 0..1 of projects reporting health "degraded" (default 0)
  --integrations       projects announce integrations with each other (edges in the graph)
  --nats-url URL       NATS server (default NATS_URL, else ${DEFAULT_NATS_URL})`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        projects: { type: 'string' },
        interval: { type: 'string', default: '30' },
        prefix: { type: 'string', default: 'sim' },
        'degraded-ratio': { type: 'string', default: '0' },
        integrations: { type: 'boolean', default: false },
        'nats-url': { type: 'string' },
      },
    });
    const fail = (msg: string) => {
      console.error(`federation simulate: ${msg}`);
      return 2;
    };
    const projects = Number(values.projects);
    if (!Number.isInteger(projects) || projects < 1 || projects > MAX_SIMULATED_PROJECTS) {
      return fail(
        `--projects ${JSON.stringify(values.projects ?? '')} is invalid: expected 1 to ${MAX_SIMULATED_PROJECTS}`,
      );
    }
    const intervalS = Number(values.interval);
    if (!/^\d+(\.\d+)?$/.test(values.interval) || intervalS < 0.05 || intervalS > 86_400) {
      return fail(
        `--interval ${JSON.stringify(values.interval)} is invalid: expected seconds from 0.05 to 86400`,
      );
    }
    const prefix = values.prefix;
    if (!/^[a-z0-9-]+$/.test(prefix) || prefix.length + 1 + String(projects).length > SLUG_MAX_LENGTH) {
      return fail(
        `--prefix ${JSON.stringify(prefix)} is invalid: expected lowercase letters, digits and dashes`,
      );
    }
    const degradedRatio = Number(values['degraded-ratio']);
    if (!(degradedRatio >= 0 && degradedRatio <= 1)) {
      return fail(`--degraded-ratio ${JSON.stringify(values['degraded-ratio'])} is invalid: expected 0 to 1`);
    }
    const natsUrl = values['nats-url'] ?? process.env.NATS_URL ?? DEFAULT_NATS_URL;

    let nc: Awaited<ReturnType<typeof connect>>;
    try {
      nc = await connect({
        servers: natsUrl.split(',').map((s) => s.trim()),
        name: `federation-simulate:${prefix}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
      });
    } catch (err) {
      console.error(`federation simulate: cannot reach NATS at ${natsUrl}: ${(err as Error).message}`);
      return 1;
    }

    const fleet = simulatedFleet({ projects, prefix, degradedRatio, integrations: values.integrations });
    const publishers = fleet.map(
      (p) =>
        new FederationHeartbeat({
          connection: nc,
          slug: p.slug,
          hubUrl: `http://${p.slug}.sim.invalid:8000`,
          intervalS,
          version: 'sim-1.0.0',
          name: p.name,
          tags: p.tags,
          health: p.health,
          integrations: p.integrations,
          env: {},
          logger: { warn: (m) => console.error(m) },
        }),
    );
    const starts = publishers.map((hb, i) =>
      setTimeout(
        () => {
          hb.start().catch((err: Error) => console.error(`${hb.slug}: ${err.message}`));
        },
        // Spread over one interval, each at a random point of its slot, so the fleet never beats in lockstep.
        ((i + Math.random()) / publishers.length) * intervalS * 1000,
      ),
    );
    const degraded = fleet.filter((p) => p.health === 'degraded').length;
    console.error(
      `simulating ${projects} projects (${prefix}-*, ${degraded} degraded${values.integrations ? ', with integrations' : ''}) every ${intervalS} s on ${natsUrl}; Ctrl-C stops`,
    );
    let last = 0;
    const report = setInterval(() => {
      const total = publishers.reduce((n, hb) => n + hb.stats.published, 0);
      const failed = publishers.reduce((n, hb) => n + hb.stats.failed, 0);
      console.error(`${total} heartbeats published (${total - last} in the last 5 s, ${failed} failed)`);
      last = total;
    }, 5000);

    const signal = await untilSignal();
    clearInterval(report);
    for (const t of starts) clearTimeout(t);
    await Promise.all(publishers.map((hb) => hb.stop()));
    await nc.drain().catch(() => nc.close());
    const total = publishers.reduce((n, hb) => n + hb.stats.published, 0);
    console.error(`${signal}: stopped ${projects} simulated projects after ${total} heartbeats`);
    return 0;
  },
};
