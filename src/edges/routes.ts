import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorResponses, READ_ERRORS, WRITE_ERRORS } from '../http/schemas.ts';
import { EdgeKindSchema, SlugSchema } from '../protocol/index.ts';
import type { EdgesService } from './edges-service.ts';
import {
  EdgeCreateSchema,
  EdgeResponseSchema,
  EdgeSourceSchema,
  GraphResponseSchema,
  toEdgeResponse,
  toGraphResponse,
} from './schemas.ts';

export const edgesRoutes: FastifyPluginAsyncTypebox<{ edges: EdgesService }> = async (app, { edges }) => {
  app.get(
    '/api/fed/edges',
    {
      schema: {
        tags: ['edges'],
        summary: 'List integration edges',
        querystring: Type.Object({
          project: Type.Optional(SlugSchema),
          kind: Type.Optional(EdgeKindSchema),
          source: Type.Optional(EdgeSourceSchema),
        }),
        response: {
          200: Type.Array(EdgeResponseSchema, {
            description: 'Edges ordered by id; `project` matches either end',
          }),
          ...READ_ERRORS,
        },
      },
    },
    async (request) => (await edges.listEdges(request.query)).map(toEdgeResponse),
  );

  app.post(
    '/api/fed/edges',
    {
      schema: {
        tags: ['edges'],
        summary: 'Declare an edge, or update the edge (from, to, kind); its source becomes api',
        body: EdgeCreateSchema,
        response: {
          200: EdgeResponseSchema,
          201: EdgeResponseSchema,
          ...WRITE_ERRORS,
          ...errorResponses(404),
        },
      },
    },
    async (request, reply) => {
      const { edge, created } = await edges.upsertApiEdge(request.body);
      return reply.code(created ? 201 : 200).send(toEdgeResponse(edge));
    },
  );

  app.delete(
    '/api/fed/edges/:id',
    {
      schema: {
        tags: ['edges'],
        summary:
          'Remove an edge (a config edge returns at the next start while projects.yaml lists it; a discovered one at the next heartbeat that reports it)',
        params: Type.Object({ id: Type.Integer({ minimum: 1, maximum: 2147483647 }) }),
        response: { 204: Type.Null(), ...errorResponses(400, 401, 404, 503) },
      },
    },
    async (request, reply) => {
      await edges.deleteEdge(request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/fed/graph',
    {
      schema: {
        tags: ['edges'],
        summary: 'The ecosystem: every project with its live status and key metrics, and every edge',
        response: { 200: GraphResponseSchema, ...READ_ERRORS },
      },
    },
    async () => toGraphResponse(await edges.graph()),
  );
};
