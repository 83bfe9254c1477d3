import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorResponses, READ_ERRORS, WRITE_ERRORS } from '../http/schemas.ts';
import { ProjectStatusSchema, SlugSchema } from '../protocol/index.ts';
import { MAX_PAGE_SIZE } from './catalog-service.ts';
import {
  ProjectCreateSchema,
  type ProjectResponse,
  ProjectResponseSchema,
  toProjectResponse,
} from './schemas.ts';

const SlugParams = Type.Object({ slug: SlugSchema });

/** `[` + every batch (comma-separated JSON objects), comma-separated + `]`, one chunk per batch. */
async function* jsonArray(
  first: IteratorResult<string>,
  rest: AsyncGenerator<string>,
): AsyncGenerator<string> {
  let open = '[';
  for (let r = first; !r.done; r = await rest.next()) {
    yield open + r.value;
    open = ',';
  }
  yield open === '[' ? '[]' : ']';
}

export const catalogRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/fed/projects',
    {
      schema: {
        tags: ['catalog'],
        summary: 'List projects with their live status',
        querystring: Type.Object({
          status: Type.Optional(ProjectStatusSchema),
          tag: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE })),
          cursor: Type.Optional(Type.String({ maxLength: 200 })),
        }),
        response: {
          200: Type.Array(ProjectResponseSchema, {
            description:
              'Projects ordered by slug; when more remain, X-Next-Cursor holds the cursor of the next page',
          }),
          ...READ_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const { limit, ...filters } = request.query;
      if (limit === undefined) {
        // The whole catalog, as one JSON array streamed batch by batch: memory stays flat however many
        // projects there are. The first batch is read before anything is sent, so a database that is
        // down still answers 503.
        // PostgreSQL writes each batch's JSON (the same fields as the schema's), so the service only
        // forwards text.
        const batches = app.catalog.streamProjectsJson(filters);
        const first = await batches.next();
        reply.type('application/json; charset=utf-8');
        const body = Readable.from(jsonArray(first, batches));
        return reply.send(body as unknown as ProjectResponse[]);
      }
      // A page too is JSON text from PostgreSQL, forwarded as it is.
      const { body, nextCursor } = await app.catalog.getProjectsJson({ ...request.query, limit });
      if (nextCursor) reply.header('X-Next-Cursor', nextCursor);
      reply.type('application/json; charset=utf-8');
      return reply.send(body as unknown as ProjectResponse[]);
    },
  );

  app.post(
    '/api/fed/projects',
    {
      schema: {
        tags: ['catalog'],
        summary: 'Register a project, or update it by slug (same id)',
        body: ProjectCreateSchema,
        response: { 200: ProjectResponseSchema, 201: ProjectResponseSchema, ...WRITE_ERRORS },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const { project, created } = await app.catalog.registerProject({
        slug: b.slug,
        name: b.name,
        hubUrl: b.hub_url,
        meshNamespace: b.mesh_namespace,
        tags: b.tags ?? [],
        ...(b.allow_fanout ? { allowFanout: b.allow_fanout } : {}),
      });
      return reply.code(created ? 201 : 200).send(toProjectResponse(project));
    },
  );

  app.get(
    '/api/fed/projects/:slug',
    {
      schema: {
        tags: ['catalog'],
        summary: 'One project by slug',
        params: SlugParams,
        response: { 200: ProjectResponseSchema, ...READ_ERRORS, ...errorResponses(404) },
      },
    },
    async (request, reply) => {
      const body = await app.catalog.getProjectJson(request.params.slug);
      reply.type('application/json; charset=utf-8');
      return reply.send(body as unknown as ProjectResponse);
    },
  );

  app.delete(
    '/api/fed/projects/:slug',
    {
      schema: {
        tags: ['catalog'],
        summary:
          'Remove a project, its history, metrics and edges (projects.yaml re-adds it at the next start)',
        params: SlugParams,
        response: { 204: Type.Null(), ...errorResponses(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      await app.catalog.deleteProject(request.params.slug);
      return reply.code(204).send(null);
    },
  );
};
