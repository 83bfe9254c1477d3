import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorResponses, READ_ERRORS, WRITE_ERRORS } from '../http/schemas.ts';
import { SlugSchema } from '../protocol/index.ts';
import type { NotifierService } from './notifier-service.ts';
import {
  DeliveryResponseSchema,
  DeliveryStatusSchema,
  NotifierCreateSchema,
  NotifierResponseSchema,
  toDeliveryResponse,
  toNotifierResponse,
} from './schemas.ts';

export const DEFAULT_DELIVERIES_PAGE = 100;
export const MAX_DELIVERIES_PAGE = 1000;
const UUID = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

export const notifyRoutes: FastifyPluginAsyncTypebox<{
  notifiers: NotifierService;
  maxAgeS: number;
}> = async (app, { notifiers, maxAgeS }) => {
  app.get(
    '/api/fed/notifiers',
    {
      schema: {
        tags: ['notify'],
        summary: 'List webhook notifiers (secrets are never shown)',
        response: { 200: Type.Array(NotifierResponseSchema), ...READ_ERRORS },
      },
    },
    async () => (await notifiers.list()).map(toNotifierResponse),
  );

  app.post(
    '/api/fed/notifiers',
    {
      schema: {
        tags: ['notify'],
        summary: 'Add a webhook notifier: a URL, an optional secret (signs each body), filters and a format',
        body: NotifierCreateSchema,
        response: { 201: NotifierResponseSchema, ...WRITE_ERRORS },
      },
    },
    async (request, reply) => reply.code(201).send(toNotifierResponse(await notifiers.create(request.body))),
  );

  app.delete(
    '/api/fed/notifiers/:id',
    {
      schema: {
        tags: ['notify'],
        summary:
          'Remove a notifier and its deliveries (one from projects.yaml returns at the next start while the file lists it)',
        params: Type.Object({ id: Type.Integer({ minimum: 1, maximum: 2147483647 }) }),
        response: { 204: Type.Null(), ...errorResponses(400, 401, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      await notifiers.delete(request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/fed/notifications',
    {
      schema: {
        tags: ['notify'],
        summary: 'Deliveries of the outbox, newest first; X-Next-Cursor pages on',
        querystring: Type.Object({
          status: Type.Optional(DeliveryStatusSchema),
          notifier: Type.Optional(Type.Integer({ minimum: 1, maximum: 2147483647 })),
          slug: Type.Optional(SlugSchema),
          limit: Type.Optional(
            Type.Integer({ minimum: 1, maximum: MAX_DELIVERIES_PAGE, default: DEFAULT_DELIVERIES_PAGE }),
          ),
          cursor: Type.Optional(Type.String({ pattern: UUID })),
        }),
        response: { 200: Type.Array(DeliveryResponseSchema), ...READ_ERRORS },
      },
    },
    async (request, reply) => {
      const q = request.query;
      const { deliveries, next } = await notifiers.deliveries({
        status: q.status,
        notifierId: q.notifier,
        slug: q.slug,
        limit: q.limit ?? DEFAULT_DELIVERIES_PAGE,
        after: q.cursor,
      });
      if (next) reply.header('X-Next-Cursor', next);
      return deliveries.map(toDeliveryResponse);
    },
  );

  app.post(
    '/api/fed/notifications/:id/retry',
    {
      schema: {
        tags: ['notify'],
        summary:
          'Send a pending or failed delivery again now (same id, same body); a delivered one answers 409',
        params: Type.Object({ id: Type.String({ pattern: UUID }) }),
        response: { 202: DeliveryResponseSchema, ...WRITE_ERRORS, ...errorResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const d = await notifiers.retry(request.params.id, maxAgeS);
      app.deliveryWorker.kick();
      return reply.code(202).send(toDeliveryResponse(d));
    },
  );
};
