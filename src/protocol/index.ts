/**
 * The wire contract between the Federation Service and project backends: subjects and JSON payloads.
 * The server validates with these TypeBox schemas; ./wire.ts holds the constants without them (what
 * `src/client/` and the package's `/protocol` entry load). Imports nothing of the server.
 */
import { type Static, Type } from 'typebox';
import {
  EDGE_KINDS,
  MAX_INTERVAL_S,
  MAX_METRIC_TEXT_LENGTH,
  METRIC_TYPE_PATTERN,
  MIN_INTERVAL_S,
  PROJECT_STATUSES,
  SLUG_MAX_LENGTH,
  SLUG_PATTERN,
} from './wire.ts';

export * from './wire.ts';

export const SlugSchema = Type.String({ pattern: SLUG_PATTERN, minLength: 1, maxLength: SLUG_MAX_LENGTH });
export const ProjectStatusSchema = Type.Enum(PROJECT_STATUSES);
export type ProjectStatus = Static<typeof ProjectStatusSchema>;
export const EdgeKindSchema = Type.Enum(EDGE_KINDS);

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
  /** "leaving": the project is shutting down; it is recorded offline at once with reason `shutdown`. */
  state: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('leaving')])),
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
