import { type JetStreamClient, jetstream, type PubAck } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  MAX_METRIC_TEXT_LENGTH,
  MAX_METRICS_BYTES,
  METRIC_TYPE_PATTERN,
  METRICS_KINDS,
  type MetricsKind,
  type MetricsPayload,
  metricsSubject,
  SLUG_MAX_LENGTH,
  SLUG_PATTERN,
} from '../protocol/wire.ts';

/** How long publishMetrics waits for JetStream to confirm that the stream stored the message. */
export const DEFAULT_METRICS_PUBLISH_TIMEOUT_MS = 5000;

export type MetricsValues = Record<string, number | string>;

/** A metrics payload the service would refuse; `field` names what is wrong. */
export class MetricsPayloadError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'MetricsPayloadError';
    this.field = field;
  }
}

export interface PublishMetricsOptions {
  /** When the values were observed; default now. */
  observedAt?: Date;
  timeoutMs?: number;
  /** A JetStream client to reuse when publishing often; default one made from `nc`. */
  js?: JetStreamClient;
}

const SLUG = new RegExp(SLUG_PATTERN);
const METRIC_TYPE = new RegExp(METRIC_TYPE_PATTERN);

/** Builds the `graph|audit.summary.<slug>` payload, checked the way the service checks it. */
export function buildMetricsPayload(
  slug: string,
  metrics: MetricsValues,
  observedAt = new Date(),
): MetricsPayload {
  if (typeof slug !== 'string' || !SLUG.test(slug) || slug.length > SLUG_MAX_LENGTH) {
    throw new MetricsPayloadError('slug', `expected ${SLUG_PATTERN}, at most ${SLUG_MAX_LENGTH} characters`);
  }
  if (Number.isNaN(observedAt.getTime())) throw new MetricsPayloadError('observedAt', 'is not a valid date');
  const entries = Object.entries(metrics ?? {});
  if (entries.length === 0) throw new MetricsPayloadError('metrics', 'give at least one metric');
  for (const [type, value] of entries) {
    if (!METRIC_TYPE.test(type))
      throw new MetricsPayloadError(`metrics.${type}`, `name must match ${METRIC_TYPE_PATTERN}`);
    if (typeof value === 'number' ? !Number.isFinite(value) : typeof value !== 'string') {
      throw new MetricsPayloadError(`metrics.${type}`, 'expected a finite number or a string');
    }
    if (typeof value === 'string' && value.length > MAX_METRIC_TEXT_LENGTH) {
      throw new MetricsPayloadError(
        `metrics.${type}`,
        `text longer than ${MAX_METRIC_TEXT_LENGTH} characters`,
      );
    }
  }
  return { project_slug: slug, observed_at: observedAt.toISOString(), metrics: { ...metrics } };
}

/**
 * Publishes one metrics summary through JetStream, so the returned PubAck means the stream stored it:
 * the Federation Service reads it even if it is down right now. Rejects when no stream captures the
 * subject (the service never started on this NATS) or when the payload is invalid.
 */
export async function publishMetrics(
  nc: NatsConnection,
  slug: string,
  metrics: MetricsValues,
  kind: MetricsKind = 'graph',
  opts: PublishMetricsOptions = {},
): Promise<PubAck> {
  if (!METRICS_KINDS.includes(kind)) {
    throw new MetricsPayloadError('kind', `expected one of ${METRICS_KINDS.join(', ')}`);
  }
  const data = new TextEncoder().encode(JSON.stringify(buildMetricsPayload(slug, metrics, opts.observedAt)));
  if (data.byteLength > MAX_METRICS_BYTES) {
    throw new MetricsPayloadError(
      'metrics',
      `payload is ${data.byteLength} bytes, more than ${MAX_METRICS_BYTES}`,
    );
  }
  const js = opts.js ?? jetstream(nc);
  return js.publish(metricsSubject(kind, slug), data, {
    timeout: opts.timeoutMs ?? DEFAULT_METRICS_PUBLISH_TIMEOUT_MS,
  });
}
