import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';

/** What the metrics stream captures: every summary a project publishes, while the service runs or not. */
export const METRICS_SUBJECTS = ['graph.summary.>', 'audit.summary.>'];
/** One durable consumer shared by every replica: each message goes to one of them. */
export const METRICS_DURABLE = 'federation-metrics';
export const DEFAULT_ACK_WAIT_MS = 30_000;
/** Bounds the messages handed out but not yet acknowledged, across all replicas. */
export const DEFAULT_MAX_ACK_PENDING = 10_000;

export interface MetricsStreamOptions {
  name: string;
  maxAgeDays: number;
  maxBytes: number;
}

const DAY_MS = 86_400_000;

const isApiError = (err: unknown, code: number): boolean =>
  err instanceof JetStreamApiError && err.code === code;

/**
 * Creates the metrics stream, or brings an existing one to the configured limits. Several replicas may
 * race to create it: the loser of the race updates instead.
 */
export async function ensureMetricsStream(jsm: JetStreamManager, opts: MetricsStreamOptions): Promise<void> {
  const limits = {
    subjects: METRICS_SUBJECTS,
    max_age: nanos(opts.maxAgeDays * DAY_MS),
    max_bytes: opts.maxBytes,
  };
  let exists = true;
  try {
    const info = await jsm.streams.info(opts.name);
    const c = info.config;
    const same =
      c.max_age === limits.max_age &&
      c.max_bytes === limits.max_bytes &&
      METRICS_SUBJECTS.every((s) => c.subjects?.includes(s));
    if (same) return;
  } catch (err) {
    if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
    exists = false;
  }
  if (!exists) {
    try {
      await jsm.streams.add({
        name: opts.name,
        ...limits,
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
      });
      return;
    } catch (err) {
      // Another replica created it between our info and add.
      if (!/already in use/i.test((err as Error).message)) throw err;
    }
  }
  await jsm.streams.update(opts.name, limits);
}

/** Creates the shared durable pull consumer (explicit ack, from the first stored message) if missing. */
export async function ensureMetricsConsumer(
  jsm: JetStreamManager,
  stream: string,
  durable = METRICS_DURABLE,
  ackWaitMs = DEFAULT_ACK_WAIT_MS,
): Promise<void> {
  try {
    await jsm.consumers.info(stream, durable);
    return;
  } catch (err) {
    if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
  }
  // Creating a durable with an identical config is idempotent, so a race between replicas is harmless.
  await jsm.consumers.add(stream, {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ackWaitMs),
    max_ack_pending: DEFAULT_MAX_ACK_PENDING,
    description: 'Federation Service metrics intake (shared by every replica)',
  });
}
