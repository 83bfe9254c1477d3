/**
 * Runs in a worker thread: publishes heartbeats for `projects` projects, `rounds` times over, as fast
 * as the consumer lets it. At most `window` heartbeats are in flight (published but not yet counted by
 * the consumer, which the main thread writes into `consumed`), so the benchmark measures what the
 * service sustains instead of how fast NATS can buffer for it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { connect } from '@nats-io/transport-node';

export interface PublishJob {
  natsUrl: string;
  prefix: string;
  projects: number;
  /** Round numbers are written into `version` as `r<n>`, so the main thread can see a round land. */
  firstRound: number;
  rounds: number;
  window: number;
  /** Int32Array[0]: heartbeats of this job the consumer has taken so far (written by the main thread). */
  consumed: SharedArrayBuffer;
}

export interface PublishResult {
  published: number;
  startedAt: number;
  finishedAt: number;
  /** Milliseconds spent waiting for the consumer (the window was full). */
  blockedMs: number;
}

/** Yield this often so nats.js writes its buffer to the socket. */
const CHUNK = 500;

export function slugOf(prefix: string, i: number): string {
  return `${prefix}-${String(i).padStart(5, '0')}`;
}

async function run(job: PublishJob): Promise<PublishResult> {
  const consumed = new Int32Array(job.consumed);
  const nc = await connect({ servers: job.natsUrl, name: 'bench-publisher', noEcho: true });
  const heads: string[] = [];
  const subjects: string[] = [];
  for (let i = 0; i < job.projects; i++) {
    const slug = slugOf(job.prefix, i);
    subjects.push(`hub.presence.${slug}`);
    heads.push(
      `{"project_slug":"${slug}","hub_url":"http://${slug}.bench.invalid:8000","mesh_namespace":"hub.${slug}","tags":["bench"],"timestamp":"`,
    );
  }
  let published = 0;
  let blockedMs = 0;
  const startedAt = Date.now();
  for (let r = job.firstRound; r < job.firstRound + job.rounds; r++) {
    const tail = `","version":"r${r}"}`;
    let ts = new Date().toISOString();
    for (let i = 0; i < job.projects; i++) {
      if (published - Atomics.load(consumed, 0) >= job.window) {
        const t0 = Date.now();
        while (published - Atomics.load(consumed, 0) >= job.window) {
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
        blockedMs += Date.now() - t0;
      }
      nc.publish(subjects[i] as string, `${heads[i]}${ts}${tail}`);
      published++;
      if (published % CHUNK === 0) {
        ts = new Date().toISOString();
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }
  await nc.flush();
  const finishedAt = Date.now();
  await nc.drain();
  return { published, startedAt, finishedAt, blockedMs };
}

if (parentPort && workerData) {
  const port = parentPort;
  run(workerData as PublishJob).then(
    (result) => port.postMessage({ ok: true, result }),
    (err: Error) => port.postMessage({ ok: false, error: err.message }),
  );
}
