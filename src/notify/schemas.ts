import { type Static, Type } from 'typebox';
import { NullableTimestamp, Timestamp } from '../http/schemas.ts';
import { ProjectStatusSchema, SlugSchema } from '../protocol/index.ts';
import type { Delivery, Notifier } from './notifier-service.ts';
import { maskWebhookUrl } from './url-check.ts';

export const NotifierFiltersSchema = Type.Object(
  {
    to: Type.Optional(
      Type.Array(ProjectStatusSchema, {
        maxItems: 3,
        description: 'statuses entered that are notified (default: all)',
      }),
    ),
    tags: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
        maxItems: 50,
        description: 'only projects with one of these tags',
      }),
    ),
    slugs: Type.Optional(Type.Array(SlugSchema, { maxItems: 1000, description: 'only these projects' })),
    include_planned: Type.Optional(
      Type.Boolean({
        description:
          'also notify planned stops (a heartbeat with state "leaving", reason shutdown) and the return from them; default false',
      }),
    ),
  },
  { additionalProperties: false },
);

export const NotifierCreateSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    url: Type.String({
      minLength: 1,
      maxLength: 2000,
      description:
        'http:// or https://; loopback and private addresses are refused unless FED_WEBHOOK_ALLOW_PRIVATE=true',
    }),
    secret: Type.Optional(
      Type.String({
        minLength: 16,
        maxLength: 500,
        description: 'key of X-Federation-Signature (HMAC-SHA256 of the raw body); never returned',
      }),
    ),
    format: Type.Optional(
      Type.Union([Type.Literal('json'), Type.Literal('slack')], {
        default: 'json',
        description: 'json: the transition with the project; slack: a Slack-compatible {"text": …} body',
      }),
    ),
    filters: Type.Optional(NotifierFiltersSchema),
  },
  { additionalProperties: false },
);
export type NotifierCreate = Static<typeof NotifierCreateSchema>;

export const NotifierResponseSchema = Type.Object(
  {
    id: Type.Integer(),
    name: Type.Union([Type.String(), Type.Null()]),
    url: Type.String({ description: 'credentials, the query and secret-looking paths (Slack’s) masked' }),
    has_secret: Type.Boolean({
      description: 'whether deliveries are signed; the secret itself is never shown',
    }),
    format: Type.String(),
    filters: NotifierFiltersSchema,
    source: Type.String({ description: 'config (projects.yaml notifications:) or api' }),
    created_at: Timestamp,
  },
  { $id: 'Notifier' },
);

export const DeliveryStatusSchema = Type.Union([
  Type.Literal('pending'),
  Type.Literal('delivered'),
  Type.Literal('failed'),
]);

export const DeliveryResponseSchema = Type.Object(
  {
    id: Type.String({ description: 'the X-Federation-Delivery header value (a UUIDv7)' }),
    notifier_id: Type.Integer(),
    slug: Type.String(),
    event: Type.String({ description: 'transition, flapping, stable or maintenance_ended' }),
    status: DeliveryStatusSchema,
    attempts: Type.Integer(),
    occurred_at: Timestamp,
    created_at: Timestamp,
    next_attempt_at: NullableTimestamp,
    delivered_at: NullableTimestamp,
    expires_at: Timestamp,
    last_error: Type.Union([Type.String(), Type.Null()]),
    last_status_code: Type.Union([Type.Integer(), Type.Null()]),
    payload: Type.Unknown({ description: 'the body sent (parsed)' }),
  },
  { $id: 'Delivery' },
);

export function toNotifierResponse(n: Notifier): Static<typeof NotifierResponseSchema> {
  return {
    id: n.id,
    name: n.name,
    url: maskWebhookUrl(n.url),
    has_secret: n.hasSecret,
    format: n.format,
    filters: n.filters as Static<typeof NotifierFiltersSchema>,
    source: n.source,
    created_at: n.createdAt.toISOString(),
  };
}

export function toDeliveryResponse(d: Delivery): Static<typeof DeliveryResponseSchema> {
  let payload: unknown;
  try {
    payload = JSON.parse(d.body);
  } catch {
    payload = null;
  }
  return {
    id: d.id,
    notifier_id: d.notifierId,
    slug: d.slug,
    event: d.event,
    status: d.status,
    attempts: d.attempts,
    occurred_at: d.occurredAt.toISOString(),
    created_at: d.createdAt.toISOString(),
    next_attempt_at: d.nextAttemptAt?.toISOString() ?? null,
    delivered_at: d.deliveredAt?.toISOString() ?? null,
    expires_at: d.expiresAt.toISOString(),
    last_error: d.lastError,
    last_status_code: d.lastStatusCode,
    payload,
  };
}
