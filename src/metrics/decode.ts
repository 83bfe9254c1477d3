import { Compile } from 'typebox/compile';
import {
  MAX_METRICS_BYTES,
  METRIC_TYPE_PATTERN,
  METRICS_KINDS,
  type MetricsKind,
  type MetricsPayload,
  MetricsPayloadSchema,
} from '../protocol/index.ts';

/** Why a metrics message was dropped; each is a label of `federation_metrics_rejected_total`. */
export const REJECT_REASONS = [
  'oversize',
  'invalid_json',
  'invalid_payload',
  'invalid_subject',
  'slug_mismatch',
  'invalid_time',
  'future_time',
  'expired',
  'empty',
  'unknown_project',
  'db_rejected',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** A publisher's clock may run a little ahead; far-future times would shadow every later value as "latest". */
export const MAX_FUTURE_SKEW_MS = 60 * 60 * 1000;

export interface DecodedMetrics {
  kind: MetricsKind;
  slug: string;
  observedAt: Date;
  metrics: MetricsPayload['metrics'];
}

export type DecodeResult =
  | { ok: true; value: DecodedMetrics }
  | { ok: false; reason: RejectReason; detail: string };

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;

/**
 * Strict ISO 8601 (a date, or a date and time). A time without an offset is UTC: Python publishers send
 * `datetime.utcnow().isoformat()`, which has none, and the server's own time zone must not change its meaning.
 */
export function parseIsoTime(value: string): Date | undefined {
  const m = ISO_TIME.exec(value.trim());
  if (!m) return undefined;
  const hasTime = /[T ]\d/i.test(value);
  const ms = Date.parse(hasTime && m[1] === undefined ? `${value.trim()}Z` : value.trim());
  return Number.isNaN(ms) ? undefined : new Date(ms);
}

const checkPayload = Compile(MetricsPayloadSchema);
const METRIC_TYPE = new RegExp(METRIC_TYPE_PATTERN);
const decoder = new TextDecoder('utf-8', { fatal: true });

function reject(reason: RejectReason, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

/**
 * Checks one message of the metrics stream: `<kind>.summary.<slug>` carrying a MetricsPayload for that
 * slug, observed neither in the far future nor before the retention window (`oldest`).
 */
export function decodeMetricsMessage(
  subject: string,
  data: Uint8Array,
  opts: { now: Date; oldest: Date },
): DecodeResult {
  if (data.byteLength > MAX_METRICS_BYTES) {
    return reject('oversize', `${data.byteLength} bytes > ${MAX_METRICS_BYTES}`);
  }
  const parts = subject.split('.');
  const kind = parts[0] as MetricsKind;
  if (parts.length !== 3 || parts[1] !== 'summary' || !METRICS_KINDS.includes(kind)) {
    return reject('invalid_subject', subject);
  }
  let body: unknown;
  try {
    body = JSON.parse(decoder.decode(data));
  } catch (err) {
    return reject('invalid_json', (err as Error).message);
  }
  if (!checkPayload.Check(body)) {
    const first = checkPayload.Errors(body)[0];
    return reject('invalid_payload', first ? `${first.instancePath || '/'} ${first.message}` : 'invalid');
  }
  if (body.project_slug !== parts[2]) {
    return reject('slug_mismatch', `subject slug ${parts[2]} != project_slug ${body.project_slug}`);
  }
  const types = Object.keys(body.metrics);
  if (types.length === 0) return reject('empty', 'metrics is an empty object');
  const badType = types.find((t) => !METRIC_TYPE.test(t));
  if (badType !== undefined) {
    return reject(
      'invalid_payload',
      `metric type ${JSON.stringify(badType.slice(0, 120))} does not match ${METRIC_TYPE_PATTERN}`,
    );
  }
  const observedAt = parseIsoTime(body.observed_at);
  if (!observedAt)
    return reject('invalid_time', `observed_at ${JSON.stringify(body.observed_at)} is not ISO 8601`);
  if (observedAt.getTime() > opts.now.getTime() + MAX_FUTURE_SKEW_MS) {
    return reject('future_time', `observed_at ${observedAt.toISOString()} is more than an hour ahead`);
  }
  if (observedAt < opts.oldest) {
    return reject('expired', `observed_at ${observedAt.toISOString()} is older than the retention window`);
  }
  return { ok: true, value: { kind, slug: body.project_slug, observedAt, metrics: body.metrics } };
}
