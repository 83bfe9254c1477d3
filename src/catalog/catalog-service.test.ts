import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINES, type TestDatabase } from '../../test/helpers/postgres.ts';
import { ManualClock } from '../clock.ts';
import { type DatabaseHandle, openDatabase } from '../db/connection.ts';
import { CatalogService } from './catalog-service.ts';

const project = (slug: string, extra: Partial<{ name: string; hubUrl: string; tags: string[] }> = {}) => ({
  slug,
  name: extra.name ?? 'CommandCenter',
  hubUrl: extra.hubUrl ?? 'http://localhost:8000',
  meshNamespace: `hub.${slug}`,
  tags: extra.tags ?? ['python', 'fastapi'],
});

// The seed's five unit tests, plus tags, paging and delete, run on both engines: embedded PGlite and
// real PostgreSQL, each on a fresh database with migrations applied.
describe.each(ENGINES)('CatalogService on $name', (engine) => {
  let testDb: TestDatabase;
  let handle: DatabaseHandle;
  const clock = new ManualClock(Date.parse('2026-01-01T12:00:00Z'));
  let service: CatalogService;

  beforeAll(async () => {
    testDb = await engine.create();
    handle = await openDatabase({ databaseUrl: testDb.url, dataDir: '' });
    await handle.migrate();
    await handle.migrate(); // a second run changes nothing
    service = new CatalogService({
      db: handle.db,
      clock,
      thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
    });
  });

  afterAll(async () => {
    await handle?.close();
    await testDb?.drop();
  });

  it('register_project creates a new project, offline', async () => {
    const { project: p, created } = await service.registerProject(project('commandcenter'));
    expect(created).toBe(true);
    expect(p.id).toBeTypeOf('number');
    expect(p.slug).toBe('commandcenter');
    expect(p.status).toBe('offline');
    expect(p.tags).toEqual(['python', 'fastapi']);
    expect(p.lastHeartbeatAt).toBeNull();
  });

  it('register_project updates an existing project and keeps its id', async () => {
    const first = await service.registerProject(project('updates', { tags: ['python'] }));
    const second = await service.registerProject(
      project('updates', { name: 'CommandCenter Updated', hubUrl: 'http://localhost:8001' }),
    );
    expect(second.created).toBe(false);
    expect(second.project.id).toBe(first.project.id);
    expect(second.project.name).toBe('CommandCenter Updated');
    expect(second.project.hubUrl).toBe('http://localhost:8001');
    expect(second.project.tags).toEqual(['python', 'fastapi']);
  });

  it('a heartbeat makes the project online', async () => {
    await service.registerProject(project('beating', { tags: [] }));
    await service.updateHeartbeat('beating');
    const p = await service.getProject('beating');
    expect(p.status).toBe('online');
    expect(p.lastHeartbeatAt?.getTime()).toBe(clock.now().getTime());
  });

  it('marks a project stale (offline) once 120 s pass without a heartbeat', async () => {
    // A day later than the other tests, so that only this project's transitions are in play.
    const local = new ManualClock(clock.now().getTime() + 86_400_000);
    const svc = new CatalogService({
      db: handle.db,
      clock: local,
      thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
      // No start-up grace: the other tests' projects, silent for a day, go offline in the first sweep.
      guard: { state: () => ({ heardSince: new Date(0), holdAll: false }) },
    });
    await svc.sweepStatuses();
    await svc.registerProject(project('stale'));
    await svc.updateHeartbeat('stale'); // claims offline → online as it is written
    expect(await svc.sweepStatuses()).toEqual([]);
    expect((await svc.getProject('stale')).status).toBe('online');

    local.advance(120_000);
    // The API already says offline before any sweep has run…
    expect((await svc.getProject('stale')).status).toBe('offline');
    // …and the sweep stores the transition exactly once.
    expect(await svc.markStaleProjects()).toBe(1);
    expect(await svc.markStaleProjects()).toBe(0);
    expect((await svc.getProject('stale')).status).toBe('offline');
  });

  it('filters projects by status', async () => {
    const local = new ManualClock(clock.now());
    const svc = new CatalogService({
      db: handle.db,
      clock: local,
      thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
    });
    await svc.registerProject(project('filter-one', { tags: ['filter-test'] }));
    await svc.registerProject(project('filter-two', { tags: ['filter-test'] }));
    await svc.updateHeartbeat('filter-one');

    const online = (await svc.getProjects({ status: 'online', tag: 'filter-test' })).projects;
    expect(online.map((p) => p.slug)).toEqual(['filter-one']);
    const offline = (await svc.getProjects({ status: 'offline', tag: 'filter-test' })).projects;
    expect(offline.map((p) => p.slug)).toEqual(['filter-two']);
  });

  it('degraded when late or when the project reports it', async () => {
    const local = new ManualClock(clock.now());
    const svc = new CatalogService({
      db: handle.db,
      clock: local,
      thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
    });
    await svc.registerProject(project('late'));
    await svc.registerProject(project('sick'));
    await svc.updateHeartbeat('late');
    await svc.updateHeartbeat('sick', { health: 'degraded' });
    expect((await svc.getProject('sick')).status).toBe('degraded');
    local.advance(46_000);
    expect((await svc.getProject('late')).status).toBe('degraded');
    local.advance(45_000);
    expect((await svc.getProject('late')).status).toBe('offline');
  });

  it('scales thresholds with the interval a project announces', async () => {
    const local = new ManualClock(clock.now());
    const svc = new CatalogService({
      db: handle.db,
      clock: local,
      thresholds: { degradedAfterS: 45, offlineAfterS: 90 },
    });
    await svc.registerProject(project('slow-beat'));
    await svc.updateHeartbeat('slow-beat', { intervalS: 120 });
    local.advance(170_000); // past 1.5 × 120 s? no: 170 < 180
    expect((await svc.getProject('slow-beat')).status).toBe('online');
    local.advance(20_000); // 190 s > 180 s
    expect((await svc.getProject('slow-beat')).status).toBe('degraded');
    local.advance(200_000); // 390 s > 360 s
    expect((await svc.getProject('slow-beat')).status).toBe('offline');
  });

  it('pages through the catalog with a cursor, in slug order', async () => {
    for (const s of ['page-a', 'page-b', 'page-c', 'page-d', 'page-e']) {
      await service.registerProject(project(s, { tags: ['paging'] }));
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await service.getProjects({ tag: 'paging', limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...page.projects.map((p) => p.slug));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(['page-a', 'page-b', 'page-c', 'page-d', 'page-e']);
    expect(pages).toBe(3);
    await expect(service.getProjects({ cursor: 'not-a-cursor' })).rejects.toThrow(/cursor/);
  });

  it('deletes a project; a second delete is not found', async () => {
    await service.registerProject(project('doomed'));
    await service.deleteProject('doomed');
    expect(await service.findProject('doomed')).toBeUndefined();
    await expect(service.deleteProject('doomed')).rejects.toThrow(/not registered/);
  });

  it('marks configured projects dropped from projects.yaml as no longer configured, never deleting them', async () => {
    await service.registerProject(project('cfg-kept'), 'config');
    await service.registerProject(project('cfg-dropped'), 'config');
    await service.markUnconfigured(['cfg-kept']);
    expect((await service.getProject('cfg-kept')).configured).toBe(true);
    const dropped = await service.getProject('cfg-dropped');
    expect(dropped.configured).toBe(false);
    expect(dropped.source).toBe('config');
  });
});
