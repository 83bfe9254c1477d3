import { type Static, Type } from 'typebox';
import { ProjectResponseSchema, toProjectResponse } from '../catalog/schemas.ts';
import { Timestamp } from '../http/schemas.ts';
import { EdgeKindSchema, SlugSchema } from '../protocol/index.ts';
import { EDGE_SOURCES, type Edge, type GraphNode } from './edges-service.ts';

export const EdgeSourceSchema = Type.Enum(EDGE_SOURCES, {
  description: 'config (projects.yaml), api, or discovered (heartbeat integrations)',
});

export const EdgeCreateSchema = Type.Object(
  {
    from: SlugSchema,
    to: SlugSchema,
    kind: EdgeKindSchema,
    strength: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: '0..1; 0.5 when a new edge omits it' }),
    ),
    details: Type.Optional(
      Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
        description: 'free-form facts about the integration (endpoint, queue name, …)',
      }),
    ),
  },
  { additionalProperties: false },
);
export type EdgeCreate = Static<typeof EdgeCreateSchema>;

export const EdgeResponseSchema = Type.Object(
  {
    id: Type.Integer(),
    from: Type.String({ description: 'slug of the project that uses the other' }),
    to: Type.String({ description: 'slug of the project it depends on' }),
    kind: Type.String(),
    strength: Type.Number(),
    source: EdgeSourceSchema,
    details: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
    created_at: Timestamp,
    last_seen_at: Type.String({
      format: 'date-time',
      description: 'last time a source confirmed the edge (file load, API write or heartbeat)',
    }),
  },
  { $id: 'Edge' },
);
export type EdgeResponse = Static<typeof EdgeResponseSchema>;

export const LatestMetricSchema = Type.Object({
  value: Type.Union([Type.Number(), Type.String(), Type.Null()]),
  observed_at: Timestamp,
});

export const GraphNodeSchema = Type.Object({
  ...ProjectResponseSchema.properties,
  heartbeat_age_s: Type.Union([Type.Number(), Type.Null()], {
    description: 'seconds since the last heartbeat; null when none was received',
  }),
  metrics: Type.Record(Type.String(), LatestMetricSchema, {
    description: 'latest value of the most recently reported metric types (at most 12)',
  }),
});

export const GraphResponseSchema = Type.Object({
  nodes: Type.Array(GraphNodeSchema),
  edges: Type.Array(EdgeResponseSchema),
});
export type GraphResponse = Static<typeof GraphResponseSchema>;

export function toEdgeResponse(e: Edge): EdgeResponse {
  return {
    id: e.id,
    from: e.from,
    to: e.to,
    kind: e.kind,
    strength: e.strength,
    source: e.source,
    details: e.details,
    created_at: e.createdAt.toISOString(),
    last_seen_at: e.lastSeenAt.toISOString(),
  };
}

export function toGraphResponse(graph: { nodes: GraphNode[]; edges: Edge[] }): GraphResponse {
  return {
    nodes: graph.nodes.map((n) => ({
      ...toProjectResponse(n.project),
      heartbeat_age_s: n.heartbeatAgeS,
      metrics: Object.fromEntries(
        [...n.metrics].map(([type, m]) => [
          type,
          { value: m.value, observed_at: m.observedAt.toISOString() },
        ]),
      ),
    })),
    edges: graph.edges.map(toEdgeResponse),
  };
}
