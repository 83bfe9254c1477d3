/**
 * `npm run bench -- --scale [N]` (N = 1,000,000; `--quick`: 100,000): one service carrying N projects.
 * See bench/README.md ("Scale") for what each figure means and how it is measured.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { buildApp } from '../src/app.ts';
import { encodeCursor } from '../src/catalog/catalog-service.ts';
import { loadConfig } from '../src/config.ts';
import { freePort } from '../test/helpers/ports.ts';
import {
  counterValue,
  createDatabase,
  DEFAULT_POSTGRES_ADMIN_URL,
  ensureServiceBuilt,
  measureNatsReceive,
  percentile,
  runPublisher,
  SERVICE_BIN,
  SERVICE_NODE_FLAGS,
  sleep,
  startNatsServer,
  until,
} from './bench-infra.ts';
import { measureFlushCeiling } from './flush-ceiling.ts';
import { slugOf } from './publisher-thread.ts';
import type { ScalePublishJob, ScalePublishProgress, ScalePublishResult } from './scale-publisher.ts';

const USAGE = `npm run bench -- --scale [N] [options]

One service process (federation serve on PostgreSQL and a nats-server of the bench's own) carrying N
projects: registers them from a burst of first heartbeats (a fleet starting at once), sets them
through a bulk path to what heartbeats would have left had they kept beating, then runs the seed's
load (every project every 30 s, publishers in processes of their own) for at least 60 s while some
projects fall silent, reads the API under it, then measures idle cost, the writer against a plain
UPDATE and ingestion against NATS receive alone.
Progress on stderr; the last line on stdout is one JSON object.

  N                    projects (default 1000000)
  --quick              100000 projects
  --load-s S           seconds of steady load (default 60, at least 60)
  --silent K           projects that fall silent during the load (default 1000)
  --publishers P       publisher processes (default 2)
  --postgres-url URL   PostgreSQL server to create the database on (default TEST_POSTGRES_URL or local)`;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PREFIX = 'scale';
const PROBES = 4;
/** Victims beat every 10 s (announcing it), so they are due offline 30 s after their last beat. */
const VICTIM_INTERVAL_S = 10;
const CLK_TCK = 100;

interface Options {
  projects: number;
  loadS: number;
  silent: number;
  publishers: number;
  postgresAdminUrl: string;
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const round1 = (n: number) => Math.round(n * 10) / 10;
const loadavgNow = () => loadavg().map((x) => round1(x));

/** CPU ticks (user + system) and RSS of a process, from /proc. */
function procStat(pid: number): { ticks: number; rssMb: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const rssPages = Number(fields[21]);
    return { ticks, rssMb: (rssPages * 4096) / 1024 / 1024 };
  } catch {
    return undefined;
  }
}

/**
 * CPU of a set of processes over time, as % of one core: the service, and PostgreSQL's processes that
 * work for the bench's database (its backends and autovacuum workers) plus the shared background
 * writers (WAL writer, checkpointer, background writer). Other databases' backends are left out, so
 * other work on the machine does not count against the service.
 */
class CpuMeter {
  readonly #last = new Map<number, number>();
  #ticks = 0;
  #since = Date.now();
  constructor(readonly pids: () => Promise<number[]>) {}
  async sample(): Promise<void> {
    for (const pid of await this.pids()) {
      const s = procStat(pid);
      if (!s) continue;
      // A process first seen now was started since the last sample (a new pooled connection, an
      // autovacuum worker): all of its time falls in the window.
      this.#ticks += s.ticks - (this.#last.get(pid) ?? 0);
      this.#last.set(pid, s.ticks);
    }
  }
  async reset(): Promise<void> {
    await this.sample();
    this.#ticks = 0;
    this.#since = Date.now();
  }
  /** Samples every second until `until` returns false, so short-lived processes are counted too. */
  async follow(until: () => boolean): Promise<void> {
    while (until()) {
      await sleep(1000);
      await this.sample();
    }
  }
  /** % of one core since the last reset. */
  async pct(): Promise<number> {
    await this.sample();
    const s = (Date.now() - this.#since) / 1000;
    return round1((this.#ticks / CLK_TCK / Math.max(s, 0.001)) * 100);
  }
}

interface ScalePublisher {
  done: Promise<ScalePublishResult>;
  child: ChildProcess;
  /** The latest progress it reported (every second). */
  progress(): ScalePublishProgress | undefined;
  stop(): void;
}

function runScalePublisher(job: ScalePublishJob): ScalePublisher {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./scale-publisher.ts', import.meta.url)), JSON.stringify(job)],
    { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] },
  );
  let out = '';
  let last: ScalePublishProgress | undefined;
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.on('message', (m) => {
    last = m as ScalePublishProgress;
  });
  const done = new Promise<ScalePublishResult>((resolve, reject) => {
    child.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim()) as ScalePublishResult)
        : reject(new Error(`publisher exited ${code}`)),
    );
  });
  return {
    done,
    child,
    progress: () => last,
    stop: () => {
      if (child.connected) child.send('stop');
    },
  };
}

/** Heartbeats per second a publisher offered between two of its progress reports. */
function offeredRate(a: ScalePublishProgress | undefined, b: ScalePublishProgress | undefined): number {
  if (!a || !b || b.at <= a.at) return 0;
  return ((b.published - a.published) * 1000) / (b.at - a.at);
}

function slices(from: number, to: number, parts: number): Array<[number, number]> {
  const size = Math.ceil((to - from) / parts);
  const out: Array<[number, number]> = [];
  for (let a = from; a < to; a += size) out.push([a, Math.min(to, a + size)]);
  return out;
}

/** Sums a Prometheus series from the text of /metrics, over children matching `labels`. */
function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (!Object.entries(labels).every(([k, v]) => rest.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

type ReadKind = 'page' | 'status_page' | 'slug';

/**
 * The read loop's p99 per phase of the load: `wave`, while the deadlines the bulk path queued fall
 * due (as after a restart); `full_list`, while the whole catalog streams beside the reads; `steady`,
 * the rest. A read that overlaps a phase counts in it.
 */
function readsByPhase(
  reads: ReadonlyArray<{ kind: ReadKind; at: number; ms: number }>,
  phases: { waveEnd: number; fullList: [number, number] },
): Record<string, Record<ReadKind, number> & { reads: number }> {
  const phaseOf = (r: { at: number; ms: number }) =>
    r.at < phases.waveEnd
      ? 'wave'
      : r.at + r.ms >= phases.fullList[0] && r.at <= phases.fullList[1]
        ? 'full_list'
        : 'steady';
  const out: Record<string, Record<ReadKind, number> & { reads: number }> = {};
  for (const phase of ['wave', 'steady', 'full_list']) {
    const of = (kind: ReadKind) =>
      round1(
        percentile(
          reads.filter((r) => r.kind === kind && phaseOf(r) === phase).map((r) => r.ms),
          99,
        ),
      );
    out[phase] = {
      page: of('page'),
      status_page: of('status_page'),
      slug: of('slug'),
      reads: reads.filter((r) => r.kind === 'page' && phaseOf(r) === phase).length,
    };
  }
  return out;
}

/** One request, timed; a failed connection counts as status 0 instead of ending the run. */
async function timed(url: string, init?: RequestInit): Promise<{ ms: number; status: number; body: string }> {
  const t0 = performance.now();
  try {
    const res = await fetch(url, init);
    const body = await res.text();
    return { ms: performance.now() - t0, status: res.status, body };
  } catch {
    return { ms: performance.now() - t0, status: 0, body: '' };
  }
}

export async function runScaleBench(o: Options): Promise<Record<string, unknown>> {
  ensureServiceBuilt();
  const loadavgStart = loadavgNow();
  log(
    `scale bench: ${o.projects} projects, ${o.loadS} s of load, ${o.silent} falling silent; load average ${loadavgStart.join(' ')}`,
  );
  const nats = await startNatsServer();
  const database = await createDatabase(o.postgresAdminUrl);
  const dbName = new URL(database.url).pathname.slice(1);
  const pgc = new pg.Client({ connectionString: database.url });
  let service: ChildProcess | undefined;
  let nc: NatsConnection | undefined;
  const publishers: ChildProcess[] = [];
  try {
    await pgc.connect();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    service = spawn(process.execPath, [...SERVICE_NODE_FLAGS, SERVICE_BIN, 'serve'], {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_URL: database.url,
        NATS_URL: nats.url,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        FED_PROJECTS_FILE: 'none',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const servicePid = service.pid as number;
    await until(
      async () => (await fetch(`${base}/api/fed/health`).catch(() => undefined))?.ok === true,
      'the service to answer',
      60_000,
      100,
    );
    const serviceStart = Date.now();
    log(`  service up (pid ${servicePid}) on PostgreSQL ${dbName} and ${nats.url}`);

    const pgPids = async () =>
      (
        await pgc.query<{ pid: number }>(
          `select pid from pg_stat_activity
           where (datname = $1 and pid <> pg_backend_pid())
              or backend_type in ('walwriter', 'checkpointer', 'background writer', 'autovacuum launcher')`,
          [dbName],
        )
      ).rows.map((r) => r.pid);
    const serviceCpu = new CpuMeter(async () => [servicePid]);
    const pgCpu = new CpuMeter(pgPids);
    let rssMax = 0;
    let rssNow = 0;
    let rssFast = false;
    // The highest RSS of the current phase (registration, then the load with its whole-list read).
    let rssPhaseMax = 0;
    const rssSampler = (async () => {
      while (service?.exitCode === null) {
        rssNow = procStat(servicePid)?.rssMb ?? rssNow;
        rssMax = Math.max(rssMax, rssNow);
        rssPhaseMax = Math.max(rssPhaseMax, rssNow);
        await sleep(rssFast ? 50 : 500);
      }
    })();

    nc = await connect({ servers: nats.url, name: 'scale-bench' });
    const offlineAt = new Map<string, number>();
    /** The time each offline transition says it was claimed (`at`, the service's clock). */
    const offlineClaimedAt = new Map<string, number>();
    const sub = nc.subscribe('fed.status.>');
    void (async () => {
      for await (const m of sub) {
        const e = m.json<{ slug: string; to: string; at: string }>();
        if (e.to === 'offline' && !offlineAt.has(e.slug)) {
          offlineAt.set(e.slug, Date.now());
          offlineClaimedAt.set(e.slug, Date.parse(e.at));
        }
      }
    })();
    const scrape = async (): Promise<string> => {
      for (let attempt = 0; ; attempt++) {
        const r = await timed(`${base}/metrics`);
        if (r.status === 200 || attempt >= 5) return r.body;
        await sleep(200);
      }
    };

    // 1. A whole fleet's first heartbeats at once.
    const probes = Array.from({ length: PROBES }, (_, i) => `scale-probe-${i}`);
    for (const p of probes) {
      nc.publish(
        `hub.presence.${p}`,
        JSON.stringify({
          project_slug: p,
          hub_url: `http://${p}`,
          mesh_namespace: `hub.${p}`,
          timestamp: new Date().toISOString(),
          version: 'p0',
        }),
      );
    }
    const total = o.projects + PROBES;
    const burst = slices(0, o.projects, o.publishers).map(([from, to]) =>
      runScalePublisher({ natsUrl: nats.url, prefix: PREFIX, from, to, mode: 'burst', version: 'b0' }),
    );
    publishers.push(...burst.map((b) => b.child));
    const countRegistered = async () =>
      Number(
        (
          await pgc.query<{ n: string }>(
            'select coalesce(sum(online + degraded + offline), 0) as n from project_status_counts',
          )
        ).rows[0]?.n ?? 0,
      );
    let lastLog = Date.now();
    const registeredAt = await until(
      async () => {
        const n = await countRegistered();
        if (Date.now() - lastLog > 5000) {
          lastLog = Date.now();
          log(`    registered ${n} of ${total}`);
        }
        return n >= total;
      },
      'every project to be registered',
      900_000,
      200,
    );
    const burstResults = await Promise.all(burst.map((b) => b.done));
    const firstPublish = Math.min(...burstResults.map((r) => r.startedAt));
    const lastPublish = Math.max(...burstResults.map((r) => r.finishedAt));
    const registerS = round1((registeredAt - firstPublish) / 1000);
    const rssRegisterMb = rssPhaseMax;
    rssPhaseMax = rssNow;
    const registerMetrics = await scrape();
    const registerDropped = metricValue(registerMetrics, 'federation_heartbeats_rejected_total');
    const registerBufferFull = metricValue(registerMetrics, 'federation_heartbeats_rejected_total', {
      reason: 'buffer_full',
    });
    log(
      `  registration: ${o.projects} first heartbeats published in ${round1((lastPublish - firstPublish) / 1000)} s, all registered ${registerS} s after the first (${round1((registeredAt - lastPublish) / 1000)} s after the last); dropped ${registerDropped} (buffer_full ${registerBufferFull}); service RSS at most ${round1(rssRegisterMb)} MB; load average ${loadavgNow().join(' ')}`,
    );

    // 2. The seed's load. Registration took longer than a beat interval, so the fleet's state is
    // first set through the bulk path to what heartbeats would have left had every project kept
    // beating every 30 s (the silent-to-be every 10 s): online, with its last heartbeat one interval
    // before its next one on the publishers' schedule (never in the future), and that deadline queued.
    const victims = new Set(Array.from({ length: o.silent }, (_, i) => slugOf(PREFIX, i)));
    const fleetSlices = slices(o.silent, o.projects, o.publishers);
    const planAt = Date.now() + 12_000;
    const index = `substring(slug from ${PREFIX.length + 2})::int`;
    const leadMs = `(case when slug !~ '^${PREFIX}-[0-9]+$' then 0
        when ${index} < ${o.silent} then ${VICTIM_INTERVAL_S * 1000} * (1 - ${index}::float8 / ${o.silent})
        ${fleetSlices.map(([a, b]) => `when ${index} < ${b} then 30000 * (1 - (${index} - ${a})::float8 / ${b - a})`).join('\n        ')}
        else 0 end)`;
    const seedFrom = Date.now();
    await pgc.query(
      `update projects set status = 'online',
         status_changed_at = case when status <> 'online' then now() else status_changed_at end,
         last_heartbeat_at = least(now(), to_timestamp(($1::float8 - ${leadMs}) / 1000)),
         reported_health = 'ok', version = 'seed', updated_at = now(),
         interval_s = case when slug ~ '^${PREFIX}-[0-9]+$' and ${index} < ${o.silent} then ${VICTIM_INTERVAL_S} end`,
      [planAt],
    );
    await pgc.query('delete from project_deadlines');
    await pgc.query(
      `insert into project_deadlines (due_at, project_ids)
       select to_timestamp(ceil(extract(epoch from d.due) * 10) / 10), array_agg(d.id)
       from (select id, last_heartbeat_at + (case when interval_s > 0 then interval_s * 1.5 else 45 end) * interval '1 second' as due,
                    (row_number() over () - 1) / 2000 as chunk from projects) d
       group by 1, d.chunk`,
    );
    await pgc.query(
      `with d as (delete from project_status_counts)
       insert into project_status_counts (online, degraded, offline)
       select count(*) filter (where status = 'online'), count(*) filter (where status = 'degraded'),
              count(*) filter (where status = 'offline') from projects`,
    );
    log(
      `  bulk path: every project online with its last heartbeat on the publishers' schedule, in ${round1((Date.now() - seedFrom) / 1000)} s; load average ${loadavgNow().join(' ')}`,
    );
    const victimPub = runScalePublisher({
      natsUrl: nats.url,
      prefix: PREFIX,
      from: 0,
      to: o.silent,
      mode: 'steady',
      intervalS: VICTIM_INTERVAL_S,
      announce: true,
      startAtMs: planAt,
      version: 'v',
    });
    const fleet = fleetSlices.map(([from, to]) =>
      runScalePublisher({
        natsUrl: nats.url,
        prefix: PREFIX,
        from,
        to,
        mode: 'steady',
        intervalS: 30,
        startAtMs: planAt,
        version: 's',
      }),
    );
    const allPublishers = [victimPub, ...fleet];
    publishers.push(...allPublishers.map((b) => b.child));
    await sleep(Math.max(planAt, Date.now()) + 2000 - Date.now());
    await until(
      async () => allPublishers.every((p) => p.progress() !== undefined),
      'the publishers to report',
      60_000,
      100,
    );
    const loadStart = Date.now();
    // Their offline deadline must fall after the service's start-up grace (one offline threshold).
    // They fall silent as late as the load allows: the first 45 s of load take the deadlines the bulk
    // path queued, which no replica wrote and the prune must look up once (as after a restart); a
    // longer --load-s measures detection in the steady state that follows.
    const victimWindowMs = (3 * VICTIM_INTERVAL_S + 12) * 1000;
    const silenceAt = Math.max(
      loadStart + 15_000,
      serviceStart + 75_000,
      loadStart + o.loadS * 1000 - victimWindowMs,
    );
    const loadEnd = Math.max(loadStart + o.loadS * 1000, silenceAt + victimWindowMs);
    const progressAtStart = allPublishers.map((p) => p.progress());
    // Offline events count from here: projects silent since their first heartbeat while the fleet
    // registered could rightly go offline before the bulk path set them beating.
    offlineAt.clear();
    offlineClaimedAt.clear();
    const victimsSilenced = (async () => {
      await sleep(silenceAt - Date.now());
      const p = victimPub.progress();
      victimPub.stop();
      return p;
    })();
    const fleetStopped = (async () => {
      await sleep(loadEnd - Date.now());
      const ps = fleet.map((p) => p.progress());
      for (const p of fleet) p.stop();
      return ps;
    })();
    const m0 = await scrape();
    const written0 = metricValue(m0, 'federation_heartbeats_written_total');
    const windows: number[] = [];
    /** The sweeper's lag (how far past due the oldest deadline its last sweep took was), every 5 s. */
    const sweepLags: number[] = [];
    /** The service's event-loop delay p99 over each 5 s window. */
    const loopP99s: number[] = [];
    await serviceCpu.reset();
    await pgCpu.reset();

    const visible: number[] = [];
    const pages: number[] = [];
    const statusPages: number[] = [];
    const bySlug: number[] = [];
    /** Every read of the read loop: its kind, when it started (epoch ms) and how long it took. */
    const reads: Array<{ kind: ReadKind; at: number; ms: number }> = [];
    const errors: Record<string, number> = {};
    const count = (status: number) => {
      if (status >= 400 || status === 0) errors[status] = (errors[status] ?? 0) + 1;
    };
    const running = () => Date.now() < loadEnd;
    const cpuFollowed = Promise.all([serviceCpu.follow(running), pgCpu.follow(running)]);
    let probeVersion = 0;
    const probeLoops = probes.map(async (p) => {
      await sleep(2000);
      while (running()) {
        const version = `p${++probeVersion}`;
        const t0 = performance.now();
        nc?.publish(
          `hub.presence.${p}`,
          JSON.stringify({
            project_slug: p,
            hub_url: `http://${p}`,
            mesh_namespace: `hub.${p}`,
            timestamp: new Date().toISOString(),
            version,
          }),
        );
        for (;;) {
          const r = await timed(`${base}/api/fed/projects/${p}`);
          if (r.status === 200 && (JSON.parse(r.body) as { version: string }).version === version) break;
          if (performance.now() - t0 > 10_000) break;
          await sleep(10);
        }
        visible.push(performance.now() - t0);
        await sleep(500);
      }
    });
    const readLoop = (async () => {
      await sleep(2000);
      let i = 0;
      while (running()) {
        const n = Math.floor(Math.random() * o.projects);
        const r1 = await timed(
          `${base}/api/fed/projects?limit=100&cursor=${encodeCursor(slugOf(PREFIX, n))}`,
        );
        pages.push(r1.ms);
        reads.push({ kind: 'page', at: Date.now() - r1.ms, ms: r1.ms });
        count(r1.status);
        const r2 = await timed(
          `${base}/api/fed/projects?status=${i++ % 2 ? 'offline' : 'degraded'}&limit=100`,
        );
        statusPages.push(r2.ms);
        reads.push({ kind: 'status_page', at: Date.now() - r2.ms, ms: r2.ms });
        count(r2.status);
        const r3 = await timed(`${base}/api/fed/projects/${slugOf(PREFIX, n)}`);
        bySlug.push(r3.ms);
        reads.push({ kind: 'slug', at: Date.now() - r3.ms, ms: r3.ms });
        count(r3.status);
        await sleep(50);
      }
    })();
    const windowLoop = (async () => {
      let prev = written0;
      let prevAt = Date.now();
      while (running()) {
        await sleep(5000);
        const text = await scrape();
        const w = metricValue(text, 'federation_heartbeats_written_total');
        windows.push(round1((w - prev) / ((Date.now() - prevAt) / 1000)));
        sweepLags.push(metricValue(text, 'federation_status_sweep_lag_seconds') * 1000);
        // prom-client resets its event-loop delay histogram at every scrape: this is the last 5 s.
        loopP99s.push(metricValue(text, 'nodejs_eventloop_lag_p99_seconds') * 1000);
        prev = w;
        prevAt = Date.now();
      }
    })();
    let fullListWindow: [number, number] = [0, 0];
    // The whole catalog while the load runs, once the victims are silent.
    const fullList = (async () => {
      await sleep(Math.max(0, loadEnd - 25_000 - Date.now()));
      const rssBefore = procStat(servicePid)?.rssMb ?? 0;
      rssFast = true;
      const peakBefore = rssMax;
      rssMax = rssBefore;
      const t0 = performance.now();
      const res = await fetch(`${base}/api/fed/projects`, { headers: { 'accept-encoding': 'identity' } });
      const ttfb = performance.now() - t0;
      let bytes = 0;
      let cut: string | undefined;
      const reader = res.body?.getReader();
      try {
        for (;;) {
          const chunk = await reader?.read();
          if (!chunk || chunk.done) break;
          bytes += chunk.value.byteLength;
        }
      } catch (err) {
        // The service ended the stream (a batch failed under the load): a figure, not the end of the run.
        cut = err instanceof Error ? err.message : String(err);
        log(`  whole catalog: the stream was cut after ${bytes} bytes (${cut})`);
      }
      const totalMs = performance.now() - t0;
      fullListWindow = [Date.now() - totalMs, Date.now()];
      const growth = rssMax - rssBefore;
      rssMax = Math.max(rssMax, peakBefore);
      rssFast = false;
      return {
        ttfb,
        totalMs,
        bytes,
        growth,
        status: cut ? `${res.status}, cut` : res.status,
        complete: !cut,
      };
    })();
    const [victimAtSilence, fleetAtEnd] = await Promise.all([
      victimsSilenced,
      fleetStopped,
      cpuFollowed,
      ...probeLoops,
    ]);
    const loadS = (Date.now() - loadStart) / 1000;
    const serviceCpuPct = await serviceCpu.pct();
    const postgresCpuPct = await pgCpu.pct();
    const written = metricValue(await scrape(), 'federation_heartbeats_written_total') - written0;
    const [full] = await Promise.all([fullList, readLoop, windowLoop, ...allPublishers.map((p) => p.done)]);
    // What the publishers sent per second while the load was measured (each from its own reports),
    // against what the service wrote in the same window.
    const offeredPerS = round1(
      offeredRate(progressAtStart[0], victimAtSilence) +
        fleet.reduce((sum, _, i) => sum + offeredRate(progressAtStart[i + 1], fleetAtEnd[i]), 0),
    );
    const offered = Math.round(offeredPerS * loadS);
    const ingestedPerS = round1(written / loadS);
    log(
      `  load: ${offered} heartbeats offered in ${round1(loadS)} s (${offeredPerS}/s), ${written} written (${ingestedPerS}/s; 5 s windows min ${Math.min(...windows)}, max ${Math.max(...windows)}); service CPU ${serviceCpuPct} %, PostgreSQL CPU ${postgresCpuPct} % of one core; sweeper lag every 5 s p50 ${round1(percentile(sweepLags, 50))} ms, max ${round1(Math.max(0, ...sweepLags))} ms; event-loop delay p99 per 5 s p50 ${round1(percentile(loopP99s, 50))} ms, max ${round1(Math.max(0, ...loopP99s))} ms; load average ${loadavgNow().join(' ')}`,
    );

    const { rows: lastBeats } = await pgc.query<{ slug: string; last: Date }>(
      'select slug, last_heartbeat_at as last from projects where slug = any($1)',
      [[...victims]],
    );
    const delays: number[] = [];
    // Of each delay, the part before the sweep claimed the flip (threshold → `at`) and the part
    // from the claim to this process receiving the event (commit, publish, NATS, this event loop).
    const claimDelays: number[] = [];
    const deliveryDelays: number[] = [];
    let missed = 0;
    for (const r of lastBeats) {
      const at = offlineAt.get(r.slug);
      const threshold = r.last.getTime() + 3 * VICTIM_INTERVAL_S * 1000;
      if (at === undefined) missed++;
      else {
        delays.push(at - threshold);
        const claimed = offlineClaimedAt.get(r.slug);
        if (claimed !== undefined && Number.isFinite(claimed)) {
          claimDelays.push(claimed - threshold);
          deliveryDelays.push(at - claimed);
        }
      }
    }
    const falseOffline = [...offlineAt.keys()].filter((s) => !victims.has(s)).length;
    log(
      `  offline detection: ${delays.length} of ${o.silent} silent projects, delay past the threshold p50 ${round1(percentile(delays, 50))} ms, p99 ${round1(percentile(delays, 99))} ms (claimed by the sweep p50 ${round1(percentile(claimDelays, 50))}, p99 ${round1(percentile(claimDelays, 99))} ms after it; received p50 ${round1(percentile(deliveryDelays, 50))}, p99 ${round1(percentile(deliveryDelays, 99))} ms after the claim); missed ${missed}; false offline ${falseOffline}`,
    );
    log(
      `  reads under load: page p99 ${round1(percentile(pages, 99))} ms, status page p99 ${round1(percentile(statusPages, 99))} ms, by slug p99 ${round1(percentile(bySlug, 99))} ms (${pages.length} each); publish → visible p50 ${round1(percentile(visible, 50))} ms, p99 ${round1(percentile(visible, 99))} ms (${visible.length}); errors ${JSON.stringify(errors)}`,
    );
    // The bulk path's deadlines fall due 15-45 s after the plan (as after a restart).
    const readPhases = readsByPhase(reads, { waveEnd: planAt + 47_000, fullList: fullListWindow });
    log(`  reads by phase, p99 ms: ${JSON.stringify(readPhases)}`);
    log(
      `  whole catalog: HTTP ${full.status}, first byte ${round1(full.ttfb)} ms, ${round1(full.bytes / 1024 / 1024)} MB in ${round1(full.totalMs / 1000)} s, service RSS +${round1(full.growth)} MB`,
    );

    // 3. Idle: the same catalog with nothing beating. The bulk path writes what the sweeper would have
    // after everyone went silent (offline, nothing due), so the idle figure does not wait 3 minutes.
    // What the load left in the service's buffer is written first: idle means nothing left to do.
    const drainFrom = Date.now();
    await until(
      async () => metricValue(await scrape(), 'federation_heartbeat_buffer_pending') === 0,
      'the service to write what the load left pending',
      600_000,
      500,
    );
    const drainS = round1((Date.now() - drainFrom) / 1000);
    const rssLoadMb = rssPhaseMax;
    log(
      `  idle: the load's backlog written ${drainS} s after it stopped (service RSS during the load at most ${round1(rssLoadMb)} MB); marking every project offline through the bulk path, then measuring 20 s with no heartbeats`,
    );
    await pgc.query(
      `update projects set status = 'offline', last_heartbeat_at = now() - interval '1 day', status_changed_at = now()`,
    );
    await pgc.query('delete from project_deadlines');
    // The bulk UPDATE above is the bench's own shortcut: vacuum what it left before measuring idle.
    await pgc.query('vacuum analyze projects');
    await pgc.query(
      `with d as (delete from project_status_counts)
       insert into project_status_counts (online, degraded, offline) select 0, 0, count(*) from projects`,
    );
    await sleep(3000);
    await serviceCpu.reset();
    await pgCpu.reset();
    const idleUntil = Date.now() + 20_000;
    await Promise.all([
      serviceCpu.follow(() => Date.now() < idleUntil),
      pgCpu.follow(() => Date.now() < idleUntil),
    ]);
    const idleServiceCpu = await serviceCpu.pct();
    const idlePostgresCpu = await pgCpu.pct();
    log(`  idle: service CPU ${idleServiceCpu} %, PostgreSQL CPU ${idlePostgresCpu} % of one core`);
    const rssServeMax = rssMax;

    service.kill('SIGTERM');
    await new Promise((r) => service?.once('exit', r));
    await rssSampler;

    // 4. Ceilings, on the same table: NATS receive alone vs the service's ingestion, and the writer's
    // flush vs a plain batched UPDATE of the same rows.
    // As `npm run bench` does: 10,000 projects beating as fast as the service takes them.
    const K = 10_000;
    const rounds = 30;
    const consumed = new SharedArrayBuffer(4);
    const consumedView = new Int32Array(consumed);
    const { perS: natsReceivePerS } = await measureNatsReceive({
      natsUrl: nats.url,
      prefix: PREFIX,
      projects: K,
      rounds,
      timeoutMs: 120_000,
    });

    const app = await buildApp({
      config: loadConfig({
        DATABASE_URL: database.url,
        NATS_URL: nats.url,
        FED_PROJECTS_FILE: 'none',
        LOG_LEVEL: 'silent',
      }),
      logger: false,
    });
    let ingestPerS = 0;
    let flush: Awaited<ReturnType<typeof measureFlushCeiling>>;
    try {
      const received0 = await counterValue(app, 'federation_heartbeats_received_total', {
        transport: 'nats',
      });
      Atomics.store(consumedView, 0, 0);
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const r = await counterValue(app, 'federation_heartbeats_received_total', { transport: 'nats' });
          Atomics.store(consumedView, 0, r - received0);
          await sleep(2);
        }
      })();
      const ingestPub = await runPublisher({
        natsUrl: nats.url,
        prefix: PREFIX,
        projects: K,
        firstRound: 4,
        rounds,
        window: 10_000,
        consumed,
      });
      const ingestDone = await until(
        async () => Atomics.load(consumedView, 0) >= ingestPub.published && app.heartbeatWriter.pending === 0,
        'the service to write the ingestion load',
        120_000,
        2,
      );
      polling = false;
      await poller;
      ingestPerS = ingestPub.published / ((ingestDone - ingestPub.startedAt) / 1000);
      const spread = Array.from({ length: 10_000 }, (_, i) =>
        slugOf(PREFIX, Math.floor((i * o.projects) / 10_000)),
      );
      flush = await measureFlushCeiling(app, database.url, spread);
    } finally {
      await app.close();
    }
    log(
      `  ceilings: ingestion ${Math.round(ingestPerS)} hb/s vs NATS receive alone ${Math.round(natsReceivePerS)} msg/s (${K} projects × ${rounds}); flush of 10,000 rows ${flush.flush_ms} ms vs plain UPDATE ${flush.raw_update_ms} ms`,
    );

    const loadavgEnd = loadavgNow();
    return {
      projects: o.projects,
      register_s: registerS,
      register_after_last_publish_s: round1((registeredAt - lastPublish) / 1000),
      register_dropped: registerDropped,
      register_buffer_full: registerBufferFull,
      load_s: round1(loadS),
      offered_hb_per_s: offeredPerS,
      ingested_hb_per_s: ingestedPerS,
      ingested_min_5s_window_hb_per_s: Math.min(...windows),
      sweep_lag_p50_ms: round1(percentile(sweepLags, 50)),
      sweep_lag_max_ms: round1(Math.max(0, ...sweepLags)),
      event_loop_p99_median_ms: round1(percentile(loopP99s, 50)),
      event_loop_p99_max_ms: round1(Math.max(0, ...loopP99s)),
      backlog_drain_s: drainS,
      visible_p99_ms: round1(percentile(visible, 99)),
      offline_delay_p50_ms: round1(percentile(delays, 50)),
      offline_delay_p99_ms: round1(percentile(delays, 99)),
      offline_claim_p50_ms: round1(percentile(claimDelays, 50)),
      offline_claim_p99_ms: round1(percentile(claimDelays, 99)),
      offline_delivery_p50_ms: round1(percentile(deliveryDelays, 50)),
      offline_delivery_p99_ms: round1(percentile(deliveryDelays, 99)),
      offline_missed: missed,
      false_offline: falseOffline,
      service_cpu_pct: serviceCpuPct,
      postgres_cpu_pct: postgresCpuPct,
      idle_service_cpu_pct: idleServiceCpu,
      idle_postgres_cpu_pct: idlePostgresCpu,
      read_p99_by_phase_ms: readPhases,
      page_p99_ms: round1(percentile(pages, 99)),
      status_page_p99_ms: round1(percentile(statusPages, 99)),
      slug_p99_ms: round1(percentile(bySlug, 99)),
      read_errors: errors,
      full_list_ttfb_ms: round1(full.ttfb),
      full_list_complete: full.complete,
      full_list_s: round1(full.totalMs / 1000),
      full_list_mb: round1(full.bytes / 1024 / 1024),
      full_list_rss_growth_mb: round1(full.growth),
      rss_mb: round1(rssServeMax),
      rss_register_mb: round1(rssRegisterMb),
      rss_load_mb: round1(rssLoadMb),
      flush_ms: flush.flush_ms,
      raw_update_ms: flush.raw_update_ms,
      flush_vs_raw_update: flush.flush_vs_raw_update,
      ingest_hb_per_s: Math.round(ingestPerS),
      nats_receive_per_s: Math.round(natsReceivePerS),
      ingest_vs_nats_receive: Math.round((ingestPerS / natsReceivePerS) * 100) / 100,
      loadavg: { start: loadavgStart, end: loadavgEnd },
    };
  } finally {
    for (const p of publishers) if (p.exitCode === null) p.kill('SIGKILL');
    if (service && service.exitCode === null) {
      service.kill('SIGKILL');
      await new Promise((r) => service?.once('exit', r));
    }
    await nc?.close().catch(() => {});
    await pgc.end().catch(() => {});
    await database.drop().catch(() => {});
    await nats.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      quick: { type: 'boolean', default: false },
      'load-s': { type: 'string' },
      silent: { type: 'string' },
      publishers: { type: 'string' },
      'postgres-url': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const int = (raw: string | undefined, name: string, fallback: number, min: number, max: number) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new Error(`${name} ${JSON.stringify(raw)} is invalid: expected ${min} to ${max}`);
    return n;
  };
  const projects = int(positionals[0], 'N', values.quick ? 100_000 : 1_000_000, 2_000, 5_000_000);
  const opts: Options = {
    projects,
    loadS: int(values['load-s'], '--load-s', 60, 60, 3600),
    silent: int(
      values.silent,
      '--silent',
      Math.min(1000, Math.floor(projects / 10)),
      1,
      Math.floor(projects / 2),
    ),
    publishers: int(values.publishers, '--publishers', 2, 1, 16),
    postgresAdminUrl: values['postgres-url'] ?? process.env.TEST_POSTGRES_URL ?? DEFAULT_POSTGRES_ADMIN_URL,
  };
  console.log(JSON.stringify(await runScaleBench(opts)));
  return 0;
}
