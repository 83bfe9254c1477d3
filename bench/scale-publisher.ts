/**
 * A publisher process of the scale benchmark (one of several, each with a slice of the fleet), so that
 * the fleet's load does not share the service's or the bench's event loop.
 *
 *   burst:  every project of the slice publishes once, as fast as NATS takes it (a fleet starting at once)
 *   steady: every project beats every `intervalS` seconds, spread evenly, until `untilMs`
 *
 * The job comes as JSON in argv[2]; the result is printed as one JSON line on stdout.
 */
import { connect } from '@nats-io/transport-node';

export interface ScalePublishJob {
  natsUrl: string;
  prefix: string;
  from: number;
  to: number;
  mode: 'burst' | 'steady';
  /** steady: seconds between two heartbeats of one project (also sent as interval_s when `announce`). */
  intervalS?: number;
  announce?: boolean;
  /** steady: stop at this epoch millisecond. */
  untilMs?: number;
  version: string;
}

export interface ScalePublishResult {
  published: number;
  startedAt: number;
  finishedAt: number;
}

/** The same names as publisher-thread's slugOf, so every phase beats the same projects. */
export const scaleSlug = (prefix: string, i: number): string => `${prefix}-${String(i).padStart(5, '0')}`;

const TICK_MS = 20;

async function run(job: ScalePublishJob): Promise<ScalePublishResult> {
  const nc = await connect({ servers: job.natsUrl, name: 'scale-publisher', noEcho: true });
  const size = job.to - job.from;
  const subject = (i: number) => `hub.presence.${scaleSlug(job.prefix, job.from + i)}`;
  const extra = job.announce && job.intervalS ? `,"interval_s":${job.intervalS}` : '';
  const payload = (i: number, ts: string) => {
    const slug = scaleSlug(job.prefix, job.from + i);
    return `{"project_slug":"${slug}","hub_url":"http://${slug}.bench.invalid:8000","mesh_namespace":"hub.${slug}","tags":["bench","g${(job.from + i) % 50}"],"timestamp":"${ts}","version":"${job.version}"${extra}}`;
  };
  let published = 0;
  const startedAt = Date.now();
  if (job.mode === 'burst') {
    let ts = new Date().toISOString();
    for (let i = 0; i < size; i++) {
      nc.publish(subject(i), payload(i, ts));
      published++;
      if (published % 1000 === 0) {
        ts = new Date().toISOString();
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  } else {
    const rate = size / (job.intervalS ?? 30); // per second
    const until = job.untilMs ?? startedAt + 60_000;
    while (Date.now() < until) {
      const due = Math.floor(((Date.now() - startedAt) / 1000) * rate);
      const ts = new Date().toISOString();
      while (published < due) {
        nc.publish(subject(published % size), payload(published % size, ts));
        published++;
      }
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
  }
  await nc.flush();
  const finishedAt = Date.now();
  await nc.drain();
  return { published, startedAt, finishedAt };
}

const arg = process.argv[2];
if (arg) {
  run(JSON.parse(arg) as ScalePublishJob).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`scale-publisher: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
