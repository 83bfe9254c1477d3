import { parseArgs } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ActionResponder } from '../client/action-responder.ts';
import { DEFAULT_NATS_URL, FederationHeartbeat, type HeartbeatIntegration } from '../client/heartbeat.ts';
import { publishMetrics } from '../client/metrics.ts';
import { EDGE_KINDS, SLUG_MAX_LENGTH } from '../protocol/index.ts';
import { untilSignal } from './heartbeat.ts';
import type { Command } from './types.ts';

export const MAX_SIMULATED_PROJECTS = 1_000_000;
export const DEFAULT_API_URL = 'http://127.0.0.1:8001';
/** Teams (the first tag, so the grouped overview has groups), in the order their blocks of projects come. */
const TEAMS = [
  'billing',
  'search',
  'identity',
  'payments',
  'catalog',
  'analytics',
  'messaging',
  'storage',
  'ml',
  'frontend',
  'infra',
  'reporting',
];
const ROLES = ['API', 'Worker', 'Web', 'Gateway', 'Scheduler', 'Indexer'];
/** Regions: the mesh namespace prefix, the third way to group. */
const REGIONS = ['eu', 'us', 'ap'];
/** A dead project stays silent for this many intervals (offline after 3): long enough to be seen offline. */
const OUTAGE_INTERVALS = { min: 4, max: 10 };
const REGISTER_CONCURRENCY = 16;
const PROGRESS_TTY_MS = 1_000;
const PROGRESS_LOG_MS = 10_000;

export interface SimulatedProject {
  slug: string;
  name: string;
  team: string;
  meshNamespace: string;
  tags: string[];
  health: 'ok' | 'degraded';
  integrations: HeartbeatIntegration[] | undefined;
}

/**
 * A deterministic fleet: the same arguments describe the same projects, so repeated demos line up.
 * Projects come in contiguous blocks per team (first tag) and alternate regions (namespace prefix);
 * integrations stay mostly inside a team, one in four goes to the next team, so the grouped overview
 * shows clusters and a flow between them rather than a hairball.
 */
export function simulatedFleet(opts: {
  projects: number;
  prefix: string;
  degradedRatio: number;
  integrations: boolean;
  teams?: number;
}): SimulatedProject[] {
  const n = opts.projects;
  const teams = Math.max(1, Math.min(opts.teams ?? Math.min(TEAMS.length, Math.ceil(n / 20)), TEAMS.length));
  const width = String(n - 1).length;
  const slugOf = (i: number) => `${opts.prefix}-${String(i).padStart(width, '0')}`;
  const teamOf = (i: number) => Math.min(teams - 1, Math.floor((i * teams) / n));
  const blockStart = (t: number) => Math.ceil((t * n) / teams);
  const degradedEvery = opts.degradedRatio > 0 ? 1 / opts.degradedRatio : Number.POSITIVE_INFINITY;
  const fleet: SimulatedProject[] = [];
  for (let i = 0; i < n; i++) {
    const t = teamOf(i);
    const team = TEAMS[t] ?? 'team';
    const start = blockStart(t);
    const size = Math.max(1, blockStart(t + 1) - start);
    let integrations: HeartbeatIntegration[] | undefined;
    if (opts.integrations && n > 1) {
      const count = 1 + (i % 3);
      const seen = new Set<number>();
      integrations = [];
      for (let k = 1; k <= count; k++) {
        let j: number;
        if ((i + k) % 4 === 0 && teams > 1) {
          // To the next team's block, at the same relative place.
          const next = (t + 1) % teams;
          j = blockStart(next) + ((i - start) % Math.max(1, blockStart(next + 1) - blockStart(next)));
        } else {
          j = start + ((i - start + k * 3 + (i % 5)) % size);
        }
        if (j === i || j >= n || seen.has(j)) continue;
        seen.add(j);
        integrations.push({
          to: slugOf(j),
          kind: EDGE_KINDS[(i + k) % EDGE_KINDS.length] ?? 'api',
          strength: Math.round((0.3 + ((i * 13 + k * 29) % 70) / 100) * 100) / 100,
        });
      }
    }
    const slug = slugOf(i);
    const role = ROLES[i % ROLES.length] ?? 'Service';
    fleet.push({
      slug,
      name: `${team[0]?.toUpperCase()}${team.slice(1)} ${role} ${i - start + 1}`,
      team,
      meshNamespace: `${REGIONS[i % REGIONS.length]}.${opts.prefix}.${slug}`,
      tags: [team, 'simulated', role.toLowerCase()],
      // Spread the degraded ones evenly instead of putting them all at the start.
      health: Math.floor((i + 1) / degradedEvery) > Math.floor(i / degradedEvery) ? 'degraded' : 'ok',
      integrations,
    });
  }
  return fleet;
}

interface Counters {
  deaths: number;
  recoveries: number;
  metricsSent: number;
  metricsFailed: number;
  audits: number;
  registered: number;
  registerFailed: number;
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
}

const n = (v: number) => v.toLocaleString('en');

/** One simulated project: its heartbeat publisher and audit responder, replaced by new ones after an outage. */
class SimulatedMember {
  heartbeat: FederationHeartbeat | undefined;
  responder: ActionResponder | undefined;
  published = 0;
  failed = 0;
  alive = false;
  returnTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly project: SimulatedProject,
    private readonly make: (p: SimulatedProject) => { hb: FederationHeartbeat; responder?: ActionResponder },
  ) {}

  start(): void {
    const { hb, responder } = this.make(this.project);
    this.heartbeat = hb;
    this.responder = responder;
    this.alive = true;
    responder?.start();
    hb.start().catch((err: Error) => console.error(`${this.project.slug}: ${err.message}`));
  }

  async die(): Promise<void> {
    this.alive = false;
    const hb = this.heartbeat;
    const responder = this.responder;
    this.heartbeat = undefined;
    this.responder = undefined;
    if (hb) {
      this.published += hb.stats.published;
      this.failed += hb.stats.failed;
      // A simulated death is a crash, not a planned stop: the service must notice the silence.
      await hb.stop({ leave: false });
    }
    await responder?.stop();
  }

  get stats() {
    return {
      published: this.published + (this.heartbeat?.stats.published ?? 0),
      failed: this.failed + (this.heartbeat?.stats.failed ?? 0),
    };
  }
}

/** Registers the fleet through the API with allow_fanout [audit], so that "Audit all" reaches it. */
async function registerFleet(
  fleet: SimulatedProject[],
  apiUrl: string,
  token: string | undefined,
  counters: Counters,
  stopped: () => boolean,
): Promise<string | undefined> {
  let next = 0;
  let failure: string | undefined;
  const worker = async () => {
    while (!stopped() && failure === undefined) {
      const p = fleet[next++];
      if (!p) return;
      try {
        const res = await fetch(`${apiUrl}/api/fed/projects`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body: JSON.stringify({
            slug: p.slug,
            name: p.name,
            hub_url: `http://${p.slug}.sim.invalid:8000`,
            mesh_namespace: p.meshNamespace,
            tags: p.tags,
            allow_fanout: ['audit'],
          }),
        });
        if (res.status === 401)
          failure = `${apiUrl} refused the admin token (set --admin-token or FED_ADMIN_TOKEN)`;
        else if (res.status >= 300) counters.registerFailed++;
        else counters.registered++;
      } catch (err) {
        failure = `${apiUrl} cannot be reached (${(err as Error).message})`;
      }
    }
  };
  await Promise.all(Array.from({ length: REGISTER_CONCURRENCY }, worker));
  return failure;
}

export const simulateCommand: Command = {
  summary:
    'run N fake projects that beat, die and come back, publish metrics and answer audits; Ctrl-C stops',
  usage: `federation simulate --projects N [options]

Runs N simulated projects <prefix>-0 … <prefix>-(N-1) over one NATS connection, in teams (their first
tag, for the grouped ecosystem view) and regions (the mesh namespace prefix: eu.<prefix>, us.…, ap.…).
Their first heartbeats are spread over one interval and every later one is jittered (±10 %). Each
project answers the audit action; unless --no-audit, the fleet is registered through the API with
allow_fanout [audit] so that "Audit all" reaches it. A progress line runs until Ctrl-C, then a summary.

  --projects N         how many projects (required)
  --interval S         seconds between each project's heartbeats (default 30)
  --prefix P           slug prefix (default sim)
  --degraded-ratio r   fraction 0..1 of projects reporting health "degraded" (default 0)
  --integrations       projects announce integrations with each other (edges in the graph)
  --teams N            how many teams (1 to ${TEAMS.length}; default one per 20 projects, at most ${TEAMS.length})
  --churn r            fraction of the projects per minute that die (fall silent) and come back after
                       ${OUTAGE_INTERVALS.min} to ${OUTAGE_INTERVALS.max} intervals (default 0; e.g. 0.05)
  --metrics            publish audit and graph summaries through JetStream, each project every
                       --metrics-every seconds (default 60)
  --metrics-every S    seconds between a project's metrics summaries
  --no-audit           neither answer audits nor register allow_fanout
  --api-url URL        the Federation API to register the fleet with (default ${DEFAULT_API_URL})
  --admin-token T      its admin token (default FED_ADMIN_TOKEN)
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
        teams: { type: 'string' },
        churn: { type: 'string', default: '0' },
        metrics: { type: 'boolean', default: false },
        'metrics-every': { type: 'string', default: '60' },
        'no-audit': { type: 'boolean', default: false },
        'api-url': { type: 'string', default: DEFAULT_API_URL },
        'admin-token': { type: 'string' },
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
    const teams = values.teams === undefined ? undefined : Number(values.teams);
    if (teams !== undefined && (!Number.isInteger(teams) || teams < 1 || teams > TEAMS.length)) {
      return fail(`--teams ${JSON.stringify(values.teams)} is invalid: expected 1 to ${TEAMS.length}`);
    }
    const churn = Number(values.churn);
    if (!(churn >= 0 && churn <= 60)) {
      return fail(
        `--churn ${JSON.stringify(values.churn)} is invalid: expected a fraction per minute, 0 to 60`,
      );
    }
    const metricsEveryS = Number(values['metrics-every']);
    if (!(metricsEveryS >= 1 && metricsEveryS <= 86_400)) {
      return fail(
        `--metrics-every ${JSON.stringify(values['metrics-every'])} is invalid: expected seconds from 1 to 86400`,
      );
    }
    const apiUrl = values['api-url'].replace(/\/+$/, '');
    if (!/^https?:\/\/\S+$/.test(apiUrl)) {
      return fail(`--api-url ${JSON.stringify(values['api-url'])} is invalid: expected http://host:port`);
    }
    const audit = !values['no-audit'];
    const adminToken = values['admin-token'] ?? process.env.FED_ADMIN_TOKEN;
    const natsUrl = values['nats-url'] ?? process.env.NATS_URL ?? DEFAULT_NATS_URL;

    let nc: NatsConnection;
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
    const js = jetstream(nc);
    const counters: Counters = {
      deaths: 0,
      recoveries: 0,
      metricsSent: 0,
      metricsFailed: 0,
      audits: 0,
      registered: 0,
      registerFailed: 0,
    };
    let stopping = false;
    const startedAt = Date.now();

    const fleet = simulatedFleet({
      projects,
      prefix,
      degradedRatio,
      integrations: values.integrations,
      ...(teams === undefined ? {} : { teams }),
    });
    const sendMetrics = (
      p: SimulatedProject,
      kind: 'audit' | 'graph',
      metrics: Record<string, number | string>,
    ) => {
      publishMetrics(nc, p.slug, metrics, kind, { js }).then(
        () => {
          counters.metricsSent++;
        },
        () => {
          counters.metricsFailed++;
        },
      );
    };
    const auditResult = (p: SimulatedProject) => {
      const findings =
        p.health === 'degraded' ? 1 + Math.floor(Math.random() * 5) : Math.floor(Math.random() * 2);
      return {
        'audit.ok_count': 20 + Math.floor(Math.random() * 30),
        'audit.error_count': findings,
        'audit.last_result': findings === 0 ? 'pass' : 'warn',
        'coverage.percent': Math.round((60 + Math.random() * 35) * 10) / 10,
      };
    };
    const members = fleet.map(
      (p) =>
        new SimulatedMember(p, (project) => {
          const hb = new FederationHeartbeat({
            connection: nc,
            slug: project.slug,
            hubUrl: `http://${project.slug}.sim.invalid:8000`,
            meshNamespace: project.meshNamespace,
            intervalS,
            version: 'sim-1.0.0',
            name: project.name,
            tags: project.tags,
            health: project.health,
            integrations: project.integrations,
            env: {},
            logger: { warn: (m) => console.error(m) },
          });
          if (!audit) return { hb };
          const responder = new ActionResponder({
            nc,
            slug: project.slug,
            meshNamespace: project.meshNamespace,
            allowed: ['audit'],
          });
          responder.onAction('audit', async () => {
            await new Promise((r) => setTimeout(r, 20 + Math.random() * 180));
            const result = auditResult(project);
            counters.audits++;
            if (values.metrics) sendMetrics(project, 'audit', result);
            return { findings: result['audit.error_count'], checked: result['audit.ok_count'] };
          });
          return { hb, responder };
        }),
    );

    let registration: Promise<void> = Promise.resolve();
    if (audit) {
      registration = registerFleet(fleet, apiUrl, adminToken, counters, () => stopping).then((failure) => {
        if (failure) {
          console.error(
            `\nfederation simulate: allow_fanout not registered: ${failure}; audits are answered, but "Audit all" reports not_allowed`,
          );
        }
      });
    }

    const starts = members.map((m, i) =>
      setTimeout(
        () => m.start(),
        // Spread over one interval, each at a random point of its slot, so the fleet never beats in lockstep.
        ((i + Math.random()) / members.length) * intervalS * 1000,
      ),
    );

    // Churn: deaths per second = projects × churn / 60, the fraction carried over between ticks.
    let owed = 0;
    const churnTimer =
      churn > 0
        ? setInterval(() => {
            owed += (projects * churn) / 60;
            while (owed >= 1) {
              owed -= 1;
              const alive = members.filter((m) => m.alive);
              const victim = alive[Math.floor(Math.random() * alive.length)];
              if (!victim) break;
              counters.deaths++;
              void victim.die();
              const outage =
                (OUTAGE_INTERVALS.min + Math.random() * (OUTAGE_INTERVALS.max - OUTAGE_INTERVALS.min)) *
                intervalS *
                1000;
              victim.returnTimer = setTimeout(() => {
                if (stopping) return;
                counters.recoveries++;
                victim.start();
              }, outage);
            }
          }, 1000)
        : undefined;

    // Metrics: each second, the next slice of living projects publishes a graph summary (and an audit one).
    let cursor = 0;
    let metricsOwed = 0;
    const metricsTimer = values.metrics
      ? setInterval(() => {
          metricsOwed += projects / metricsEveryS;
          while (metricsOwed >= 1) {
            metricsOwed -= 1;
            const m = members[cursor++ % members.length];
            if (!m?.alive) continue;
            const k = m.project.integrations?.length ?? 0;
            sendMetrics(m.project, 'graph', {
              'graph.nodes': 50 + ((cursor * 17) % 400),
              'graph.edges': 80 + ((cursor * 29) % 900) + k,
            });
            sendMetrics(m.project, 'audit', auditResult(m.project));
          }
        }, 1000)
      : undefined;

    const degraded = fleet.filter((p) => p.health === 'degraded').length;
    const teamCount = new Set(fleet.map((p) => p.team)).size;
    console.error(
      `simulating ${n(projects)} projects (${prefix}-*, ${teamCount} teams, ${degraded} degraded${values.integrations ? ', with integrations' : ''}${churn > 0 ? `, churn ${churn}/min` : ''}${values.metrics ? ', metrics' : ''}${audit ? ', answering audits' : ''}) every ${intervalS} s on ${natsUrl}; Ctrl-C stops`,
    );
    const totals = () => {
      let published = 0;
      let failed = 0;
      let up = 0;
      for (const m of members) {
        const s = m.stats;
        published += s.published;
        failed += s.failed;
        if (m.alive) up++;
      }
      return { published, failed, up };
    };
    const line = () => {
      const t = totals();
      const parts = [
        `[${formatDuration(Date.now() - startedAt)}] ${n(t.up)} up, ${n(projects - t.up)} down`,
        `${n(t.published)} heartbeats (${n(t.failed)} failed)`,
      ];
      if (churn > 0) parts.push(`${n(counters.deaths)} deaths, ${n(counters.recoveries)} recoveries`);
      if (values.metrics)
        parts.push(`${n(counters.metricsSent)} metrics (${n(counters.metricsFailed)} failed)`);
      if (audit) {
        parts.push(
          `${n(counters.registered)}/${n(projects)} registered for audit, ${n(counters.audits)} audits answered`,
        );
      }
      return parts.join(' · ');
    };
    const tty = process.stderr.isTTY === true;
    const progress = setInterval(
      () => {
        if (tty) process.stderr.write(`\r\x1b[2K${line()}`);
        else console.error(line());
      },
      tty ? PROGRESS_TTY_MS : PROGRESS_LOG_MS,
    );

    const signal = await untilSignal();
    stopping = true;
    clearInterval(progress);
    if (churnTimer) clearInterval(churnTimer);
    if (metricsTimer) clearInterval(metricsTimer);
    for (const t of starts) clearTimeout(t);
    for (const m of members) clearTimeout(m.returnTimer);
    await Promise.all(members.map((m) => m.die()));
    await registration;
    await nc.drain().catch(() => nc.close());
    const t = totals();
    if (tty) process.stderr.write('\n');
    const summary = [`${n(t.published)} heartbeats (${n(t.failed)} failed)`];
    if (churn > 0) summary.push(`${n(counters.deaths)} deaths and ${n(counters.recoveries)} recoveries`);
    if (values.metrics) {
      summary.push(`${n(counters.metricsSent)} metrics summaries (${n(counters.metricsFailed)} failed)`);
    }
    if (audit)
      summary.push(`${n(counters.audits)} audits answered, ${n(counters.registered)} projects registered`);
    console.error(
      `${signal}: stopped ${projects} simulated projects after ${formatDuration(Date.now() - startedAt)}: ${summary.join(', ')}`,
    );
    return 0;
  },
};
