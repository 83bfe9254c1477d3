import { describe, expect, it } from 'vitest';
import type { Project } from '../catalog/catalog-service.ts';
import { InputError } from '../errors.ts';
import {
  assertTargetSpec,
  matchesTargets,
  planTargets,
  selectTargets,
  type TargetCatalog,
} from './targets.ts';

function project(slug: string, over: Partial<Project> = {}): Project {
  const now = new Date('2025-01-01T00:00:00Z');
  return {
    id: 1,
    slug,
    name: slug,
    hubUrl: 'http://localhost',
    meshNamespace: `ns-${slug}`,
    status: 'online',
    tags: [],
    allowFanout: ['audit'],
    lastHeartbeatAt: now,
    reportedHealth: 'ok',
    version: null,
    intervalS: null,
    source: 'api',
    configured: false,
    statusChangedAt: null,
    maintenanceUntil: null,
    maintenanceReason: null,
    flapping: false,
    createdAt: now,
    updatedAt: now,
    ...over,
  };
}

const fleet = [
  project('a', { tags: ['python', 'web'] }),
  project('b', { tags: ['python'], status: 'offline' }),
  project('c', { tags: ['go'], status: 'degraded' }),
  project('d', { tags: ['web'], allowFanout: [] }),
];

const catalog: TargetCatalog = {
  async getProjects(opts) {
    return { projects: fleet.filter((p) => !opts?.tag || p.tags.includes(opts.tag)) };
  },
  async getProjectsBySlugs(slugs) {
    return fleet.filter((p) => slugs.includes(p.slug));
  },
};

const slugs = (ps: Project[]) => ps.map((p) => p.slug);

describe('targets', () => {
  it('refuses an empty spec unless all is true', () => {
    expect(() => assertTargetSpec({})).toThrow(InputError);
    expect(() => assertTargetSpec({ all: false })).toThrow(/all/);
    expect(() => assertTargetSpec({ all: true })).not.toThrow();
    expect(() => assertTargetSpec({ tags: ['x'] })).not.toThrow();
  });

  it('combines criteria with AND and tags with OR', () => {
    expect(matchesTargets(fleet[0] as Project, { tags: ['go', 'web'], status: 'online' })).toBe(true);
    expect(matchesTargets(fleet[0] as Project, { tags: ['go'] })).toBe(false);
    expect(matchesTargets(fleet[2] as Project, { status: ['online', 'degraded'] })).toBe(true);
    expect(matchesTargets(fleet[2] as Project, { slugs: ['c'], status: 'online' })).toBe(false);
  });

  it('selects by tags (any), status and slugs from the catalog', async () => {
    expect(slugs(await selectTargets(catalog, { tags: ['python', 'web'] }))).toEqual(['a', 'b', 'd']);
    expect(slugs(await selectTargets(catalog, { tags: ['python'], status: 'online' }))).toEqual(['a']);
    expect(slugs(await selectTargets(catalog, { all: true }))).toEqual(['a', 'b', 'c', 'd']);
    expect(slugs(await selectTargets(catalog, { slugs: ['c', 'a'] }))).toEqual(['a', 'c']);
  });

  it('names unknown slugs and refuses a spec matching nothing', async () => {
    await expect(selectTargets(catalog, { slugs: ['a', 'zz', 'yy'] })).rejects.toThrow(
      'unknown project slugs: zz, yy',
    );
    await expect(selectTargets(catalog, { tags: ['rust'] })).rejects.toThrow(/no project matches/);
  });

  it('plans: not allowed before offline, offline only sent with includeOffline', () => {
    const plan = (inc: boolean) =>
      Object.fromEntries(planTargets(fleet, 'audit', inc).map((t) => [t.project.slug, t.disposition]));
    expect(plan(false)).toEqual({ a: 'send', b: 'offline', c: 'send', d: 'not_allowed' });
    expect(plan(true)).toEqual({ a: 'send', b: 'send', c: 'send', d: 'not_allowed' });
    expect(planTargets(fleet, 'deploy', true).every((t) => t.disposition === 'not_allowed')).toBe(true);
  });
});
