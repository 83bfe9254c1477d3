/**
 * Each stage of the heartbeat path measured alone, to find the one that limits ingestion:
 * NATS receive (plain queue subscription), check (decode + JSON.parse + schema), the intake as a whole
 * without NATS, and the writer's batched flush into PostgreSQL.
 */
import pg from 'pg';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { checkHeartbeatMessage } from '../src/presence/heartbeat-check.ts';
import {
  createDatabase,
  measureNatsReceive,
  type NatsHandle,
  percentile,
  sleep,
  startNatsServer,
} from './bench-infra.ts';
import { slugOf } from './publisher-thread.ts';

export interface StageResult {
  writer_fairness_worst_age_ms: number;
  check_per_s: number;
  intake_per_s: number;
  nats_receive_per_s: number;
  flush_rows_per_s: number;
  flush_10k_ms: number;
  flush_10k_fillfactor50_ms: number;
}

const decoder = new TextDecoder();

function payloads(projects: number): Array<[string, Uint8Array]> {
  const enc = new TextEncoder();
  const ts = new Date().toISOString();
  return Array.from({ length: projects }, (_, i) => {
    const slug = slugOf('bench-load', i);
    return [
      slug,
      enc.encode(
        `{"project_slug":"${slug}","hub_url":"http://${slug}.bench.invalid:8000","mesh_namespace":"hub.${slug}","tags":["bench"],"timestamp":"${ts}","version":"r1"}`,
      ),
    ];
  });
}

export async function runStages(opts: {
  postgresAdminUrl: string;
  log: (l: string) => void;
}): Promise<StageResult> {
  const line = opts.log;
  const msgs = payloads(10_000);

  // Check: what every message costs before it reaches the writer.
  let t = performance.now();
  let n = 0;
  for (let r = 0; r < 20; r++) for (const [slug, data] of msgs) if (checkHeartbeatMessage(slug, data).ok) n++;
  const checkRate = n / ((performance.now() - t) / 1000);
  line(`  check (decode + JSON.parse + schema + subject): ${Math.round(checkRate)}/s`);

  let nats: NatsHandle | undefined;
  const database = await createDatabase(opts.postgresAdminUrl);
  try {
    nats = await startNatsServer();
    const natsUrl = nats.url;

    // NATS receive alone: a queue subscription that only counts, fed by the publisher thread.
    const { perS: natsRate } = await measureNatsReceive({
      natsUrl,
      prefix: 'bench-load',
      projects: 10_000,
      rounds: 30,
      timeoutMs: 60_000,
    });
    line(`  NATS receive alone (queue subscription, counting only): ${Math.round(natsRate)}/s`);

    const config = loadConfig({
      DATABASE_URL: database.url,
      NATS_URL: 'none',
      FED_PROJECTS_FILE: 'none',
      LOG_LEVEL: 'silent',
    });
    const app = await buildApp({ config, logger: false });
    try {
      // Register the projects, then time the writer's batched flushes of 10k projects each.
      for (const [slug, data] of msgs) app.heartbeatIntake.fromNats(`hub.presence.${slug}`, data);
      await app.heartbeatWriter.flush();
      const pgc = new pg.Client({ connectionString: database.url });
      await pgc.connect();
      const flushMedian = async (): Promise<number> => {
        const times: number[] = [];
        for (let r = 0; r < 5; r++) {
          const now = new Date();
          for (const [, data] of msgs) app.heartbeatWriter.enqueue(JSON.parse(decoder.decode(data)), now);
          const t0 = performance.now();
          await app.heartbeatWriter.flush();
          times.push(performance.now() - t0);
        }
        return percentile(times, 50);
      };
      const tableStats = async () => {
        await sleep(1100); // PostgreSQL publishes table statistics at most once a second
        const { rows } = await pgc.query<{ upd: string; hot: string; size: string }>(
          `select n_tup_upd as upd, n_tup_hot_upd as hot, pg_size_pretty(pg_total_relation_size('projects')) as size
           from pg_stat_user_tables where relname = 'projects'`,
        );
        const r = rows[0];
        return r
          ? `${Math.round((100 * Number(r.hot)) / Math.max(1, Number(r.upd)))} % HOT updates, projects ${r.size} for ${msgs.length} rows`
          : '';
      };
      const flushMs = await flushMedian();
      line(
        `  writer flush of 10,000 projects into PostgreSQL: median ${Math.round(flushMs)} ms = ${Math.round(10_000 / (flushMs / 1000))} rows/s (${await tableStats()})`,
      );
      // What-if: leave room on each page so updates of unindexed columns stay HOT (no index writes).
      await pgc.query('alter table projects set (fillfactor = 50)');
      await pgc.query('vacuum full projects');
      const flushFf50Ms = await flushMedian();
      line(
        `  same with projects fillfactor=50 (experiment): median ${Math.round(flushFf50Ms)} ms = ${Math.round(10_000 / (flushFf50Ms / 1000))} rows/s`,
      );
      await pgc.end();

      // Intake without NATS: check + enqueue (+ the writer's flushes that run meanwhile).
      t = performance.now();
      n = 0;
      for (let r = 0; r < 20; r++) {
        for (const [slug, data] of msgs) if (app.heartbeatIntake.fromNats(`hub.presence.${slug}`, data)) n++;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await app.heartbeatWriter.flush();
      const intakeRate = n / ((performance.now() - t) / 1000);
      line(`  intake without NATS (check + enqueue + flushes): ${Math.round(intakeRate)}/s`);

      // Fairness: one more project beating every 400 ms while the 10,000 others are refreshed faster
      // than a flush. Its heartbeat must reach the database well within the offline threshold.
      const extra = 'bench-fairness';
      const extraMsg = () =>
        new TextEncoder().encode(
          `{"project_slug":"${extra}","hub_url":"http://x.invalid","mesh_namespace":"hub.${extra}","timestamp":"${new Date().toISOString()}"}`,
        );
      app.heartbeatIntake.fromNats(`hub.presence.${extra}`, extraMsg());
      await app.heartbeatWriter.flush();
      let refreshing = true;
      const refresher = (async () => {
        while (refreshing) {
          for (let i = 0; i < msgs.length && refreshing; i += 1000) {
            for (const [slug, data] of msgs.slice(i, i + 1000))
              app.heartbeatIntake.fromNats(`hub.presence.${slug}`, data);
            await sleep(5);
          }
        }
      })();
      const beat = setInterval(() => app.heartbeatIntake.fromNats(`hub.presence.${extra}`, extraMsg()), 400);
      const fairnessStart = Date.now();
      let worstAgeMs = 0;
      const ages = new pg.Client({ connectionString: database.url });
      await ages.connect();
      while (Date.now() - fairnessStart < 3000) {
        await sleep(250);
        const { rows } = await ages.query<{ last: Date }>(
          'select last_heartbeat_at as last from projects where slug = $1',
          [extra],
        );
        const last = rows[0]?.last;
        if (last) worstAgeMs = Math.max(worstAgeMs, Date.now() - new Date(last).getTime());
      }
      clearInterval(beat);
      refreshing = false;
      await refresher;
      await ages.end();
      line(
        `  writer fairness: a project beating every 400 ms beside 10,000 refreshed ones was at worst ${worstAgeMs} ms stale in the database over 3 s${worstAgeMs > 2000 ? ' (STARVED: it would be flipped offline while alive)' : ''}`,
      );
      return {
        writer_fairness_worst_age_ms: worstAgeMs,
        check_per_s: Math.round(checkRate),
        intake_per_s: Math.round(intakeRate),
        nats_receive_per_s: Math.round(natsRate),
        flush_rows_per_s: Math.round(10_000 / (flushMs / 1000)),
        flush_10k_ms: Math.round(flushMs),
        flush_10k_fillfactor50_ms: Math.round(flushFf50Ms),
      };
    } finally {
      await app.close();
    }
  } finally {
    await database.drop().catch(() => {});
    await nats?.close();
  }
}
