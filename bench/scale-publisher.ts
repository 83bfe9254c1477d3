/**
 * A publisher process of the scale benchmark (one of several, each with a slice of the fleet), so that
 * the fleet's load does not share the service's or the bench's event loop.
 *
 *   burst:  every project of the slice publishes once, as fast as NATS takes it (a fleet starting at once)
 *   steady: every project beats every `intervalS` seconds, spread evenly, until `untilMs` or "stop"
 *
 * The job comes as JSON in argv[2]; the result is printed as one JSON line on stdout. Started with an
 * IPC channel, it reports `{ published, at }` every second and stops on the message `"stop"`.
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
  /** steady: stop at this epoch millisecond (otherwise on "stop"). */
  untilMs?: number;
  /**
   * steady: the schedule's origin (epoch ms): project j of the slice beats at startAtMs +
   * j × intervalS / size, then every intervalS (default: when the process starts). Beats already due
   * when it starts are sent at once.
   */
  startAtMs?: number;
  version: string;
}

export interface ScalePublishResult {
  published: number;
  startedAt: number;
  finishedAt: number;
  /** burst: when every project's first heartbeat was out. */
  burstFinishedAt?: number;
}

/** What a publisher started with IPC reports every second. */
export interface ScalePublishProgress {
  published: number;
  at: number;
  startedAt: number;
  burstFinishedAt?: number;
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
  let burstFinishedAt: number | undefined;
  let stopped = false;
  process.on('message', (m) => {
    if (m === 'stop') stopped = true;
  });
  const startedAt = Date.now();
  const progress = setInterval(() => {
    process.send?.({ published, at: Date.now(), startedAt, burstFinishedAt } satisfies ScalePublishProgress);
  }, 1000);
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
    burstFinishedAt = Date.now();
  }
  if (job.mode === 'steady') {
    const rate = size / (job.intervalS ?? 30); // per second
    const from = job.startAtMs ?? Date.now();
    const until = job.untilMs ?? Number.POSITIVE_INFINITY;
    if (from > Date.now()) await new Promise((resolve) => setTimeout(resolve, from - Date.now()));
    let beats = 0;
    while (!stopped && Date.now() < until) {
      const due = Math.floor(((Date.now() - from) / 1000) * rate);
      const ts = new Date().toISOString();
      while (beats < due) {
        nc.publish(subject(beats % size), payload(beats % size, ts));
        beats++;
        published++;
      }
      await new Promise((resolve) => setTimeout(resolve, TICK_MS));
    }
  }
  clearInterval(progress);
  await nc.flush();
  const finishedAt = Date.now();
  await nc.drain();
  return { published, startedAt, finishedAt, burstFinishedAt };
}

const arg = process.argv[2];
if (arg) {
  run(JSON.parse(arg) as ScalePublishJob).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      process.disconnect?.();
    },
    (err: unknown) => {
      process.stderr.write(`scale-publisher: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
