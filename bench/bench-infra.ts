/** What the benchmark runs on: its own nats-server and a throwaway PostgreSQL database. */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { connect } from '@nats-io/transport-node';
import type { App } from '../src/app.ts';
import { startNatsServer as startTestNatsServer } from '../test/helpers/nats-server.ts';
import { createPostgresDatabase } from '../test/helpers/postgres.ts';
import type { PublishJob, PublishResult } from './publisher-thread.ts';

/**
 * The Node flags `npm start` gives the service (package.json's start script: the heap limit, see
 * README "Memory"), so that a bench's service process runs as a user's does.
 */
const startArgs = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    scripts: { start: string };
  }
).scripts.start
  .split(/\s+/)
  .slice(1); // node
export const SERVICE_NODE_FLAGS: string[] = startArgs.slice(
  0,
  startArgs.findIndex((arg) => !arg.startsWith('--')),
);

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** What `npm start` runs: bin/federation.js imports this bundle. */
export const SERVICE_BIN = join(ROOT, 'bin/federation.js');

/**
 * Builds the bundle `npm start` runs (`npm run build`) when a source is newer than it, so that a
 * bench measures the code as it stands, the way operators run it: under tsx the same service took
 * about 68 MB more RSS.
 */
export function ensureServiceBuilt(): void {
  const bundle = join(ROOT, 'dist/bundle/cli.js');
  const built = existsSync(bundle) ? statSync(bundle).mtimeMs : 0;
  const src = join(ROOT, 'src');
  // The sources and what decides how they are built.
  const inputs = [
    ...readdirSync(src, { recursive: true, encoding: 'utf8' }).map((f) => join(src, f)),
    ...[
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'scripts/bundle-server.mjs',
    ].map((f) => join(ROOT, f)),
  ];
  const newest = Math.max(...inputs.filter((f) => existsSync(f)).map((f) => statSync(f).mtimeMs));
  if (built >= newest) return;
  process.stderr.write('bench: dist/bundle is older than its sources; npm run build\n');
  // Its output goes to stderr: the bench's stdout ends with one JSON line.
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 2, 2] });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status}); the bench needs dist/bundle`);
}

export const NATS_SERVER_BIN = '/usr/sbin/nats-server';
export const DEFAULT_POSTGRES_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

export interface NatsHandle {
  url: string;
  close(): Promise<void>;
}

/** A nats-server of the benchmark's own, so nothing else on the machine takes its heartbeats. */
export async function startNatsServer(bin = NATS_SERVER_BIN): Promise<NatsHandle> {
  const server = await startTestNatsServer(bin);
  return { url: server.url, close: () => server.destroy() };
}

export interface DatabaseHandle {
  url: string;
  drop(): Promise<void>;
}

/** A fresh, uniquely named database on the PostgreSQL server of `adminUrl`. */
export const createDatabase = (adminUrl = DEFAULT_POSTGRES_ADMIN_URL): Promise<DatabaseHandle> =>
  createPostgresDatabase('fed_bench', adminUrl);

/** Runs one publish job in a worker thread (TypeScript through tsx, like the CLI). */
export function runPublisher(job: PublishJob): Promise<PublishResult> {
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./publisher-thread.ts', import.meta.url).href;
  const source = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(entry)});`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(source, { eval: true, workerData: job });
    worker.once('message', (m: { ok: true; result: PublishResult } | { ok: false; error: string }) => {
      void worker.terminate();
      if (m.ok) resolve(m.result);
      else reject(new Error(`publisher: ${m.error}`));
    });
    worker.once('error', reject);
  });
}

/**
 * The ceiling of ingestion: NATS receive alone. A queue subscription (as the service's) that only
 * counts, fed by the publisher thread with `projects` × `rounds` heartbeats; messages per second from
 * the first publish to the last receive.
 */
export async function measureNatsReceive(job: {
  natsUrl: string;
  prefix: string;
  projects: number;
  rounds: number;
  timeoutMs: number;
}): Promise<{ perS: number; published: number }> {
  const consumed = new SharedArrayBuffer(4);
  const view = new Int32Array(consumed);
  const nc = await connect({ servers: job.natsUrl });
  try {
    let got = 0;
    nc.subscribe('hub.presence.*', {
      queue: 'federation',
      callback: () => {
        got++;
        Atomics.store(view, 0, got);
      },
    });
    await nc.flush();
    const pub = await runPublisher({
      natsUrl: job.natsUrl,
      prefix: job.prefix,
      projects: job.projects,
      firstRound: 1,
      rounds: job.rounds,
      window: 10_000,
      consumed,
    });
    const done = await until(() => got >= pub.published, 'NATS receive alone', job.timeoutMs, 1);
    return { perS: pub.published / ((done - pub.startedAt) / 1000), published: pub.published };
  } finally {
    await nc.close();
  }
}

/** Nearest-rank percentile of `values` (0 < p ≤ 100); NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it is truthy; throws naming `what` after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 30_000,
  intervalMs = 5,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return Date.now();
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** The sum of a Prometheus series of the app over the children matching `labels`. */
export async function counterValue(
  app: App,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = app.metricsRegistry.getSingleMetric(name);
  if (!metric) throw new Error(`bench: the app has no metric ${name}; has presence changed?`);
  const { values } = await metric.get();
  let sum = 0;
  for (const v of values) {
    const l = v.labels as Record<string, string | number>;
    if (Object.entries(labels).every(([k, want]) => String(l[k]) === want)) sum += v.value;
  }
  return sum;
}
