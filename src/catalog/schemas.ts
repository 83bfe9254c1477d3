import { type Static, Type } from 'typebox';
import { NullableTimestamp, Timestamp } from '../http/schemas.ts';
import { ACTION_NAME_PATTERN, ProjectStatusSchema, SlugSchema } from '../protocol/index.ts';
import type { Project } from './catalog-service.ts';

export const ProjectCreateSchema = Type.Object(
  {
    slug: SlugSchema,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    hub_url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 500 }),
    mesh_namespace: Type.String({
      minLength: 1,
      maxLength: 100,
      pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$',
    }),
    tags: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 50, default: [] }),
    ),
    allow_fanout: Type.Optional(Type.Array(Type.String({ pattern: ACTION_NAME_PATTERN }), { maxItems: 50 })),
  },
  { additionalProperties: false },
);
export type ProjectCreate = Static<typeof ProjectCreateSchema>;

export const MaintenanceSchema = Type.Object(
  {
    until: Timestamp,
    reason: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'Maintenance' },
);

export const ProjectResponseSchema = Type.Object(
  {
    id: Type.Integer(),
    slug: Type.String(),
    name: Type.String(),
    hub_url: Type.String(),
    mesh_namespace: Type.String(),
    status: ProjectStatusSchema,
    tags: Type.Array(Type.String()),
    last_heartbeat_at: NullableTimestamp,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: Type.Union([Type.String(), Type.Null()]),
    health: Type.Union([Type.String(), Type.Null()], { description: 'health the project last reported' }),
    interval_s: Type.Union([Type.Number(), Type.Null()], {
      description: 'heartbeat interval the project announced',
    }),
    allow_fanout: Type.Array(Type.String()),
    source: Type.String({ description: 'config, api or heartbeat: where the project first came from' }),
    configured: Type.Boolean({ description: 'true while projects.yaml lists the project' }),
    status_changed_at: NullableTimestamp,
    maintenance: Type.Union([MaintenanceSchema, Type.Null()], {
      description: 'the maintenance window in force (its transitions are stored but not notified), or null',
    }),
    flapping: Type.Boolean({
      description:
        'true while the project changes status more than FED_FLAP_CHANGES times in FED_FLAP_WINDOW_S: notifiers get one "flapping" notification, then one "stable"',
    }),
  },
  { $id: 'ProjectResponse' },
);
export type ProjectResponse = Static<typeof ProjectResponseSchema>;

/** The window in force, or null (the catalog reads `maintenanceUntil` as null once the window has ended). */
export function maintenanceOf(
  p: Pick<Project, 'maintenanceUntil' | 'maintenanceReason'>,
): { until: string; reason: string | null } | null {
  if (!p.maintenanceUntil) return null;
  return { until: new Date(p.maintenanceUntil).toISOString(), reason: p.maintenanceReason ?? null };
}

export function toProjectResponse(p: Project): ProjectResponse {
  return {
    id: p.id,
    slug: p.slug,
    name: p.name,
    hub_url: p.hubUrl,
    mesh_namespace: p.meshNamespace,
    status: p.status,
    tags: p.tags ?? [],
    last_heartbeat_at: p.lastHeartbeatAt ? new Date(p.lastHeartbeatAt).toISOString() : null,
    created_at: new Date(p.createdAt).toISOString(),
    updated_at: new Date(p.updatedAt).toISOString(),
    version: p.version,
    health: p.reportedHealth,
    interval_s: p.intervalS,
    allow_fanout: p.allowFanout ?? [],
    source: p.source,
    configured: p.configured,
    status_changed_at: p.statusChangedAt ? new Date(p.statusChangedAt).toISOString() : null,
    maintenance: maintenanceOf(p),
    flapping: p.flapping ?? false,
  };
}
