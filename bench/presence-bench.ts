/**
 * The presence benchmark: heartbeats through real NATS into real PostgreSQL with the real app, and
 * the seed's per-message path on the same workload in the same run. See bench/README.md.
 */
import { loadavg } from 'node:os';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { type App, buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { type Heartbeat, presenceSubject, type StatusEvent } from '../src/protocol/index.ts';
import {
  counterValue,
  createDatabase,
  type DatabaseHandle,
  DEFAULT_POSTGRES_ADMIN_URL,
  type NatsHandle,
  percentile,
  runPublisher,
  sleep,
  startNatsServer,
  until,
} from './bench-infra.ts';
import { PerMessageWorker } from './per-message-worker.ts';

export interface BenchOptions {
  quick: boolean;
  /** Distinct projects in the load (10,000). */
  projects: number;
  /** Measured rounds of `projects` heartbeats through the service. */
  rounds: number;
  /** Rounds through the per-message baseline (it is ~30× slower, so fewer; the rate is per second). */
  baselineRounds: number;
  /** The baseline stops after this long and reports its rate so far. */
  baselineMaxS: number;
  /** Heartbeats in flight at most (published, not yet received by the consumer). */
  window: number;
  /** Concurrent publish → visible probes. */
  probeLoops: number;
  probeProjects: number;
  offlineVictims: number;
  offlineKeepers: number;
  offlineAfterS: number;
  degradedAfterS: number;
  /** An existing NATS server; default: the benchmark starts its own. */
  natsUrl?: string;
  postgresAdminUrl: string;
  log: (line: string) => void;
}

export function benchDefaults(quick: boolean): Omit<BenchOptions, 'log'> {
  return {
    quick,
    projects: 10_000,
    rounds: quick ? 30 : 60,
    baselineRounds: quick ? 1 : 3,
    baselineMaxS: quick ? 6 : 20,
    window: 10_000,
    probeLoops: 2,
    probeProjects: 100,
    offlineVictims: quick ? 100 : 300,
    offlineKeepers: quick ? 150 : 400,
    offlineAfterS: 2,
    // Lateness-based degraded off: the pauses between phases would otherwise flip the whole load twice.
    degradedAfterS: 0,
    postgresAdminUrl: DEFAULT_POSTGRES_ADMIN_URL,
  };
}

export interface BenchResult {
  quick: boolean;
  projects: number;
  ingest_heartbeats: number;
  ingest_hb_per_s: number;
  ingest_received_per_s: number;
  ingest_written_rows: number;
  ingest_flushes: number;
  ingest_flush_mean_ms: number;
  ingest_publisher_blocked_ms: number;
  visible_samples: number;
  visible_timeouts: number;
  visible_p50_ms: number;
  visible_p99_ms: number;
  visible_idle_p50_ms: number;
  visible_idle_p99_ms: number;
  offline_samples: number;
  offline_missed: number;
  offline_false: number;
  offline_delay_p50_ms: number;
  offline_delay_p99_ms: number;
  offline_delay_max_ms: number;
  per_message_heartbeats: number;
  per_message_hb_per_s: number;
  ratio: number;
  loadavg_start: number[];
  loadavg_end: number[];
  duration_s: number;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const loads = () => loadavg().map((l) => Math.round(l * 100) / 100);

function heartbeatFor(slug: string, version: string): Heartbeat {
  return {
    project_slug: slug,
    hub_url: `http://${slug}.bench.invalid:8000`,
    mesh_namespace: `hub.${slug}`,
    timestamp: new Date().toISOString(),
    version,
  };
}

async function histogram(app: App, name: string): Promise<{ sum: number; count: number }> {
  const metric = app.metricsRegistry.getSingleMetric(name);
  if (!metric) return { sum: 0, count: 0 };
  const { values } = await metric.get();
  const pick = (suffix: string) =>
    values
      .filter((v) => (v as { metricName?: string }).metricName === `${name}${suffix}`)
      .reduce((a, v) => a + v.value, 0);
  return { sum: pick('_sum'), count: pick('_count') };
}

/** Publishes one probe heartbeat and polls the API until its last_heartbeat_at moves: publish → visible. */
async function probeOnce(
  app: App,
  nc: NatsConnection,
  slug: string,
  before: string | null,
): Promise<{ ms: number; seen: string | null }> {
  const t0 = performance.now();
  nc.publish(presenceSubject(slug), JSON.stringify(heartbeatFor(slug, 'probe')));
  for (;;) {
    const res = await app.inject({ method: 'GET', url: `/api/fed/projects/${slug}` });
    const seen =
      res.statusCode === 200 ? (res.json() as { last_heartbeat_at: string | null }).last_heartbeat_at : null;
    if (seen !== null && seen !== before) return { ms: performance.now() - t0, seen };
    if (performance.now() - t0 > 10_000) return { ms: Number.POSITIVE_INFINITY, seen: before };
    // Every request is served by the app's own event loop, so poll gently (10 ms resolution).
    await sleep(10);
  }
}

/** `loops` probes in parallel, each over its own share of `slugs`, until `stop()` says so (or `count` each). */
async function runProbes(
  app: App,
  nc: NatsConnection,
  slugs: string[],
  lastSeen: Map<string, string | null>,
  loops: number,
  stop: () => boolean,
  maxPerLoop = Number.POSITIVE_INFINITY,
  onPublish: () => void = () => {},
): Promise<{ samples: number[]; timeouts: number }> {
  const samples: number[] = [];
  let timeouts = 0;
  await Promise.all(
    Array.from({ length: loops }, async (_, j) => {
      const mine = slugs.filter((_, i) => i % loops === j);
      for (let k = 0; k < maxPerLoop && !stop(); k++) {
        const slug = mine[k % mine.length] as string;
        onPublish();
        const { ms, seen } = await probeOnce(app, nc, slug, lastSeen.get(slug) ?? null);
        lastSeen.set(slug, seen);
        if (Number.isFinite(ms)) samples.push(ms);
        else timeouts++;
        await sleep(10);
      }
    }),
  );
  return { samples, timeouts };
}

interface OfflineOutcome {
  delays: number[];
  missed: number;
}

/** Projects beating every 400 ms (±10 %) from the bench's connection, in the background of other phases. */
class BackgroundFleet {
  readonly #nc: NatsConnection;
  readonly #due = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;
  published = 0;

  constructor(nc: NatsConnection, periodMs = 400) {
    this.#nc = nc;
    this.#timer = setInterval(() => {
      const now = Date.now();
      for (const [slug, at] of this.#due) {
        if (at > now) continue;
        this.#nc.publish(presenceSubject(slug), JSON.stringify(heartbeatFor(slug, 'fleet')));
        this.published++;
        this.#due.set(slug, now + periodMs * (0.9 + 0.2 * Math.random()));
      }
    }, 10);
    this.periodMs = periodMs;
  }

  readonly periodMs: number;

  add(slugs: string[]): void {
    const now = Date.now();
    for (const s of slugs) this.#due.set(s, now + Math.random() * this.periodMs);
  }

  remove(slugs: string[]): void {
    for (const s of slugs) this.#due.delete(s);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#due.clear();
  }
}

/** Watches fed.status.> for the whole run: who went online, offline, and when the bench saw it. */
class StatusWatch {
  readonly online = new Set<string>();
  readonly offlineAt = new Map<string, number>();
  /** Projects that must not go offline (still beating); any offline event for one is a false offline. */
  readonly live = new Set<string>();
  falseOffline = 0;
  /** False offline events by the phase the bench was in when they arrived. */
  readonly falseByPhase = new Map<string, number>();
  phase = 'setup';
  readonly #sub;

  constructor(nc: NatsConnection) {
    this.#sub = nc.subscribe('fed.status.>', {
      callback: (err, msg) => {
        if (err) return;
        const at = Date.now();
        const e = msg.json<StatusEvent>();
        if (e.to === 'online') this.online.add(e.slug);
        if (e.to !== 'offline') return;
        if (this.live.has(e.slug)) {
          this.falseOffline++;
          this.falseByPhase.set(this.phase, (this.falseByPhase.get(this.phase) ?? 0) + 1);
        } else if (!this.offlineAt.has(e.slug)) this.offlineAt.set(e.slug, at);
      },
    });
  }

  stop(): void {
    this.#sub.unsubscribe();
  }
}

/**
 * Keepers and victims beat every 400 ms; then the victims stop together (fewer than half of the live
 * projects, so the mass-offline guard rightly stays out of it). For each victim: the time its
 * fed.status offline event reached the bench − (its last heartbeat's receive time + the threshold).
 * The keepers go on beating through the later phases.
 */
async function offlinePhase(
  fleet: BackgroundFleet,
  watch: StatusWatch,
  db: pg.Client,
  o: BenchOptions,
): Promise<OfflineOutcome> {
  const keepers = Array.from(
    { length: o.offlineKeepers },
    (_, i) => `bench-keep-${String(i).padStart(4, '0')}`,
  );
  const victims = Array.from(
    { length: o.offlineVictims },
    (_, i) => `bench-off-${String(i).padStart(4, '0')}`,
  );
  for (const s of [...keepers, ...victims]) watch.live.add(s);
  fleet.add([...keepers, ...victims]);
  await until(
    () => [...keepers, ...victims].every((s) => watch.online.has(s)),
    'every offline-phase project online',
    20_000,
  );
  await sleep(1200);
  fleet.remove(victims);
  for (const v of victims) watch.live.delete(v);
  await until(
    () => victims.every((v) => watch.offlineAt.has(v)),
    'offline events for every stopped project',
    (o.offlineAfterS + 10) * 1000,
  ).catch(() => 0);

  const { rows } = await db.query<{ slug: string; last: Date }>(
    'select slug, last_heartbeat_at as last from projects where slug = any($1)',
    [victims],
  );
  const delays: number[] = [];
  for (const r of rows) {
    const at = watch.offlineAt.get(r.slug);
    if (at !== undefined) delays.push(at - (new Date(r.last).getTime() + o.offlineAfterS * 1000));
  }
  return { delays, missed: victims.length - delays.length };
}

export async function runPresenceBench(o: BenchOptions): Promise<BenchResult> {
  const t0 = Date.now();
  const loadStart = loads();
  const line = o.log;
  line(
    `presence bench${o.quick ? ' (quick)' : ''}: ${o.projects} projects, ${o.rounds} rounds through the service, ${o.baselineRounds} through the per-message baseline; loadavg ${loadStart.join(' ')}`,
  );

  let nats: NatsHandle | undefined;
  let database: DatabaseHandle | undefined;
  let app: App | undefined;
  let nc: NatsConnection | undefined;
  let db: pg.Client | undefined;
  let fleet: BackgroundFleet | undefined;
  let watch: StatusWatch | undefined;
  let pollReceived = false;
  try {
    nats = o.natsUrl ? { url: o.natsUrl, close: async () => {} } : await startNatsServer();
    database = await createDatabase(o.postgresAdminUrl);
    const config = loadConfig({
      DATABASE_URL: database.url,
      NATS_URL: nats.url,
      FED_PROJECTS_FILE: 'none',
      LOG_LEVEL: 'silent',
      FED_OFFLINE_AFTER_S: String(o.offlineAfterS),
      FED_DEGRADED_AFTER_S: String(o.degradedAfterS),
    });
    app = await buildApp({ config, logger: false });
    const theApp = app;
    await until(() => theApp.nats.connected, 'the app to connect to NATS', 10_000);
    nc = await connect({ servers: nats.url, name: 'bench' });
    const bnc = nc;
    db = new pg.Client({ connectionString: database.url });
    await db.connect();
    const pgc = db;
    fleet = new BackgroundFleet(nc);
    watch = new StatusWatch(nc);
    await nc.flush();
    line(`  setup: nats ${nats.url}, fresh PostgreSQL database, app built (${Date.now() - t0} ms)`);

    // 1. Offline detection. Its keepers go on beating underneath everything that follows.
    watch.phase = 'offline detection';
    const off = await offlinePhase(fleet, watch, db, o);
    line(
      `  offline detection (FED_OFFLINE_AFTER_S=${o.offlineAfterS}, FED_DEGRADED_AFTER_S=${o.degradedAfterS}, sweep every ${config.sweepIntervalS} s): ${off.delays.length} of ${o.offlineVictims + o.offlineKeepers} projects stopped, delay past the threshold p50 ${round1(percentile(off.delays, 50))} ms, p99 ${round1(percentile(off.delays, 99))} ms, max ${round1(percentile(off.delays, 100))} ms; missed ${off.missed}`,
    );

    // The publisher thread may run `window` heartbeats ahead of what the service has received. The
    // bench's own heartbeats (fleet, probes) are taken out of the service's received counter.
    const consumed = new SharedArrayBuffer(4);
    const consumedView = new Int32Array(consumed);
    let probesPublished = 0;
    const ours = () => probesPublished + (fleet?.published ?? 0);
    let received0 = 0;
    let ours0 = 0;
    const resetConsumed = async () => {
      received0 = await counterValue(theApp, 'federation_heartbeats_received_total', { transport: 'nats' });
      ours0 = ours();
      Atomics.store(consumedView, 0, 0);
    };
    await resetConsumed();
    pollReceived = true;
    const receivedPoller = (async () => {
      while (pollReceived) {
        const r = await counterValue(theApp, 'federation_heartbeats_received_total', { transport: 'nats' });
        Atomics.store(consumedView, 0, r - received0 - (ours() - ours0));
        await sleep(2);
      }
    })();

    // 2. Register the load's projects and the probes (first heartbeats insert rows; not measured).
    watch.phase = 'registration';
    const prefix = 'bench-load';
    const probes = Array.from(
      { length: o.probeProjects },
      (_, i) => `bench-probe-${String(i).padStart(3, '0')}`,
    );
    const versionCount = async (version: string) =>
      (
        await pgc.query<{ n: number }>(
          // Only the load's heartbeats carry versions r<n>: a cheap scan, polled only once all were received.
          'select count(*)::int as n from projects where version = $1',
          [version],
        )
      ).rows[0]?.n ?? 0;
    for (const p of probes) bnc.publish(presenceSubject(p), JSON.stringify(heartbeatFor(p, 'register')));
    probesPublished += probes.length;
    const publish = (firstRound: number, rounds: number) =>
      runPublisher({
        natsUrl: (nats as NatsHandle).url,
        prefix,
        projects: o.projects,
        firstRound,
        rounds,
        window: o.window,
        consumed,
      });
    await publish(0, 1);
    await until(async () => (await versionCount('r0')) === o.projects, 'registration of the load projects');
    // Let the sweeper claim (and publish) the 10k "online" transitions before measuring.
    await until(
      async () =>
        (
          await pgc.query<{ n: number }>(
            "select count(*)::int as n from projects where version = 'r0' and status = 'online'",
          )
        ).rows[0]?.n === o.projects,
      'the load projects to be claimed online',
    );
    const lastSeen = new Map<string, string | null>();
    const { rows: probeRows } = await pgc.query<{ slug: string; last: Date | null }>(
      'select slug, last_heartbeat_at as last from projects where slug = any($1)',
      [probes],
    );
    for (const r of probeRows) lastSeen.set(r.slug, r.last ? new Date(r.last).toISOString() : null);
    line(
      `  registered ${o.projects} load projects and ${probes.length} probes; ${o.offlineKeepers} keepers beat every ${fleet.periodMs} ms in the background`,
    );

    // 3. Publish → visible with only the background fleet, for reference.
    watch.phase = 'probes without load';
    const countProbe = () => {
      probesPublished++;
    };
    const idle = await runProbes(
      app,
      nc,
      probes,
      lastSeen,
      o.probeLoops,
      () => false,
      o.quick ? 5 : 15,
      countProbe,
    );
    line(
      `  publish → visible in GET /api/fed/projects/:slug, no load: p50 ${round1(percentile(idle.samples, 50))} ms, p99 ${round1(percentile(idle.samples, 99))} ms (${idle.samples.length} samples)`,
    );

    // 4. Sustained ingestion, probed while it runs.
    watch.phase = 'ingestion';
    await resetConsumed();
    const written0 = await counterValue(app, 'federation_heartbeats_written_total');
    const flush0 = await histogram(app, 'federation_heartbeat_flush_seconds');
    const loadHeartbeats = o.projects * o.rounds;
    let loadDone = false;
    const probing = runProbes(
      theApp,
      nc,
      probes,
      lastSeen,
      o.probeLoops,
      () => loadDone,
      undefined,
      countProbe,
    );
    const receiveWatch = until(
      () => Atomics.load(consumedView, 0) >= loadHeartbeats,
      'the service to receive the load',
      300_000,
      2,
    );
    const pub = await publish(1, o.rounds);
    const receivedAllAt = await receiveWatch;
    const writtenAt = await until(
      async () => (await versionCount(`r${o.rounds}`)) === o.projects,
      'the last round to be written',
      120_000,
      10,
    );
    loadDone = true;
    const underLoad = await probing;
    const ingestSeconds = (writtenAt - pub.startedAt) / 1000;
    const ingestRate = loadHeartbeats / ingestSeconds;
    const receivedRate = loadHeartbeats / ((receivedAllAt - pub.startedAt) / 1000);
    const written = (await counterValue(app, 'federation_heartbeats_written_total')) - written0;
    const flush1 = await histogram(app, 'federation_heartbeat_flush_seconds');
    const flushes = flush1.count - flush0.count;
    const flushMeanMs = flushes > 0 ? ((flush1.sum - flush0.sum) / flushes) * 1000 : 0;
    line(
      `  ingestion: ${loadHeartbeats} heartbeats in ${round1(ingestSeconds)} s = ${Math.round(ingestRate)} heartbeats/s published → written (received at ${Math.round(receivedRate)}/s; ${written} rows written in ${flushes} flushes of ${round1(flushMeanMs)} ms mean; publisher waited ${pub.blockedMs} ms for the window)`,
    );
    line(
      `  publish → visible under load: p50 ${round1(percentile(underLoad.samples, 50))} ms, p99 ${round1(percentile(underLoad.samples, 99))} ms (${underLoad.samples.length} samples, ${underLoad.timeouts} timed out); false offline among beating projects: ${watch.falseOffline}${watch.falseOffline ? ` (${[...watch.falseByPhase].map(([k, v]) => `${v} during ${k}`).join(', ')})` : ''}`,
    );
    const falseOffline = watch.falseOffline;

    // 5. The seed's path on the same projects: one UPDATE and commit per heartbeat.
    fleet.stop();
    pollReceived = false;
    await receivedPoller;
    await app.close();
    app = undefined;
    Atomics.store(consumedView, 0, 0);
    let baseOver = false;
    const worker = new PerMessageWorker(database.url, (n) => {
      if (!baseOver) Atomics.store(consumedView, 0, n);
    });
    await worker.start(nc);
    await nc.flush();
    const baseHeartbeats = o.projects * o.baselineRounds;
    // On a busy machine the seed's path can take minutes; past the time limit its rate so far stands.
    const baseDeadline = Date.now() + o.baselineMaxS * 1000;
    const basePublishing = publish(o.rounds + 1, o.baselineRounds);
    const baseDone = await until(
      () => worker.processed >= baseHeartbeats || Date.now() >= baseDeadline,
      'the per-message worker',
      o.baselineMaxS * 1000 + 60_000,
      5,
    );
    const baseProcessed = worker.processed;
    // Whatever the publisher still holds back is let through to end it; the rate is already taken.
    baseOver = true;
    Atomics.store(consumedView, 0, baseHeartbeats);
    const basePub = await basePublishing;
    await worker.stop();
    const baseRate = baseProcessed / ((baseDone - basePub.startedAt) / 1000);
    const ratio = ingestRate / baseRate;
    line(
      `  per-message baseline (seed path, UPDATE + commit per heartbeat): ${baseProcessed} of ${baseHeartbeats} heartbeats at ${Math.round(baseRate)}/s (${worker.failed} failed)`,
    );
    const loadEnd = loads();
    line(
      `  batched/per-message = ${round1(ratio)}×; loadavg ${loadEnd.join(' ')}; ${round1((Date.now() - t0) / 1000)} s in all`,
    );

    return {
      quick: o.quick,
      projects: o.projects,
      ingest_heartbeats: loadHeartbeats,
      ingest_hb_per_s: Math.round(ingestRate),
      ingest_received_per_s: Math.round(receivedRate),
      ingest_written_rows: written,
      ingest_flushes: flushes,
      ingest_flush_mean_ms: round1(flushMeanMs),
      ingest_publisher_blocked_ms: pub.blockedMs,
      visible_samples: underLoad.samples.length,
      visible_timeouts: underLoad.timeouts,
      visible_p50_ms: round1(percentile(underLoad.samples, 50)),
      visible_p99_ms: round1(percentile(underLoad.samples, 99)),
      visible_idle_p50_ms: round1(percentile(idle.samples, 50)),
      visible_idle_p99_ms: round1(percentile(idle.samples, 99)),
      offline_samples: off.delays.length,
      offline_missed: off.missed,
      offline_false: falseOffline,
      offline_delay_p50_ms: round1(percentile(off.delays, 50)),
      offline_delay_p99_ms: round1(percentile(off.delays, 99)),
      offline_delay_max_ms: round1(percentile(off.delays, 100)),
      per_message_heartbeats: baseProcessed,
      per_message_hb_per_s: Math.round(baseRate),
      ratio: round1(ratio),
      loadavg_start: loadStart,
      loadavg_end: loadEnd,
      duration_s: round1((Date.now() - t0) / 1000),
    };
  } finally {
    pollReceived = false;
    fleet?.stop();
    watch?.stop();
    await app?.close().catch(() => {});
    await db?.end().catch(() => {});
    await nc?.close().catch(() => {});
    await database?.drop().catch((err: Error) => line(`  could not drop the bench database: ${err.message}`));
    await nats?.close();
  }
}
