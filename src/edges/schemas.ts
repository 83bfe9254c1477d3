import { type Static, Type } from 'typebox';
import { ProjectResponseSchema, toProjectResponse } from '../catalog/schemas.ts';
import { Timestamp } from '../http/schemas.ts';
import { EdgeKindSchema, type ProjectStatus, SlugSchema } from '../protocol/index.ts';
import { EDGE_SOURCES, type Edge, type GraphNode } from './edges-service.ts';
import {
  type ExternalEdge,
  GROUP_BYS,
  type GraphGroup,
  type GroupBy,
  type GroupEdge,
  type ProblemRow,
} from './graph-queries.ts';

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

export const GroupBySchema = Type.Enum(GROUP_BYS, {
  description:
    'tag: the project\'s first tag ("" when it has none); namespace: its mesh namespace without the last segment; status: its live status',
});

const Count = Type.Integer({ minimum: 0 });
export const StatusCountsSchema = Type.Object({ online: Count, degraded: Count, offline: Count });

export const GroupEdgeSchema = Type.Object({
  from: Type.String({ description: 'key of the group of the projects that use the others' }),
  to: Type.String(),
  count: Type.Integer({ minimum: 1, description: 'project-to-project edges bundled here' }),
  kinds: Type.Array(Type.String()),
});

export const GroupedGraphResponseSchema = Type.Object({
  group_by: GroupBySchema,
  groups: Type.Array(
    Type.Object({
      key: Type.String(),
      count: Count,
      status_counts: StatusCountsSchema,
      internal_edges: Type.Integer({ minimum: 0, description: 'edges between two projects of this group' }),
    }),
    { description: 'largest group first' },
  ),
  edges: Type.Array(GroupEdgeSchema),
});
export type GroupedGraphResponse = Static<typeof GroupedGraphResponseSchema>;

export const GroupGraphResponseSchema = Type.Object({
  group_by: GroupBySchema,
  group: Type.String(),
  nodes: Type.Array(GraphNodeSchema),
  edges: Type.Array(EdgeResponseSchema, { description: 'edges between two projects of the group' }),
  external_edges: Type.Array(
    Type.Object({
      project: Type.String({ description: 'slug of the project in this group' }),
      group: Type.String({ description: 'key of the group at the other end' }),
      direction: Type.Union([Type.Literal('out'), Type.Literal('in')]),
      count: Type.Integer({ minimum: 1 }),
      kinds: Type.Array(Type.String()),
    }),
    { description: 'edges leaving the group, bundled per project and other group' },
  ),
});
export type GroupGraphResponse = Static<typeof GroupGraphResponseSchema>;

/** For the OpenAPI document only: the route serializes each of the three shapes with its own schema. */
export const AnyGraphResponseSchema = Type.Object(
  {
    group_by: Type.Optional(GroupBySchema),
    group: Type.Optional(Type.String()),
    nodes: Type.Optional(Type.Array(GraphNodeSchema, { description: 'ungrouped, or one group' })),
    groups: Type.Optional(GroupedGraphResponseSchema.properties.groups),
    edges: Type.Array(Type.Union([EdgeResponseSchema, GroupEdgeSchema]), {
      description: 'project edges (ungrouped, one group) or bundled group edges (group_by alone)',
    }),
    external_edges: Type.Optional(GroupGraphResponseSchema.properties.external_edges),
  },
  { description: 'one of three shapes: ungrouped, grouped (group_by), one group (group_by and group)' },
);

export const ProblemsResponseSchema = Type.Object({
  counts: StatusCountsSchema,
  problems: Type.Array(
    Type.Object({
      slug: Type.String(),
      name: Type.String(),
      status: Type.Union([Type.Literal('offline'), Type.Literal('degraded')]),
      since: Type.String({
        format: 'date-time',
        description: 'when it took this status (its creation if it never beat)',
      }),
      reason: Type.String({ description: 'reason of the transition to this status' }),
      last_heartbeat_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
      groups: Type.Object(
        { tag: Type.String(), namespace: Type.String(), status: Type.String() },
        { description: 'the key of its group under each group_by' },
      ),
    }),
    { description: 'offline and degraded projects, the most recent change first' },
  ),
});
export type ProblemsResponse = Static<typeof ProblemsResponseSchema>;

export function toGroupedGraphResponse(
  groupBy: GroupBy,
  graph: { groups: GraphGroup[]; edges: GroupEdge[] },
): GroupedGraphResponse {
  return {
    group_by: groupBy,
    groups: graph.groups.map((g) => ({
      key: g.key,
      count: g.count,
      status_counts: g.statusCounts,
      internal_edges: g.internalEdges,
    })),
    edges: graph.edges,
  };
}

export function toGroupGraphResponse(
  groupBy: GroupBy,
  group: string,
  graph: { nodes: GraphNode[]; edges: Edge[]; external: ExternalEdge[] },
): GroupGraphResponse {
  const { nodes, edges } = toGraphResponse(graph);
  return { group_by: groupBy, group, nodes, edges, external_edges: graph.external };
}

export function toProblemsResponse(p: {
  counts: Record<ProjectStatus, number>;
  problems: ProblemRow[];
}): ProblemsResponse {
  return {
    counts: p.counts,
    problems: p.problems.map((r) => ({
      slug: r.slug,
      name: r.name,
      status: r.status as 'offline' | 'degraded',
      since: r.since.toISOString(),
      reason: r.reason,
      last_heartbeat_at: r.lastHeartbeatAt ? r.lastHeartbeatAt.toISOString() : null,
      groups: r.groups,
    })),
  };
}
