/**
 * The wire contract between the Federation Service and project backends: subjects and JSON payloads.
 * A project embeds this module (through `./client`), so it imports nothing of the server.
 */
import { type Static, Type } from 'typebox';

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

export const SlugSchema = Type.String({ pattern: SLUG_PATTERN, minLength: 1, maxLength: SLUG_MAX_LENGTH });
export const PROJECT_STATUSES = ['online', 'offline', 'degraded'] as const;
export const ProjectStatusSchema = Type.Enum(PROJECT_STATUSES);
export type ProjectStatus = Static<typeof ProjectStatusSchema>;
export const EDGE_KINDS = ['api', 'queue', 'shared-schema', 'event', 'library'] as const;
export const EdgeKindSchema = Type.Enum(EDGE_KINDS);
export const ACTION_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,63}$';

export const HeartbeatIntegrationSchema = Type.Object({
  to: SlugSchema,
  kind: EdgeKindSchema,
  strength: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
});

/** `hub.presence.<slug>` and `POST /api/fed/heartbeats`. Unknown extra fields are ignored. */
export const HeartbeatSchema = Type.Object({
  project_slug: SlugSchema,
  hub_url: Type.String({ pattern: '^https?://', maxLength: 500 }),
  mesh_namespace: Type.String({
    minLength: 1,
    maxLength: 100,
    pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$',
  }),
  timestamp: Type.String({ maxLength: 64 }),
  version: Type.Optional(Type.String({ maxLength: 100 })),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  tags: Type.Optional(Type.Array(Type.String({ maxLength: 100 }), { maxItems: 50 })),
  health: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('degraded')])),
  // A floor, not just > 0: 1e-300 passed "> 0" and then underflowed the REAL column, so a heartbeat
  // answered 202 was dropped by the writer (found by the fuzz tests).
  interval_s: Type.Optional(Type.Number({ minimum: MIN_INTERVAL_S, maximum: MAX_INTERVAL_S })),
  integrations: Type.Optional(Type.Array(HeartbeatIntegrationSchema, { maxItems: 100 })),
});
export type Heartbeat = Static<typeof HeartbeatSchema>;

export const MetricValueSchema = Type.Union([
  Type.Number(),
  Type.String({ maxLength: MAX_METRIC_TEXT_LENGTH }),
]);
/** `graph.summary.<slug>` and `audit.summary.<slug>`, captured by JetStream. */
export const MetricsPayloadSchema = Type.Object({
  project_slug: SlugSchema,
  observed_at: Type.String({ maxLength: 64 }),
  metrics: Type.Record(Type.String({ pattern: METRIC_TYPE_PATTERN }), MetricValueSchema),
});
export type MetricsPayload = Static<typeof MetricsPayloadSchema>;

/** Request sent on `<mesh_namespace>.actions.<action>`. */
export const ActionRequestSchema = Type.Object({
  run_id: Type.String(),
  action: Type.String(),
  params: Type.Optional(Type.Unknown()),
});
export type ActionRequest = Static<typeof ActionRequestSchema>;

export const ActionReplySchema = Type.Union([
  Type.Object({ ok: Type.Literal(true), result: Type.Optional(Type.Unknown()) }),
  Type.Object({ ok: Type.Literal(false), error: Type.String() }),
]);
export type ActionReply = Static<typeof ActionReplySchema>;

/** Published on `fed.status.<slug>` and streamed as SSE `event: status`. */
export const StatusEventSchema = Type.Object({
  slug: SlugSchema,
  from: ProjectStatusSchema,
  to: ProjectStatusSchema,
  at: Type.String({ format: 'date-time' }),
  reason: Type.String(),
});
export type StatusEvent = Static<typeof StatusEventSchema>;

/** Parses an ISO 8601 time; returns undefined for anything else. */
export function parseTime(value: string): Date | undefined {
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms);
}
