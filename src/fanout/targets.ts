import type { Project } from '../catalog/catalog-service.ts';
import { InputError } from '../errors.ts';
import type { ProjectStatus } from '../protocol/index.ts';

/** Which projects a run is for. Criteria combine with AND; `tags` matches any of the tags. */
export interface TargetSpec {
  slugs?: string[];
  tags?: string[];
  status?: ProjectStatus | ProjectStatus[];
  /** Required to target every project: an empty spec is refused so nobody fans out to all by accident. */
  all?: boolean;
}

/** What happens to one matched project. */
export type Disposition = 'send' | 'not_allowed' | 'offline';

export interface PlannedTarget {
  project: Project;
  disposition: Disposition;
}

/** The subset of the catalog that targeting reads. */
export interface TargetCatalog {
  getProjects(opts?: { tag?: string }): Promise<{ projects: Project[] }>;
  getProjectsBySlugs(slugs: string[]): Promise<Project[]>;
}

const statusList = (status: TargetSpec['status']): ProjectStatus[] | undefined =>
  status === undefined ? undefined : Array.isArray(status) ? status : [status];

/** Throws when the spec names no criterion at all and does not say `all: true`. */
export function assertTargetSpec(spec: TargetSpec): void {
  const hasCriterion =
    (spec.slugs?.length ?? 0) > 0 ||
    (spec.tags?.length ?? 0) > 0 ||
    (statusList(spec.status)?.length ?? 0) > 0;
  if (!hasCriterion && spec.all !== true) {
    throw new InputError(
      'targets names no slugs, tags or status; send {"all": true} to fan out to every project',
      { field: 'targets' },
    );
  }
}

export function matchesTargets(project: Project, spec: TargetSpec): boolean {
  if (spec.slugs?.length && !spec.slugs.includes(project.slug)) return false;
  if (spec.tags?.length && !spec.tags.some((t) => (project.tags ?? []).includes(t))) return false;
  const statuses = statusList(spec.status);
  if (statuses?.length && !statuses.includes(project.status)) return false;
  return true;
}

/** Decides per project whether the action is sent, refused by its allowlist, or skipped as offline. */
export function planTargets(projects: Project[], action: string, includeOffline: boolean): PlannedTarget[] {
  return projects.map((project) => {
    if (!(project.allowFanout ?? []).includes(action)) return { project, disposition: 'not_allowed' };
    if (project.status === 'offline' && !includeOffline) return { project, disposition: 'offline' };
    return { project, disposition: 'send' };
  });
}

/**
 * The projects a spec selects, ordered by slug. Unknown slugs are an error naming them (a typo must
 * not silently shrink an audit), and so is a spec that matches nothing.
 */
export async function selectTargets(catalog: TargetCatalog, spec: TargetSpec): Promise<Project[]> {
  assertTargetSpec(spec);
  let candidates: Project[];
  if (spec.slugs?.length) {
    const slugs = [...new Set(spec.slugs)];
    candidates = await catalog.getProjectsBySlugs(slugs);
    const known = new Set(candidates.map((p) => p.slug));
    const unknown = slugs.filter((s) => !known.has(s));
    if (unknown.length) {
      throw new InputError(`unknown project slugs: ${unknown.join(', ')}`, {
        field: 'targets.slugs',
        unknown,
      });
    }
  } else if (spec.tags?.length) {
    const bySlug = new Map<string, Project>();
    for (const tag of new Set(spec.tags)) {
      for (const p of (await catalog.getProjects({ tag })).projects) bySlug.set(p.slug, p);
    }
    candidates = [...bySlug.values()];
  } else {
    candidates = (await catalog.getProjects()).projects;
  }
  const selected = candidates
    .filter((p) => matchesTargets(p, spec))
    .sort((a, b) => a.slug.localeCompare(b.slug));
  if (selected.length === 0) {
    throw new InputError('no project matches the targets', { field: 'targets', targets: spec });
  }
  return selected;
}
