import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type TSchema, Type } from 'typebox';
import { InputError } from '../errors.ts';
import { errorResponses, READ_ERRORS, WRITE_ERRORS } from '../http/schemas.ts';
import { EdgeKindSchema, SlugSchema } from '../protocol/index.ts';
import type { EdgesService } from './edges-service.ts';
import {
  AnyGraphResponseSchema,
  EdgeCreateSchema,
  EdgeResponseSchema,
  EdgeSourceSchema,
  GraphResponseSchema,
  GroupBySchema,
  GroupedGraphResponseSchema,
  GroupGraphResponseSchema,
  ProblemsResponseSchema,
  toEdgeResponse,
  toGraphResponse,
  toGroupedGraphResponse,
  toGroupGraphResponse,
  toProblemsResponse,
} from './schemas.ts';

export const DEFAULT_PROBLEMS = 50;
export const MAX_PROBLEMS = 1000;

export const edgesRoutes: FastifyPluginAsyncTypebox<{ edges: EdgesService; maxNodes: number }> = async (
  app,
  { edges, maxNodes },
) => {
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
        summary:
          'The ecosystem: every project and edge; with group_by, groups and the edges between them; with group_by and group, one group',
        description: `Without group_by: every project with its live status and key metrics, and every edge; a catalog of more than FED_GRAPH_MAX_NODES (${maxNodes} here) projects gets 400 graph_too_large, pointing to group_by. With group_by: {group_by, groups:[{key,count,status_counts,internal_edges}], edges:[{from,to,count,kinds}]}. With group_by and group: that group's nodes and edges (the ungrouped shape) plus external_edges, the edges leaving it bundled per project and other group.`,
        querystring: Type.Object({
          group_by: Type.Optional(GroupBySchema),
          group: Type.Optional(
            Type.String({
              maxLength: 200,
              description: 'a group key from the grouped answer ("" for untagged)',
            }),
          ),
        }),
        response: {
          200: AnyGraphResponseSchema,
          ...READ_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const { group_by: groupBy, group } = request.query;
      // The three shapes differ; serialize each with its own schema instead of trying a union per item.
      // A string with a JSON content type is sent as it is, without the route's union serializer.
      const send = (schema: TSchema, body: object) => {
        const serialize = reply.compileSerializationSchema(schema as Record<string, unknown>);
        return reply
          .type('application/json; charset=utf-8')
          .send(serialize(body as Record<string, unknown>) as never);
      };
      if (group !== undefined) {
        if (!groupBy) {
          throw new InputError('group needs group_by (tag, namespace or status) to say what the key is', {
            field: 'group_by',
          });
        }
        const graph = await edges.groupGraph(groupBy, group, maxNodes);
        return send(GroupGraphResponseSchema, toGroupGraphResponse(groupBy, group, graph));
      }
      if (groupBy) {
        return send(
          GroupedGraphResponseSchema,
          toGroupedGraphResponse(groupBy, await edges.groupedGraph(groupBy, maxNodes)),
        );
      }
      return send(GraphResponseSchema, toGraphResponse(await edges.graph(maxNodes)));
    },
  );

  app.get(
    '/api/fed/problems',
    {
      schema: {
        tags: ['edges'],
        summary:
          'Offline and degraded projects, the most recent change first, with the reason; and the count of each status',
        querystring: Type.Object({
          limit: Type.Optional(
            Type.Integer({ minimum: 1, maximum: MAX_PROBLEMS, default: DEFAULT_PROBLEMS }),
          ),
        }),
        response: { 200: ProblemsResponseSchema, ...READ_ERRORS },
      },
    },
    async (request) => toProblemsResponse(await edges.problems(request.query.limit ?? DEFAULT_PROBLEMS)),
  );
};
