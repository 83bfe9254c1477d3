import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses, READ_ERRORS } from '../http/schemas.ts';
import type { MetricsService } from './metrics-service.ts';
import { AllLatestMetricsSchema, HistoryQuery, ProjectMetricsSchema, ProjectRefParams } from './schemas.ts';

export const metricsRoutes: FastifyPluginAsyncTypebox<{ service: MetricsService }> = async (app, opts) => {
  const { service } = opts;

  app.get(
    '/api/fed/metrics',
    {
      schema: {
        tags: ['metrics'],
        summary: 'Latest metric values of every project',
        response: { 200: AllLatestMetricsSchema, ...READ_ERRORS },
      },
    },
    async () => service.getAllLatest(),
  );

  app.get(
    '/api/fed/metrics/:project',
    {
      schema: {
        tags: ['metrics'],
        summary: 'Latest metric values of one project, and their history when filtered',
        params: ProjectRefParams,
        querystring: HistoryQuery,
        response: { 200: ProjectMetricsSchema, ...READ_ERRORS, ...errorResponses(404) },
      },
    },
    async (request) => service.getProjectMetrics(request.params.project, request.query),
  );
};
