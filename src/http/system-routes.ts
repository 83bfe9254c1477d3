import '@fastify/swagger';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { Timestamp } from './schemas.ts';

const CheckSchema = Type.Object({ status: Type.String() }, { additionalProperties: true });

/** Health (the seed's body plus checks), the OpenAPI document and Prometheus metrics. */
export const systemRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/fed/health',
    {
      schema: {
        tags: ['system'],
        summary: 'Service health with a check per dependency',
        response: {
          200: Type.Object({
            status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
            service: Type.Literal('federation'),
            timestamp: Timestamp,
            version: Type.String(),
            uptime_s: Type.Number(),
            checks: Type.Record(Type.String(), CheckSchema),
          }),
        },
      },
    },
    async () => {
      const { status, checks } = await app.health.run();
      const now = app.clock.now();
      return {
        status,
        service: 'federation' as const,
        timestamp: now.toISOString(),
        version: SERVICE_VERSION,
        uptime_s: Math.round((now.getTime() - app.startedAt.getTime()) / 1000),
        checks,
      };
    },
  );

  app.get('/api/fed/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('Content-Type', app.metricsRegistry.contentType);
    return app.metricsRegistry.metrics();
  });
};

export const SERVICE_VERSION = '0.1.0';
