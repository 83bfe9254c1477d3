import { readFileSync } from 'node:fs';
import { type Static, Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.ts';
import {
  ACTION_NAME_PATTERN,
  EdgeKindSchema,
  findUnstorableText,
  ProjectStatusSchema,
  SlugSchema,
  unstorableTextMessage,
} from '../protocol/index.ts';

const ProjectEntrySchema = Type.Object(
  {
    slug: SlugSchema,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    hub_url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 500 }),
    mesh_namespace: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$' }),
    ),
    tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }))),
    allow_fanout: Type.Optional(Type.Array(Type.String({ pattern: ACTION_NAME_PATTERN }))),
  },
  { additionalProperties: false },
);

const EdgeEntrySchema = Type.Object(
  {
    from: SlugSchema,
    to: SlugSchema,
    kind: EdgeKindSchema,
    strength: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);

/** A webhook notifier (the API's POST /api/fed/notifiers body); `name` keys it across restarts. */
export const NotificationEntrySchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    url: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2000 }),
    secret: Type.Optional(Type.String({ minLength: 16, maxLength: 500 })),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('slack')])),
    filters: Type.Optional(
      Type.Object(
        {
          to: Type.Optional(Type.Array(ProjectStatusSchema, { maxItems: 3 })),
          tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 50 })),
          slugs: Type.Optional(Type.Array(SlugSchema, { maxItems: 1000 })),
          include_planned: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const FileSchema = Type.Object(
  {
    projects: Type.Optional(Type.Union([Type.Array(ProjectEntrySchema), Type.Null()])),
    edges: Type.Optional(Type.Union([Type.Array(EdgeEntrySchema), Type.Null()])),
    notifications: Type.Optional(Type.Union([Type.Array(NotificationEntrySchema), Type.Null()])),
  },
  { additionalProperties: false },
);

export type ProjectEntry = Static<typeof ProjectEntrySchema>;
export type EdgeEntry = Static<typeof EdgeEntrySchema>;
export type NotificationEntry = Static<typeof NotificationEntrySchema> & { name: string };
export interface ProjectsFile {
  path: string;
  projects: Array<
    Required<Pick<ProjectEntry, 'slug' | 'name' | 'hub_url' | 'mesh_namespace'>> & ProjectEntry
  >;
  edges: EdgeEntry[];
  /** Webhook notifiers, each with its name (the URL when none is given). */
  notifications: NotificationEntry[];
}

const validator = Compile(FileSchema);

function describe(doc: unknown, pointer: string): string {
  const parts = pointer.split('/').filter(Boolean);
  if (parts.length === 0) return 'top level';
  const [list, index, ...rest] = parts;
  if (index === undefined) return list ?? 'top level';
  const item = (doc as Record<string, Array<Record<string, unknown>>>)[list ?? '']?.[Number(index)];
  const label =
    list === 'projects' && typeof item?.slug === 'string'
      ? ` (slug ${item.slug})`
      : list === 'edges' && item
        ? ` (${String(item.from)} -> ${String(item.to)})`
        : list === 'notifications' && typeof item?.name === 'string'
          ? ` (name ${item.name})`
          : '';
  return `${list}[${index}]${label}${rest.length ? ` field ${rest.join('.')}` : ''}`;
}

/** Reads and validates projects.yaml; any problem is a ConfigError naming the file, the entry and the field. */
export function loadProjectsFile(path: string): ProjectsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${path}: cannot read projects file (FED_PROJECTS_FILE): ${(err as Error).message}`,
    );
  }
  return parseProjectsFile(text, path);
}

export function parseProjectsFile(text: string, path = 'projects.yaml'): ProjectsFile {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(`${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`${path}: expected a mapping with "projects:" and optionally "edges:"`);
  }
  const unstorable = findUnstorableText(doc);
  if (unstorable !== undefined) {
    throw new ConfigError(`${path}: ${unstorableTextMessage(unstorable || 'top level')}`);
  }
  if (!validator.Check(doc)) {
    const errors = validator.Errors(doc);
    // The deepest error is the most specific one ("projects[1] field hub_url …", not "projects[1]").
    const e = [...errors].sort((a, b) => b.instancePath.length - a.instancePath.length)[0];
    const where = e ? describe(doc, e.instancePath) : 'top level';
    const extra = e?.keyword === 'additionalProperties' ? ` (${JSON.stringify(e.params)})` : '';
    throw new ConfigError(`${path}: ${where}: ${e?.message ?? 'invalid'}${extra}`);
  }
  const projects = (doc.projects ?? []).map((p) => ({
    ...p,
    mesh_namespace: p.mesh_namespace ?? `hub.${p.slug}`,
    tags: p.tags ?? [],
    allow_fanout: p.allow_fanout ?? [],
  }));
  const seen = new Set<string>();
  projects.forEach((p, i) => {
    if (seen.has(p.slug))
      throw new ConfigError(`${path}: projects[${i}] (slug ${p.slug}): slug listed twice`);
    seen.add(p.slug);
  });
  const edges = doc.edges ?? [];
  edges.forEach((e, i) => {
    for (const end of ['from', 'to'] as const) {
      if (!seen.has(e[end])) {
        throw new ConfigError(
          `${path}: edges[${i}] field ${end}: project ${e[end]} is not listed under projects`,
        );
      }
    }
    if (e.from === e.to)
      throw new ConfigError(`${path}: edges[${i}]: an edge cannot go from ${e.from} to itself`);
  });
  const names = new Set<string>();
  const notifications = (doc.notifications ?? []).map((n, i) => {
    const name = n.name ?? n.url;
    if (names.has(name)) {
      throw new ConfigError(
        `${path}: notifications[${i}] field name: ${JSON.stringify(n.name ? name : '(the url)')} is listed twice; give each notifier its own name`,
      );
    }
    names.add(name);
    return { ...n, name };
  });
  return { path, projects, edges, notifications };
}
