/**
 * The wire contract without its schemas: subject names, limits and payload types. This is the
 * package's `@commandcenter/federation/protocol` entry and what `src/client/` imports, so a project
 * embedding the client loads nats.js and nothing else at run time (the TypeBox schemas, which the
 * server validates with, are in ./index.ts; the types here are derived from them).
 */
export { findUnstorableText, MAX_CHECKED_DEPTH, unstorableTextMessage } from './unstorable-text.ts';

export const SLUG_PATTERN = '^[a-z0-9-]+$';
export const SLUG_MAX_LENGTH = 50;
export const MAX_HEARTBEAT_BYTES = 8 * 1024;
/** Bounds of a heartbeat's announced `interval_s`, in seconds. */
export const MIN_INTERVAL_S = 0.05;
export const MAX_INTERVAL_S = 86_400;
export const MAX_METRICS_BYTES = 64 * 1024;
export const METRIC_TYPE_PATTERN = '^[A-Za-z0-9_.:-]{1,100}$';
export const MAX_METRIC_TEXT_LENGTH = 500;

export const PRESENCE_SUBJECT_PREFIX = 'hub.presence.';
export const PRESENCE_WILDCARD = 'hub.presence.*';
export const STATUS_SUBJECT_PREFIX = 'fed.status.';
export const STATUS_WILDCARD = 'fed.status.>';
export const FANOUT_SUBJECT_PREFIX = 'fed.fanout.';
export const FANOUT_WILDCARD = 'fed.fanout.>';
export const METRICS_KINDS = ['graph', 'audit'] as const;
export type MetricsKind = (typeof METRICS_KINDS)[number];

export const presenceSubject = (slug: string): string => `${PRESENCE_SUBJECT_PREFIX}${slug}`;
export const statusSubject = (slug: string): string => `${STATUS_SUBJECT_PREFIX}${slug}`;
export const fanoutSubject = (runId: string): string => `${FANOUT_SUBJECT_PREFIX}${runId}`;
export const metricsSubject = (kind: MetricsKind, slug: string): string => `${kind}.summary.${slug}`;
/**
 * The inbox prefix a project's connection uses (nats.js `inboxPrefix`) when NATS permissions are on
 * (deploy/nats/): a project may subscribe to its own inboxes only, never to another's replies.
 */
export const projectInboxPrefix = (slug: string): string => `_INBOX_${slug}`;
export const actionSubject = (meshNamespace: string, action: string): string =>
  `${meshNamespace}.actions.${action}`;

/** Every webhook delivery carries its id (an idempotency key: the same on every retry) in this header. */
export const DELIVERY_HEADER = 'X-Federation-Delivery';
/** `sha256=<hex HMAC-SHA256 of the raw body>` with the notifier's secret, when it has one. */
export const SIGNATURE_HEADER = 'X-Federation-Signature';
/** transition, flapping or stable. */
export const EVENT_HEADER = 'X-Federation-Event';

export const PROJECT_STATUSES = ['online', 'offline', 'degraded'] as const;
export const EDGE_KINDS = ['api', 'queue', 'shared-schema', 'event', 'library'] as const;
export const ACTION_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,63}$';

export type {
  ActionReply,
  ActionRequest,
  Heartbeat,
  MetricsPayload,
  ProjectStatus,
  StatusEvent,
} from './index.ts';

/** Parses an ISO 8601 time; returns undefined for anything else. */
export function parseTime(value: string): Date | undefined {
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms);
}
