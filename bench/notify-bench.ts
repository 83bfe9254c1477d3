/**
 * `npm run bench -- --notify`: webhook delivery as an operator sees it. On a throwaway PostgreSQL
 * database, with a real HTTP receiver on 127.0.0.1, it measures:
 *   1. delay: from each transition (a project's first heartbeat) to its arrival at the receiver, p50
 *      and p99, against the ceiling of the same bodies POSTed straight to the receiver from this process;
 *   2. outage: transitions made while the receiver is down for --outage-s, then how many arrive once
 *      it is back (lost = made - arrived) and how long the backlog takes;
 *   3. SIGKILL: a real service process (tsx src/cli.ts serve) with deliveries pending is killed -9 and
 *      started again; lost and duplicated deliveries after the restart.
 * Duplicates are counted in every phase (the same X-Federation-Delivery twice).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import type { App } from '../src/app.ts';
import { buildApp } from '../src/app.ts';
import { CatalogService } from '../src/catalog/catalog-service.ts';
import { heartbeatRowJson } from '../src/catalog/heartbeat-write.ts';
import { systemClock } from '../src/clock.ts';
import { testConfig } from '../src/config.ts';
import { openDatabase, query } from '../src/db/connection.ts';
import { NotificationOutbox } from '../src/notify/outbox.ts';
import { signBody } from '../src/notify/signing.ts';
import { freePort } from '../test/helpers/ports.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../test/helpers/webhook-receiver.ts';
import {
  createDatabase,
  DEFAULT_POSTGRES_ADMIN_URL,
  percentile,
  SERVICE_NODE_FLAGS,
  sleep,
  until,
} from './bench-infra.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TARGET_P99_MS = 1000;
const SECRET = 'bench-secret-0123456789abcdef';

const USAGE = `npm run bench -- --notify [--quick] [--projects N] [--rate N] [--outage-s S] [--kill-batch N]

Real receiver on 127.0.0.1, throwaway PostgreSQL database (TEST_POSTGRES_URL or --postgres-url).
First, what the outbox adds to storing a batch of 10,000 transitions (quick: 2,000), against the same
batch stored without it (ms in the JSON: [no hook, hook without notifiers, one notifier for all]).
  --projects N    transitions measured for the delay (default 300, quick 100)
  --rate N        transitions per second while measuring the delay (default 50)
  --outage-s S    how long the receiver is down (default 60, quick 10)
  --kill-batch N  deliveries pending when the service is SIGKILLed (default 50, quick 20)
Target: delay p99 <= ${TARGET_P99_MS} ms; 0 lost across the outage and the SIGKILL; 0 duplicates.`;

const round1 = (x: number) => Math.round(x * 10) / 10;
const loadavg = () => os.loadavg().map((l) => Number(l.toFixed(2)));

const heartbeat = (slug: string) => ({
  project_slug: slug,
  hub_url: `http://${slug}.bench:8000`,
  mesh_namespace: `hub.${slug}`,
  timestamp: new Date().toISOString(),
  version: '1.0.0',
});

/** Deliveries of `slugs` the receiver accepted, and how many of those were repeats of an id. */
function tally(receiver: WebhookReceiver, slugs: ReadonlySet<string>) {
  const ours = receiver.accepted().filter((r) => slugs.has(String(r.json.slug)));
  const ids = new Set(ours.map((r) => String(r.headers['x-federation-delivery'])));
  return { accepted: ours, unique: ids.size, duplicates: ours.length - ids.size };
}

/** The same bodies POSTed straight to the receiver, one at a time: the fastest a delivery could be. */
async function ceiling(receiver: WebhookReceiver, bodies: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const body of bodies) {
    const t0 = performance.now();
    const res = await fetch(receiver.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-federation-signature': signBody(SECRET, body) },
      body,
    });
    await res.arrayBuffer();
    out.push(performance.now() - t0);
  }
  return out;
}

/**
 * What the outbox adds to storing transitions: the same batches (new projects' first heartbeats, then a
 * status change of each) written through the catalog without the hook (the ceiling), with the hook and
 * no notifier (maintenance and flap bookkeeping only), and with one notifier that matches every project
 * (one delivery row per transition).
 */
async function outboxCost(dbUrl: string, rows: number, log: (l: string) => void) {
  const handle = await openDatabase({ databaseUrl: dbUrl, dataDir: '' });
  await handle.migrate();
  const thresholds = { degradedAfterS: 0, offlineAfterS: 3600 };
  const outbox = new NotificationOutbox({
    clock: systemClock,
    flapChanges: 5,
    flapWindowS: 600,
    flapSettleS: 300,
    maxAgeS: 86_400,
  });
  const run = async (prefix: string, hook: boolean) => {
    const catalog = new CatalogService({ db: handle.db, clock: systemClock, thresholds });
    if (hook) catalog.onTransitionsStored(outbox.stored);
    const batch = (health: 'ok' | 'degraded') =>
      Array.from({ length: rows }, (_, i) => {
        const slug = `${prefix}-${i}`;
        const row = heartbeatRowJson({
          slug,
          received_at: new Date().toISOString(),
          health,
          version: null,
          interval_s: null,
          name: null,
          hub_url: 'http://x.bench',
          mesh_namespace: `hub.${slug}`,
          tags: null,
        });
        return [slug, row] as const;
      });
    const t0 = performance.now();
    const first = await catalog.writeHeartbeats(batch('ok'), true);
    const t1 = performance.now();
    const second = await catalog.writeHeartbeats(batch('degraded'), true);
    const t2 = performance.now();
    if (first.transitions.length !== rows || second.transitions.length !== rows)
      throw new Error(`bench: expected ${rows} transitions per batch`);
    return { insertMs: t1 - t0, changeMs: t2 - t1 };
  };
  try {
    await run('oc-warm', false);
    const bare = await run('oc-bare', false);
    const none = await run('oc-none', true);
    await query(
      handle.db,
      sql`insert into notifiers (url, format, filters, source) values ('http://127.0.0.1:9/', 'json', '{}', 'api')`,
    );
    const one = await run('oc-one', true);
    await query(handle.db, sql`delete from notifiers`);
    const rate = (ms: number) => Math.round((rows / ms) * 1000);
    log(
      `  outbox cost, ${rows} transitions per batch   first heartbeats: no hook ${rate(bare.insertMs)}/s (ceiling), hook without notifiers ${rate(none.insertMs)}/s (${round1(none.insertMs / bare.insertMs)}x the time), with one notifier ${rate(one.insertMs)}/s (${round1(one.insertMs / bare.insertMs)}x)   status changes: ${rate(bare.changeMs)}/s, ${rate(none.changeMs)}/s (${round1(none.changeMs / bare.changeMs)}x), ${rate(one.changeMs)}/s (${round1(one.changeMs / bare.changeMs)}x)`,
    );
    return { bare, none, one };
  } finally {
    await handle.close();
  }
}

async function inProcessPhases(
  dbUrl: string,
  opts: { projects: number; rate: number; outageS: number },
  log: (l: string) => void,
) {
  const receiver = await startWebhookReceiver();
  const app: App = await buildApp({
    config: testConfig({
      DATABASE_URL: dbUrl,
      FED_WEBHOOK_ALLOW_PRIVATE: 'true',
      FED_OFFLINE_AFTER_S: '3600',
      FED_DEGRADED_AFTER_S: '0',
      // A receiver back from an outage is tried again within a couple of seconds.
      FED_WEBHOOK_RETRY_MAX_S: '2',
    }),
    logger: false,
  });
  try {
    const add = await app.inject({
      method: 'POST',
      url: '/api/fed/notifiers',
      payload: { url: receiver.url, secret: SECRET },
    });
    if (add.statusCode !== 201) throw new Error(`bench: POST /api/fed/notifiers answered ${add.statusCode}`);

    // 1. Delay after the transition.
    const slugs = new Set<string>();
    const spacing = 1000 / opts.rate;
    const t0 = performance.now();
    for (let i = 0; i < opts.projects; i++) {
      const slug = `bn-delay-${i}`;
      slugs.add(slug);
      await app.inject({ method: 'POST', url: '/api/fed/heartbeats', payload: heartbeat(slug) });
      const wait = t0 + (i + 1) * spacing - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await until(
      () => tally(receiver, slugs).unique >= opts.projects,
      'every delivery of the delay phase',
      60_000,
    );
    await sleep(2000); // a poll or two more: a duplicate would arrive now
    const delay = tally(receiver, slugs);
    const delays = delay.accepted.map((r) => r.receivedAtMs - Date.parse(String(r.json.at)));
    const ceil = await ceiling(
      receiver,
      delay.accepted.map((r) => r.body),
    );
    const p50 = percentile(delays, 50);
    const p99 = percentile(delays, 99);
    const c50 = percentile(ceil, 50);
    const c99 = percentile(ceil, 99);
    log(
      `  delay after the transition   p50 ${round1(p50)} ms   p99 ${round1(p99)} ms   (target p99 <= ${TARGET_P99_MS} ms)   ceiling: the same bodies POSTed straight  p50 ${round1(c50)} ms  p99 ${round1(c99)} ms   ratio p99 ${round1(p99 / c99)}x   duplicates ${delay.duplicates}`,
    );

    // 2. The receiver down for outageS.
    const outageSlugs = new Set<string>();
    await receiver.down();
    const downAt = Date.now();
    let made = 0;
    while (Date.now() - downAt < opts.outageS * 1000) {
      const slug = `bn-outage-${made++}`;
      outageSlugs.add(slug);
      await app.inject({ method: 'POST', url: '/api/fed/heartbeats', payload: heartbeat(slug) });
      await sleep(Math.max(50, (opts.outageS * 1000) / 100));
    }
    await receiver.up();
    const upAt = Date.now();
    let drained = true;
    try {
      await until(
        () => tally(receiver, outageSlugs).unique >= made,
        'the backlog after the outage',
        120_000,
        20,
      );
    } catch {
      drained = false;
    }
    const backlogMs = Date.now() - upAt;
    await sleep(2000);
    const outage = tally(receiver, outageSlugs);
    log(
      `  receiver down ${opts.outageS} s   transitions meanwhile ${made}   arrived after ${outage.unique}   lost ${made - outage.unique}${drained ? '' : ' (timed out waiting)'}   backlog delivered ${round1(backlogMs / 1000)} s after it was back   duplicates ${outage.duplicates}`,
    );
    // The next phase brings its own receiver and notifier.
    await app.inject({ method: 'DELETE', url: `/api/fed/notifiers/${(add.json() as { id: number }).id}` });
    return {
      delay: { p50, p99, c50, c99, duplicates: delay.duplicates, n: delays.length },
      outage: {
        made,
        arrived: outage.unique,
        lost: made - outage.unique,
        backlogMs,
        duplicates: outage.duplicates,
      },
    };
  } finally {
    await app.close();
    await receiver.close();
  }
}

async function killPhase(dbUrl: string, batch: number, log: (l: string) => void) {
  const receiver = await startWebhookReceiver();
  const port = await freePort();
  const env = {
    PATH: process.env.PATH,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: dbUrl,
    NATS_URL: 'none',
    FED_PROJECTS_FILE: 'none',
    LOG_LEVEL: 'error',
    FED_WEBHOOK_ALLOW_PRIVATE: 'true',
    FED_WEBHOOK_RETRY_MAX_S: '1',
  };
  const serve = async (): Promise<ChildProcess> => {
    const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, '--import', 'tsx', 'src/cli.ts', 'serve'], {
      cwd: ROOT,
      env,
      stdio: 'ignore',
    });
    await until(
      async () =>
        (await fetch(`http://127.0.0.1:${port}/api/fed/health`).catch(() => undefined))?.ok === true,
      'the service process to answer',
      60_000,
      50,
    );
    return child;
  };
  const post = (path: string, body: unknown) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  let child = await serve();
  try {
    const added = await post('/api/fed/notifiers', { url: receiver.url, secret: SECRET });
    if (added.status !== 201) throw new Error(`bench: POST /api/fed/notifiers answered ${added.status}`);
    const slugs = new Set<string>();
    receiver.respondWith(() => 503);
    for (let i = 0; i < batch; i++) {
      const slug = `bn-kill-${i}`;
      slugs.add(slug);
      await post('/api/fed/heartbeats', heartbeat(slug));
    }
    // Every one written and tried at least once (refused), so each is pending when the process dies.
    const refusedIds = () =>
      new Set(
        receiver.received
          .filter((r) => slugs.has(String(r.json.slug)))
          .map((r) => r.headers['x-federation-delivery']),
      );
    await until(() => refusedIds().size >= batch, 'a refused attempt of every delivery', 60_000, 20);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    receiver.respondWith(() => 200);
    const restartAt = Date.now();
    child = await serve();
    let drained = true;
    try {
      await until(
        () => tally(receiver, slugs).unique >= batch,
        'the pending deliveries after the restart',
        60_000,
        20,
      );
    } catch {
      drained = false;
    }
    const afterMs = Date.now() - restartAt;
    await sleep(2000);
    const t = tally(receiver, slugs);
    log(
      `  SIGKILL with ${batch} pending   delivered after the restart ${t.unique}   lost ${batch - t.unique}${drained ? '' : ' (timed out waiting)'}   duplicates ${t.duplicates}   all in ${round1(afterMs / 1000)} s from the restart (start-up included)`,
    );
    return { pending: batch, arrived: t.unique, lost: batch - t.unique, duplicates: t.duplicates, afterMs };
  } finally {
    child.kill('SIGTERM');
    await receiver.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      projects: { type: 'string' },
      rate: { type: 'string' },
      'outage-s': { type: 'string' },
      'kill-batch': { type: 'string' },
      'postgres-url': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const int = (raw: string | undefined, flag: string, fallback: number, min: number, max: number) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new Error(`${flag} ${JSON.stringify(raw)} is invalid: expected ${min} to ${max}`);
    return n;
  };
  const quick = values.quick ?? false;
  let opts: { projects: number; rate: number; outageS: number; killBatch: number; costRows: number };
  try {
    opts = {
      projects: int(values.projects, '--projects', quick ? 100 : 300, 1, 100_000),
      rate: int(values.rate, '--rate', 50, 1, 10_000),
      outageS: int(values['outage-s'], '--outage-s', quick ? 10 : 60, 1, 3600),
      killBatch: int(values['kill-batch'], '--kill-batch', quick ? 20 : 50, 1, 10_000),
      costRows: quick ? 2000 : 10_000,
    };
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    return 2;
  }
  const log = (l: string) => console.log(l);
  const loadBefore = loadavg();
  log(
    `notify: webhook deliveries on PostgreSQL to a receiver on 127.0.0.1; load average ${loadBefore.join(' ')}`,
  );
  const adminUrl = values['postgres-url'] ?? process.env.TEST_POSTGRES_URL ?? DEFAULT_POSTGRES_ADMIN_URL;
  const db = await createDatabase(adminUrl);
  try {
    const cost = await outboxCost(db.url, opts.costRows, log);
    const inProcess = await inProcessPhases(db.url, opts, log);
    const kill = await killPhase(db.url, opts.killBatch, log);
    const loadAfter = loadavg();
    log(`  load average at the end ${loadAfter.join(' ')} (2 cores)`);
    console.log(
      JSON.stringify({
        bench: 'notify',
        delay_p50_ms: round1(inProcess.delay.p50),
        delay_p99_ms: round1(inProcess.delay.p99),
        delay_target_p99_ms: TARGET_P99_MS,
        delay_n: inProcess.delay.n,
        ceiling_post_p50_ms: round1(inProcess.delay.c50),
        ceiling_post_p99_ms: round1(inProcess.delay.c99),
        ratio_p99: round1(inProcess.delay.p99 / inProcess.delay.c99),
        duplicates_normal: inProcess.delay.duplicates,
        outage_s: opts.outageS,
        outage_made: inProcess.outage.made,
        outage_lost: inProcess.outage.lost,
        outage_duplicates: inProcess.outage.duplicates,
        outage_backlog_ms: inProcess.outage.backlogMs,
        sigkill_pending: kill.pending,
        sigkill_lost: kill.lost,
        sigkill_duplicates: kill.duplicates,
        sigkill_delivered_after_ms: kill.afterMs,
        outbox_cost_first_heartbeats: [cost.bare.insertMs, cost.none.insertMs, cost.one.insertMs].map(
          Math.round,
        ),
        outbox_cost_status_changes: [cost.bare.changeMs, cost.none.changeMs, cost.one.changeMs].map(
          Math.round,
        ),
        loadavg_start: loadBefore,
        loadavg_end: loadAfter,
      }),
    );
    return 0;
  } finally {
    await db.drop();
  }
}
