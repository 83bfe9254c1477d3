import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { UnavailableError } from '../errors.ts';
import { errorResponses, READ_ERRORS, Timestamp, WRITE_ERRORS } from '../http/schemas.ts';
import { HeartbeatSchema, MAX_HEARTBEAT_BYTES, ProjectStatusSchema, SlugSchema } from '../protocol/index.ts';
import type { EventStreams } from './event-stream.ts';
import type { HeartbeatIntake } from './heartbeat-intake.ts';
import { DEFAULT_HISTORY_LIMIT, type HistoryService, MAX_HISTORY_LIMIT } from './history-service.ts';

export interface PresenceRoutesOptions {
  intake: HeartbeatIntake;
  history: HistoryService;
  streams: EventStreams;
}

const HeartbeatAcceptedSchema = Type.Object({
  accepted: Type.Literal(true),
  slug: Type.String(),
  received_at: Timestamp,
});

const TransitionSchema = Type.Object({
  from: ProjectStatusSchema,
  to: ProjectStatusSchema,
  at: Timestamp,
  reason: Type.String({ description: 'shutdown: the project said it was leaving (a planned stop)' }),
  maintenance: Type.Boolean({ description: 'inside a maintenance window: stored, not notified' }),
});

const UptimeFraction = Type.Number({ minimum: 0, maximum: 1 });

const HistorySchema = Type.Object({
  slug: Type.String(),
  transitions: Type.Array(TransitionSchema, { description: 'the latest transitions, oldest first' }),
  uptime: Type.Object(
    { '1h': UptimeFraction, '24h': UptimeFraction, '7d': UptimeFraction },
    { description: 'fraction of each window spent online or degraded' },
  ),
});

/** Heartbeats over HTTP, the change feed (SSE) and status history. */
export const presenceRoutes: FastifyPluginAsyncTypebox<PresenceRoutesOptions> = async (app, opts) => {
  const { intake, history, streams } = opts;

  app.post(
    '/api/fed/heartbeats',
    {
      // The body is checked by the intake, so that a bad heartbeat is counted like one from NATS.
      attachValidation: true,
      bodyLimit: MAX_HEARTBEAT_BYTES,
      schema: {
        tags: ['presence'],
        summary: 'Send a heartbeat over HTTP (for projects without NATS)',
        body: HeartbeatSchema,
        response: { 202: HeartbeatAcceptedSchema, ...WRITE_ERRORS, ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      const accepted = await intake.fromHttp(request.body);
      return reply.code(202).send({
        accepted: true as const,
        slug: accepted.slug,
        received_at: accepted.receivedAt.toISOString(),
      });
    },
  );

  app.get(
    '/api/fed/events',
    {
      schema: {
        tags: ['presence'],
        summary: 'Change feed (Server-Sent Events): event status, metrics and fanout, JSON data',
        produces: ['text/event-stream'],
        response: {
          200: Type.String({
            description:
              'text/event-stream: `event: status` with data {slug,from,to,at,reason}; `event: metrics`; `event: fanout`; a comment every 15 s',
          }),
          ...READ_ERRORS,
        },
      },
    },
    async (_request, reply) => {
      // Each stream holds a socket and a buffer for good: past the cap, refuse rather than run out.
      if (!streams.hasRoom) {
        reply.header('retry-after', '30');
        throw new UnavailableError(
          `too many open event streams on this instance (${streams.maxClients}, FED_SSE_MAX_CLIENTS); try again later`,
        );
      }
      reply.hijack();
      streams.attach(reply.raw);
    },
  );

  app.get(
    '/api/fed/projects/:slug/history',
    {
      schema: {
        tags: ['presence'],
        summary: 'Status transitions of a project and its uptime over 1 h, 24 h and 7 d',
        params: Type.Object({ slug: SlugSchema }),
        querystring: Type.Object({
          limit: Type.Optional(
            Type.Integer({ minimum: 1, maximum: MAX_HISTORY_LIMIT, default: DEFAULT_HISTORY_LIMIT }),
          ),
        }),
        response: { 200: HistorySchema, ...READ_ERRORS, ...errorResponses(404) },
      },
    },
    async (request) => {
      const h = await history.history(request.params.slug, request.query.limit);
      return {
        slug: h.slug,
        transitions: h.transitions.map((t) => ({ ...t, at: t.at.toISOString() })),
        uptime: h.uptime,
      };
    },
  );
};
