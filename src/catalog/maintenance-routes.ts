import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorResponses, Timestamp, WRITE_ERRORS } from '../http/schemas.ts';
import { SlugSchema } from '../protocol/index.ts';
import type { MaintenanceService } from './maintenance.ts';
import { ProjectResponseSchema, toProjectResponse } from './schemas.ts';

const MaintenanceBody = Type.Object(
  {
    until: Type.String({
      format: 'date-time',
      description: 'when the window ends (ISO 8601), in the future',
    }),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
  },
  { additionalProperties: false },
);

const TagMaintenanceBody = Type.Object(
  {
    tag: Type.String({ minLength: 1, maxLength: 100, description: 'every project with this tag' }),
    until: Type.String({ format: 'date-time' }),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
  },
  { additionalProperties: false },
);

const TagMaintenanceResponse = Type.Object({
  tag: Type.String(),
  count: Type.Integer(),
  slugs: Type.Array(Type.String()),
  until: Type.Union([Timestamp, Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
});

export const maintenanceRoutes: FastifyPluginAsyncTypebox<{ maintenance: MaintenanceService }> = async (
  app,
  { maintenance },
) => {
  app.put(
    '/api/fed/projects/:slug/maintenance',
    {
      schema: {
        tags: ['catalog'],
        summary:
          'Start (or move) a maintenance window: until then the project’s transitions are stored with maintenance: true and not notified',
        params: Type.Object({ slug: SlugSchema }),
        body: MaintenanceBody,
        response: { 200: ProjectResponseSchema, ...WRITE_ERRORS, ...errorResponses(404) },
      },
    },
    async (request) => {
      const w = maintenance.window(request.body.until, request.body.reason);
      await maintenance.setForProject(request.params.slug, w);
      return toProjectResponse(await app.catalog.getProject(request.params.slug));
    },
  );

  app.delete(
    '/api/fed/projects/:slug/maintenance',
    {
      schema: {
        tags: ['catalog'],
        summary: 'End the project’s maintenance window now',
        params: Type.Object({ slug: SlugSchema }),
        response: { 200: ProjectResponseSchema, ...errorResponses(400, 401, 404, 429, 503) },
      },
    },
    async (request) => {
      await maintenance.clearForProject(request.params.slug);
      return toProjectResponse(await app.catalog.getProject(request.params.slug));
    },
  );

  app.put(
    '/api/fed/maintenance',
    {
      schema: {
        tags: ['catalog'],
        summary:
          'Start a maintenance window for every project with a tag (a planned release of a team, a region …)',
        body: TagMaintenanceBody,
        response: { 200: TagMaintenanceResponse, ...WRITE_ERRORS },
      },
    },
    async (request) => {
      const { tag, until, reason } = request.body;
      const w = maintenance.window(until, reason);
      const slugs = await maintenance.setForTag(tag, w);
      return { tag, count: slugs.length, slugs, until: w.until.toISOString(), reason: w.reason };
    },
  );

  app.delete(
    '/api/fed/maintenance',
    {
      schema: {
        tags: ['catalog'],
        summary: 'End the maintenance windows of every project with a tag',
        querystring: Type.Object({ tag: Type.String({ minLength: 1, maxLength: 100 }) }),
        response: { 200: TagMaintenanceResponse, ...errorResponses(400, 401, 429, 503) },
      },
    },
    async (request) => {
      const slugs = await maintenance.clearForTag(request.query.tag);
      return { tag: request.query.tag, count: slugs.length, slugs, until: null, reason: null };
    },
  );
};
