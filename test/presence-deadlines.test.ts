/**
 * The sweeper and the status reads at small scale, on real PostgreSQL: they act on deadlines (what is
 * due), never on the whole catalog, and still agree with the status rule at every instant.
 */
import { type SQL, sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CatalogService, type Transition } from '../src/catalog/catalog-service.ts';
import {
  type HeartbeatRow,
  heartbeatRowJson,
  type SerializedHeartbeat,
} from '../src/catalog/heartbeat-write.ts';
import { computeStatus, type Thresholds } from '../src/catalog/status-rule.ts';
import { ManualClock } from '../src/clock.ts';
import { type Database, type DatabaseHandle, openDatabase, query } from '../src/db/connection.ts';
import type { ProjectStatus } from '../src/protocol/index.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { waitFor } from './helpers/wait.ts';

const thresholds: Thresholds = { degradedAfterS: 45, offlineAfterS: 90 };
const dialect = new PgDialect();
const noGrace = { state: () => ({ heardSince: new Date(0), holdAll: false }) };

let database: TestDatabase;
let handle: DatabaseHandle;
let clock: ManualClock;

beforeAll(async () => {
  database = await createPostgresDatabase();
  handle = await openDatabase({ databaseUrl: database.url, dataDir: '' });
  await handle.migrate();
});
afterAll(async () => {
  await handle?.close();
  await database?.drop();
});
beforeEach(async () => {
  await query(handle.db, sql`delete from projects`);
  await query(handle.db, sql`delete from project_deadlines`);
  clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
});

const catalogFor = (c = clock) => new CatalogService({ db: handle.db, clock: c, thresholds, guard: noGrace });

function beat(slug: string, at: Date, extra: Partial<HeartbeatRow> = {}): SerializedHeartbeat {
  return [
    slug,
    heartbeatRowJson({
      slug,
      received_at: at.toISOString(),
      health: 'ok',
      version: null,
      interval_s: null,
      name: null,
      hub_url: `http://${slug}`,
      mesh_namespace: `hub.${slug}`,
      tags: null,
      ...extra,
    }),
  ];
}

/** The rule over every row, computed here the slow way: what the indexed reads must agree with. */
async function ruleByBruteForce(now: Date): Promise<Map<string, ProjectStatus>> {
  const rows = await query<{
    slug: string;
    last_heartbeat_at: Date | null;
    reported_health: string | null;
    interval_s: number | null;
  }>(handle.db, sql`select slug, last_heartbeat_at, reported_health, interval_s from projects`);
  return new Map(
    rows.map((r) => [
      r.slug,
      computeStatus(
        {
          lastHeartbeatAt: r.last_heartbeat_at && new Date(r.last_heartbeat_at),
          reportedHealth: r.reported_health,
          intervalS: r.interval_s,
        },
        now,
        thresholds,
      ),
    ]),
  );
}

const path = (ts: Transition[]) => ts.map((t) => `${t.slug}:${t.from}>${t.to}`).sort();

/**
 * A project that beat once at t0 and went degraded (swept by a replica running since t0), then held
 * at 91 s by a replica started at 80 s, whose start-up grace (until 170 s) covers its offline flip.
 */
async function heldByAStartingReplica(slug: string) {
  const t0 = clock.now();
  const long = catalogFor();
  await long.writeHeartbeats([beat(slug, t0)], true);
  clock.set(t0.getTime() + 50_000);
  expect(path(await long.sweepStatuses())).toEqual([`${slug}:online>degraded`]);
  clock.set(t0.getTime() + 80_000);
  const started = new CatalogService({
    db: handle.db,
    clock,
    thresholds,
    guard: { state: () => ({ heardSince: new Date(t0.getTime() + 80_000), holdAll: false }) },
  });
  clock.set(t0.getTime() + 91_000);
  expect(path(await started.sweepStatuses())).toEqual([]);
  return { t0, long, started };
}

describe('deadlines', () => {
  it('flips each project at its own thresholds, with mixed interval_s', async () => {
    const catalog = catalogFor();
    const t0 = clock.now();
    await catalog.writeHeartbeats(
      [
        beat('fast', t0, { interval_s: 10 }), // 15 s and 30 s
        beat('default', t0), // 45 s and 90 s
        beat('slow', t0, { interval_s: 60 }), // 90 s and 180 s
        beat('sick', t0, { health: 'degraded', interval_s: 10 }), // degraded now, offline at 30 s
      ],
      true,
    );
    const at = async (s: number) => {
      clock.set(t0.getTime() + s * 1000);
      return path(await catalog.sweepStatuses());
    };
    expect(await at(15)).toEqual([]); // at the threshold, not past it
    expect(await at(15.001)).toEqual(['fast:online>degraded']);
    expect(await at(30.001)).toEqual(['fast:degraded>offline', 'sick:degraded>offline']);
    expect(await at(45.5)).toEqual(['default:online>degraded']);
    expect(await at(90.5)).toEqual(['default:degraded>offline', 'slow:online>degraded']);
    expect(await at(179)).toEqual([]);
    expect(await at(181)).toEqual(['slow:degraded>offline']);
    // Nothing is queued any more: every project is offline with no deadline.
    const due = await query<{ n: number }>(handle.db, sql`select count(*)::int as n from project_deadlines`);
    expect(due[0]?.n).toBe(0);
    expect(await at(10_000)).toEqual([]);
  });

  it('agrees with the rule between sweeps: pages, status pages and counts', async () => {
    const catalog = catalogFor();
    const t0 = clock.now();
    const rows: SerializedHeartbeat[] = [];
    for (let i = 0; i < 300; i++) {
      const at = new Date(t0.getTime() + (i % 100) * 1000);
      rows.push(beat(`mix-${String(i).padStart(3, '0')}`, at, i % 7 === 0 ? { health: 'degraded' } : {}));
    }
    await catalog.writeHeartbeats(rows, true);
    await catalog.registerProject({
      slug: 'never',
      name: 'never',
      hubUrl: 'http://never',
      meshNamespace: 'hub.never',
    });
    for (const s of [100, 140, 150, 180, 200, 260]) {
      clock.set(t0.getTime() + s * 1000);
      // Sweep only every other instant: the reads in between must apply the rule to what is due.
      if (s % 20 === 0) await catalog.sweepStatuses();
      const expected = await ruleByBruteForce(clock.now());
      const listed = (await catalog.getProjects()).projects;
      expect(new Map(listed.map((p) => [p.slug, p.status]))).toEqual(expected);
      for (const status of ['online', 'degraded', 'offline'] as const) {
        const want = [...expected].filter(([, v]) => v === status).map(([k]) => k);
        const paged: string[] = [];
        let cursor: string | undefined;
        do {
          const page = await catalog.getProjects({ status, limit: 37, ...(cursor ? { cursor } : {}) });
          paged.push(...page.projects.map((p) => p.slug));
          expect(page.projects.every((p) => p.status === status)).toBe(true);
          cursor = page.nextCursor;
        } while (cursor);
        expect(paged).toEqual(want.sort());
      }
      const counts = await catalog.countByStatus();
      const want = { online: 0, degraded: 0, offline: 0 };
      for (const v of expected.values()) want[v] += 1;
      expect(counts).toEqual(want);
    }
  });

  it('a heartbeat written at the moment of a sweep wins: never offline after it, each change once', async () => {
    const catalog = catalogFor();
    const other = catalogFor();
    const slugs = Array.from({ length: 200 }, (_, i) => `race-${i}`);
    const claimed: Transition[] = [];
    other.onHeartbeatTransitions((t) => void claimed.push(...t));
    catalog.onHeartbeatTransitions((t) => void claimed.push(...t));
    await catalog.writeHeartbeats(
      slugs.map((s) => beat(s, clock.now())),
      true,
    );
    clock.advance(90_001); // every project is past its offline deadline
    const [swept] = await Promise.all([
      catalog.sweepStatuses(),
      other.writeHeartbeats(
        slugs.map((s) => beat(s, clock.now())),
        true,
      ),
    ]);
    claimed.push(...swept);
    const final = await catalog.getProjects();
    expect(final.projects.every((p) => p.status === 'online')).toBe(true);
    // Whatever interleaving happened, the stored events are exactly the changes, in order, once each.
    const events = await query<{ slug: string; from_status: string; to_status: string }>(
      handle.db,
      sql`select p.slug, e.from_status, e.to_status from project_status_events e join projects p on p.id = e.project_id
          order by e.id`,
    );
    const bySlug = new Map<string, string[]>();
    for (const e of events)
      bySlug.set(e.slug, [...(bySlug.get(e.slug) ?? []), `${e.from_status}>${e.to_status}`]);
    for (const s of slugs) {
      const seq = bySlug.get(s) ?? [];
      expect(seq[0]).toBe('offline>online');
      for (let i = 1; i < seq.length; i++) expect(seq[i]?.split('>')[0]).toBe(seq[i - 1]?.split('>')[1]);
      expect(seq.at(-1)?.endsWith('>online')).toBe(true);
    }
    expect(claimed.length).toBe(events.length);
    expect(await catalog.countByStatus()).toEqual({ online: 200, degraded: 0, offline: 0 });
  });

  it('leaves a project whose heartbeat is still in the local buffer to its write, and claims the rest on time', async () => {
    const t0 = clock.now();
    const catalog = catalogFor();
    await catalog.writeHeartbeats([beat('buffered', t0), beat('silent', t0)], true);
    // Both are past their degraded deadline (45 s). 'buffered' has a heartbeat this replica received
    // but has not written yet (waiting behind a long write): judging it silent would store a false
    // online > degraded > online. 'silent' is claimed now, whatever the writer holds.
    clock.set(t0.getTime() + 46_000);
    const unwritten = (slug: string) => slug === 'buffered';
    expect(path(await catalog.sweepStatuses({ unwritten }))).toEqual(['silent:online>degraded']);
    // Not claimed yet, but the rule says degraded: status pages and counts say so until it is written.
    expect((await catalog.getProjects({ status: 'degraded' })).projects.map((p) => p.slug)).toEqual([
      'buffered',
      'silent',
    ]);
    expect((await catalog.countByStatus()).degraded).toBe(2);
    // Taken again once the writer has had time to write it (5 s), not at every sweep before.
    expect(await catalog.nextDueAt()).toEqual(new Date(t0.getTime() + 51_000));
    clock.set(t0.getTime() + 47_000);
    expect(await catalog.sweepStatuses({ unwritten })).toEqual([]);
    // The heartbeat is written: the retry finds the project online and drops it, no transition.
    await catalog.writeHeartbeats([beat('buffered', new Date(t0.getTime() + 44_000))], true);
    clock.set(t0.getTime() + 51_000);
    expect(await catalog.sweepStatuses({ unwritten: () => false })).toEqual([]);
    expect((await catalog.getProject('buffered'))?.status).toBe('online');
    // A project still held when it is retaken, but no longer in the buffer, is claimed then.
    await catalog.writeHeartbeats([beat('stuck', clock.now())], true);
    clock.advance(46_000);
    expect(path(await catalog.sweepStatuses({ unwritten: (slug) => slug === 'stuck' }))).toEqual([
      'buffered:online>degraded',
      'silent:degraded>offline',
    ]);
    clock.advance(5_000);
    expect(path(await catalog.sweepStatuses({ unwritten: () => false }))).toEqual(['stuck:online>degraded']);
  });

  it('looks again at a project left to its buffered heartbeat no sooner than the writer needs, within 30 s', async () => {
    const t0 = clock.now();
    const catalog = catalogFor();
    await catalog.writeHeartbeats([beat('behind', t0)], true);
    clock.set(t0.getTime() + 46_000);
    const unwritten = () => true;
    expect(await catalog.sweepStatuses({ unwritten, unwrittenRetryMs: 12_000 })).toEqual([]);
    expect(await catalog.nextDueAt()).toEqual(new Date(t0.getTime() + 58_000));
    clock.set(t0.getTime() + 58_000);
    // A writer minutes behind: 30 s at most.
    expect(await catalog.sweepStatuses({ unwritten, unwrittenRetryMs: 600_000 })).toEqual([]);
    expect(await catalog.nextDueAt()).toEqual(new Date(t0.getTime() + 88_000));
    clock.set(t0.getTime() + 88_000);
    expect(path(await catalog.sweepStatuses({ unwritten: () => false }))).toEqual(['behind:online>degraded']);
  });

  it('reports its lag from when a deadline could first be taken, not from its due time', async () => {
    const t0 = clock.now();
    const grace = 1_000;
    const catalog = new CatalogService({
      db: handle.db,
      clock,
      thresholds,
      guard: noGrace,
      claimGraceMs: grace,
    });
    await catalog.writeHeartbeats([beat('lagging', t0), beat('waiting', t0)], true);
    // Degraded after 45 s; takeable once the grace has passed too; swept 2 s after that. Deadlines
    // fall in 100 ms buckets, so up to one bucket less.
    clock.set(t0.getTime() + 45_000 + grace + 2_000);
    const unwritten = (slug: string) => slug === 'waiting';
    expect(path(await catalog.sweepStatuses({ unwritten }))).toEqual(['lagging:online>degraded']);
    expect(catalog.sweepLagMs).toBeGreaterThanOrEqual(1_900);
    expect(catalog.sweepLagMs).toBeLessThanOrEqual(2_000);
    // 'waiting' is held for its buffered heartbeat's write (not_before): taken 300 ms after that,
    // its lag is those 300 ms, not the seconds since its due time.
    const notBefore = await catalog.nextDueAt();
    expect(notBefore).toBeDefined();
    clock.set((notBefore as Date).getTime() + 300);
    expect(path(await catalog.sweepStatuses({ unwritten: () => false }))).toEqual([
      'waiting:online>degraded',
    ]);
    expect(catalog.sweepLagMs).toBe(300);
    // Nothing due: no lag.
    expect(await catalog.sweepStatuses()).toEqual([]);
    expect(catalog.sweepLagMs).toBe(0);
  });

  it('drops superseded deadlines from the queue before they fall due, and only its own', async () => {
    const t0 = clock.now();
    const catalog = catalogFor();
    const other = catalogFor();
    // Registered first: the rows a registration queues belong to no replica.
    await catalog.writeHeartbeats([beat('kept', t0), beat('beaten', t0), beat('theirs', t0)], true);
    await query(handle.db, sql`delete from project_deadlines`);
    clock.set(t0.getTime() + 1_000);
    await catalog.writeHeartbeats([beat('kept', clock.now()), beat('beaten', clock.now())], true);
    await other.writeHeartbeats([beat('theirs', clock.now())], true);
    clock.set(t0.getTime() + 10_000);
    await catalog.writeHeartbeats([beat('beaten', clock.now())], true);
    await other.writeHeartbeats([beat('theirs', clock.now())], true);
    const dueBy = async (ms: number) =>
      (
        await query<{ slug: string }>(
          handle.db,
          sql`select p.slug from project_deadlines d cross join unnest(d.project_ids) u(id)
              join projects p on p.id = u.id
              where d.due_at <= ${new Date(t0.getTime() + ms).toISOString()}::timestamptz order by 1`,
        )
      ).map((r) => r.slug);
    expect(await dueBy(46_100)).toEqual(['beaten', 'kept', 'theirs']);
    // 1.5 s before the first deadlines (46 s): within the horizon. 'beaten' has a later deadline this
    // replica queued; 'theirs' was queued by the other replica, whose prune drops it.
    clock.set(t0.getTime() + 44_500);
    expect(await catalog.pruneSupersededDeadlines()).toBe(1);
    expect(await dueBy(46_100)).toEqual(['kept', 'theirs']);
    expect(await catalog.pruneSupersededDeadlines()).toBe(0);
    expect(await other.pruneSupersededDeadlines()).toBe(1);
    expect(await dueBy(46_100)).toEqual(['kept']);
    // Their later deadlines are still queued, and the sweep and the reads see the same as before.
    expect(await dueBy(55_100)).toEqual(['beaten', 'kept', 'theirs']);
    clock.set(t0.getTime() + 47_000);
    expect((await catalog.getProjects({ status: 'degraded' })).projects.map((p) => p.slug)).toEqual(['kept']);
    expect(path(await catalog.sweepStatuses())).toEqual(['kept:online>degraded']);
    clock.set(t0.getTime() + 56_000);
    expect(path(await catalog.sweepStatuses())).toEqual(['beaten:online>degraded', 'theirs:online>degraded']);
    expect(await ruleByBruteForce(clock.now())).toEqual(
      new Map([
        ['kept', 'degraded'],
        ['beaten', 'degraded'],
        ['theirs', 'degraded'],
      ]),
    );
  });

  it('looks up, ahead of their due time, the ids of rows no live replica prunes, and drops only the superseded', async () => {
    const t0 = clock.now();
    const catalog = catalogFor();
    const live = catalogFor();
    await catalog.writeHeartbeats(
      ['silent', 'beating', 'worse', 'theirs-silent', 'theirs-beating'].map((slug) => beat(slug, t0)),
      true,
    );
    const at46 = sql`${new Date(t0.getTime() + 46_000).toISOString()}::timestamptz`;
    // As a bulk load or an older version leaves them: deadlines queued by nobody, at 46 s.
    await query(handle.db, sql`delete from project_deadlines`);
    await query(
      handle.db,
      sql`insert into project_deadlines (due_at, project_ids)
          select ${at46}, array_agg(id) from projects where slug in ('silent', 'beating', 'worse')`,
    );
    // And a row of another replica (7, not this one), at the same time.
    await query(
      handle.db,
      sql`insert into project_deadlines (due_at, project_ids, queued_by)
          select ${at46}, array_agg(id), 7 from projects where slug like 'theirs-%'`,
    );
    // Two of them beat again (their later deadlines are queued); 'worse' is stored offline while the
    // rule says online (thresholds raised since): the sweep must still see it.
    clock.set(t0.getTime() + 10_000);
    await live.writeHeartbeats([beat('beating', clock.now()), beat('theirs-beating', clock.now())], true);
    await query(handle.db, sql`update projects set status = 'offline' where slug = 'worse'`);
    const rowsAt46 = async () =>
      (
        await query<{ queued_by: string | null; slugs: string[] }>(
          handle.db,
          sql`select d.queued_by::text, array_agg(p.slug order by p.slug) as slugs
              from project_deadlines d cross join unnest(d.project_ids) u(id) join projects p on p.id = u.id
              where d.due_at = ${at46} group by d.id, d.queued_by order by 1`,
        )
      ).map((r) => `${r.queued_by ?? 'nobody'}:${r.slugs.join(',')}`);
    // 1.5 s before: the rows of nobody are looked up, once; another replica's are left to it for now
    // (a live replica prunes its own for free first).
    clock.set(t0.getTime() + 44_500);
    expect(await catalog.pruneSupersededDeadlines()).toBe(1);
    expect(await rowsAt46()).toEqual(['7:theirs-beating,theirs-silent', 'nobody:silent,worse']);
    expect(await catalog.pruneSupersededDeadlines()).toBe(0);
    // 0.8 s before: the other replica's row too. Each keeps its tag.
    clock.set(t0.getTime() + 45_200);
    expect(await catalog.pruneSupersededDeadlines()).toBe(1);
    expect(await rowsAt46()).toEqual(['7:theirs-silent', 'nobody:silent,worse']);
    // A row about to fall due is never taken: a sweep might want it while the prune holds it.
    await query(
      handle.db,
      sql`insert into project_deadlines (due_at, project_ids)
          select ${new Date(t0.getTime() + 45_400).toISOString()}::timestamptz, array_agg(id) from projects where slug = 'beating'`,
    );
    clock.set(t0.getTime() + 45_300);
    // (A replica that has pruned nothing yet, so that only the lead keeps it from the row.)
    expect(await catalogFor().pruneSupersededDeadlines()).toBe(0);
    const soon = await query<{ n: number }>(
      handle.db,
      sql`select cardinality(project_ids) as n from project_deadlines where due_at < ${at46}`,
    );
    expect(soon).toEqual([{ n: 1 }]);
    await query(handle.db, sql`delete from project_deadlines where due_at < ${at46}`);
    // The sweep and the reads see what they saw before: a status page and the counts, between the
    // due time and the sweep, then the sweep.
    clock.set(t0.getTime() + 46_200);
    // ('worse' stays offline for readers until the sweep puts it right: reads move a stored status
    // only towards degraded and offline.)
    expect((await catalog.getProjects({ status: 'degraded' })).projects.map((p) => p.slug)).toEqual([
      'silent',
      'theirs-silent',
    ]);
    // (Its offline was written by hand, past the counts: only the degraded count is checked.)
    expect((await catalog.countByStatus()).degraded).toBe(2);
    expect(path(await catalog.sweepStatuses())).toEqual([
      'silent:online>degraded',
      'theirs-silent:online>degraded',
      'worse:offline>degraded',
    ]);
    expect((await ruleByBruteForce(clock.now())).get('beating')).toBe('online');
    clock.set(t0.getTime() + 56_000);
    expect(path(await catalog.sweepStatuses())).toEqual([
      'beating:online>degraded',
      'theirs-beating:online>degraded',
    ]);
  });

  it("queues a restart's deadlines as its own: the heartbeats it writes next supersede them unread", async () => {
    const t0 = clock.now();
    const before = catalogFor();
    await before.writeHeartbeats([beat('restart-a', t0), beat('restart-b', t0)], true);
    await query(handle.db, sql`delete from project_deadlines`);
    // A new process: its reconcile queues every live project's deadline (45 s), tagged as its own.
    const { db, statements } = recording(handle.db);
    const after = new CatalogService({ db, clock, thresholds, guard: noGrace });
    expect(await after.reconcile()).toBe(2);
    clock.set(t0.getTime() + 5_000);
    await after.writeHeartbeats([beat('restart-a', clock.now())], true);
    clock.set(t0.getTime() + 43_500);
    statements.length = 0;
    expect(await after.pruneSupersededDeadlines()).toBe(1);
    // Dropped without looking anything up in projects.
    expect(statements.filter((q) => /join projects/.test(q.sql))).toEqual([]);
    clock.set(t0.getTime() + 45_200);
    expect(path(await after.sweepStatuses())).toEqual(['restart-b:online>degraded']);
    clock.set(t0.getTime() + 50_200);
    expect(path(await after.sweepStatuses())).toEqual(['restart-a:online>degraded']);
  });

  it('bounds what a read evaluates of the due queue, and never shows online past a threshold', async () => {
    const t0 = clock.now();
    const catalog = new CatalogService({
      db: handle.db,
      clock,
      thresholds,
      guard: noGrace,
      readDueMaxRows: 1,
    });
    for (const [i, slug] of ['first', 'second', 'third'].entries()) {
      clock.set(t0.getTime() + i * 1_000);
      await catalog.writeHeartbeats([beat(slug, clock.now())], true);
    }
    // All three past their degraded deadline, no sweep yet: only the first queue row due is read.
    clock.set(t0.getTime() + 48_000);
    const slugs = async (status?: ProjectStatus) =>
      (await catalog.getProjects(status ? { status } : {})).projects.map((p) => `${p.slug}:${p.status}`);
    expect(await slugs('degraded')).toEqual(['first:degraded']);
    expect(await catalog.countByStatus()).toEqual({ online: 2, degraded: 1, offline: 0 });
    expect(await slugs('online')).toEqual([]);
    expect(await slugs()).toEqual(['first:degraded', 'second:degraded', 'third:degraded']);
    // Once swept, every status page and count agrees with the rule again.
    expect(path(await catalog.sweepStatuses())).toHaveLength(3);
    expect(await slugs('degraded')).toEqual(['first:degraded', 'second:degraded', 'third:degraded']);
    expect(await catalog.countByStatus()).toEqual({ online: 0, degraded: 3, offline: 0 });
  });

  it('two replicas sweeping together claim each transition exactly once', async () => {
    const a = catalogFor();
    const b = catalogFor();
    const slugs = Array.from({ length: 3000 }, (_, i) => `pair-${i}`);
    await a.writeHeartbeats(
      slugs.map((s) => beat(s, clock.now())),
      true,
    );
    clock.advance(46_000);
    const [ta, tb] = await Promise.all([a.sweepStatuses(), b.sweepStatuses()]);
    const all = [...ta, ...tb];
    expect(all).toHaveLength(3000);
    expect(new Set(all.map((t) => t.slug)).size).toBe(3000);
    const [events] = await query<{ n: number }>(
      handle.db,
      sql`select count(*)::int as n from project_status_events where to_status = 'degraded'`,
    );
    expect(events?.n).toBe(3000);
    expect(await a.countByStatus()).toEqual({ online: 0, degraded: 3000, offline: 0 });
  });

  it('a project deleted while due is simply gone: no transition, counts stay right', async () => {
    const catalog = catalogFor();
    await catalog.writeHeartbeats([beat('doomed', clock.now()), beat('kept', clock.now())], true);
    clock.advance(46_000);
    await catalog.deleteProject('doomed');
    expect(path(await catalog.sweepStatuses())).toEqual(['kept:online>degraded']);
    expect(await catalog.countByStatus()).toEqual({ online: 0, degraded: 1, offline: 0 });
  });

  it('a heartbeat that finds a deadline passed but not yet claimed stores that transition first', async () => {
    const catalog = catalogFor();
    const t0 = clock.now();
    const heard: Transition[] = [];
    catalog.onHeartbeatTransitions((t) => void heard.push(...t));
    await catalog.writeHeartbeats([beat('late', t0), beat('gone', t0)], true);
    // No sweep ran: 'late' is 1 s past its degraded deadline, 'gone' 10 s past its offline one.
    clock.set(t0.getTime() + 46_000);
    await catalog.writeHeartbeats([beat('late', clock.now())], true);
    clock.set(t0.getTime() + 100_000);
    await catalog.writeHeartbeats([beat('gone', clock.now())], true);
    const seen = heard.map((t) => `${t.slug}:${t.from}>${t.to}@${t.at.getTime() - t0.getTime()}`);
    expect(seen).toEqual([
      'late:offline>online@0',
      'gone:offline>online@0',
      'late:online>degraded@45000',
      'late:degraded>online@46000',
      'gone:online>offline@90000',
      'gone:offline>online@100000',
    ]);
    // Stored once each, and nothing left for a sweep to claim twice.
    const events = await query<{ n: number }>(
      handle.db,
      sql`select count(*)::int as n from project_status_events e join projects p on p.id = e.project_id
          where p.slug in ('late', 'gone')`,
    );
    expect(events[0]?.n).toBe(6);
    // What is left for a sweep is only the deadline of 'late''s new heartbeat (46 s + 45 s).
    expect(await catalog.countByStatus()).toEqual({ online: 1, degraded: 1, offline: 0 });
    expect(path(await catalog.sweepStatuses())).toEqual(['late:online>degraded']);
    expect(await catalog.countByStatus()).toEqual({ online: 1, degraded: 1, offline: 0 });
  });

  it('thresholds raised between runs: a status stored worse than the rule is put right by the first sweep', async () => {
    const before = catalogFor();
    await before.writeHeartbeats([beat('raised', clock.now())], true);
    clock.advance(50_000);
    expect(path(await before.sweepStatuses())).toEqual(['raised:online>degraded']);
    // The next run degrades only after 60 s: 50 s of silence is online again.
    const after = new CatalogService({
      db: handle.db,
      clock,
      thresholds: { degradedAfterS: 60, offlineAfterS: 120 },
      guard: noGrace,
    });
    await after.reconcile();
    expect(path(await after.sweepStatuses())).toEqual(['raised:degraded>online']);
    expect((await after.getProject('raised')).status).toBe('online');
    expect((await after.getProjects({ status: 'online' })).projects.map((p) => p.slug)).toEqual(['raised']);
    clock.advance(10_001);
    expect(path(await after.sweepStatuses())).toEqual(['raised:online>degraded']);
  });

  it('a row one replica holds (its start-up grace) shows its stored status on every replica, in every answer', async () => {
    const { t0, long, started } = await heldByAStartingReplica('held');
    for (const replica of [long, started]) {
      expect((await replica.getProject('held')).status).toBe('degraded');
      expect((await replica.getProjects({ status: 'degraded' })).projects.map((p) => p.slug)).toEqual([
        'held',
      ]);
      expect((await replica.getProjects({ status: 'offline' })).projects).toEqual([]);
      expect(await replica.countByStatus()).toEqual({ online: 0, degraded: 1, offline: 0 });
    }
    // The hold ends at the grace's end (80 s + 90 s): from then on every replica shows the rule, before
    // any sweep, and the next sweep flips it, once.
    clock.set(t0.getTime() + 170_200);
    for (const replica of [long, started]) expect((await replica.getProject('held')).status).toBe('offline');
    clock.set(t0.getTime() + 170_500);
    expect(path([...(await long.sweepStatuses()), ...(await started.sweepStatuses())])).toEqual([
      'held:degraded>offline',
    ]);
  });

  it('a heartbeat that finds a row another replica holds stores no offline flip, only its own change', async () => {
    const { t0, long } = await heldByAStartingReplica('held-beat');
    const [held] = await query<{ held_until: Date | null }>(
      handle.db,
      sql`select held_until from projects where slug = 'held-beat'`,
    );
    expect(held?.held_until && new Date(held.held_until).getTime()).toBe(t0.getTime() + 170_000);
    // The replica that has heard everything since t0 would call it offline; the hold says degraded.
    clock.set(t0.getTime() + 100_000);
    const written = await long.writeHeartbeats([beat('held-beat', new Date(t0.getTime() + 100_000))], true);
    expect(path(written.transitions)).toEqual(['held-beat:degraded>online']);
    const [after] = await query<{ held_until: Date | null }>(
      handle.db,
      sql`select held_until from projects where slug = 'held-beat'`,
    );
    expect(after?.held_until).toBeNull();
  });

  it('heartbeats write no indexed column of projects, so PostgreSQL keeps their updates HOT', async () => {
    const indexed = await query<{ column: string }>(
      handle.db,
      sql`select distinct a.attname as column from pg_index i
          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
          where i.indrelid = 'projects'::regclass order by 1`,
    );
    // Everything a heartbeat writes (see heartbeat-write.ts `assignments`) is outside these. The notifier's
    // partial indexes (flapping projects by status_changed_at, windows by maintenance_until) cover
    // columns only a status change or an operator writes.
    expect(indexed.map((r) => r.column)).toEqual([
      'id',
      'maintenance_until',
      'slug',
      'status',
      'status_changed_at',
    ]);
    const catalog = catalogFor();
    const slugs = Array.from({ length: 50 }, (_, i) => `hot-${i}`);
    await catalog.writeHeartbeats(
      slugs.map((s) => beat(s, clock.now())),
      true,
    );
    const counters = async () =>
      (
        await query<{ upd: number; hot: number }>(
          handle.db,
          sql`select n_tup_upd::int as upd, n_tup_hot_upd::int as hot from pg_stat_user_tables where relid = 'projects'::regclass`,
        )
      )[0] ?? { upd: 0, hot: 0 };
    const before = await counters();
    clock.advance(10_000);
    await catalog.writeHeartbeats(
      slugs.map((s) => beat(s, clock.now())),
      true,
    );
    // The statistics reach pg_stat_user_tables within about a second of the writing transaction.
    let after = before;
    await waitFor(
      async () => {
        after = await counters();
        return after.upd >= before.upd + slugs.length;
      },
      { what: 'update counters' },
    );
    // (Statistics of earlier tests' statements may arrive in the same window: count only ours.)
    await waitFor(
      async () => {
        after = await counters();
        return after.hot >= before.hot + slugs.length;
      },
      { what: `${slugs.length} HOT updates (counters: ${JSON.stringify({ before, after })})` },
    );
    expect(after.hot - before.hot).toBeGreaterThanOrEqual(slugs.length);
  });

  it('a sweep drops the deadlines its own replica has since superseded without looking them up', async () => {
    const { db, statements } = recording(handle.db);
    const writer = new CatalogService({ db, clock, thresholds, guard: noGrace });
    const other = new CatalogService({ db, clock, thresholds, guard: noGrace });
    const t0 = clock.now();
    // Registered (a registration's deadlines are not tagged as the replica's own), then beating on
    // the common path, whose deadlines are.
    await writer.writeHeartbeats([beat('known-a', t0), beat('known-b', t0)], true);
    clock.set(t0.getTime() + 10_000);
    await writer.writeHeartbeats([beat('known-a', clock.now()), beat('known-b', clock.now())], true);
    clock.set(t0.getTime() + 20_000);
    await writer.writeHeartbeats([beat('known-a', clock.now())], true);
    const rows = await query<{ slug: string; id: number }>(
      handle.db,
      sql`select slug, id from projects where slug like 'known-%'`,
    );
    const idOf = (slug: string) => rows.find((r) => r.slug === slug)?.id as number;
    /** The ids each sweep statement looked up in `projects`. */
    const lookedUp = () =>
      statements
        .filter((q) => q.sql.includes('checked as'))
        .map((q) => (q.params.find((p) => Array.isArray(p)) as number[]).slice().sort((x, y) => x - y));
    const sweep = async (who: CatalogService, at: number) => {
      clock.set(t0.getTime() + at);
      statements.length = 0;
      return path(await who.sweepStatuses());
    };

    // 46 s: the registration's deadlines, looked up and found superseded.
    expect(await sweep(writer, 46_000)).toEqual([]);
    expect(lookedUp()).toEqual([[idOf('known-a'), idOf('known-b')].sort((x, y) => x - y)]);
    // 56 s: the writer's own deadlines of the beats at 10 s; known-a's is superseded by the beat at
    // 20 s, which this replica wrote: dropped unread. known-b's is looked up and claimed.
    expect(await sweep(writer, 56_000)).toEqual(['known-b:online>degraded']);
    expect(lookedUp()).toEqual([[idOf('known-b')]]);
    // 66 s: known-a's deadline, taken by a replica that did not write it: looked up, and claimed.
    expect(await sweep(other, 66_000)).toEqual(['known-a:online>degraded']);
    expect(lookedUp()).toEqual([[idOf('known-a')]]);
  });

  it('drops a deadline a later heartbeat superseded, even inside the claim grace, instead of queuing it again', async () => {
    const t0 = clock.now();
    // Written by another replica, so this one looks the ids up instead of dropping them unread.
    const other = catalogFor();
    const sweeper = new CatalogService({
      db: handle.db,
      clock,
      thresholds,
      guard: noGrace,
      claimGraceMs: 1000,
    });
    await other.writeHeartbeats([beat('superseded', t0)], true);
    clock.set(t0.getTime() + 10_000);
    await other.writeHeartbeats([beat('superseded', clock.now())], true);
    const queued = async () => {
      const [row] = await query<{ n: number }>(
        handle.db,
        sql`select count(*)::int as n from project_deadlines d join projects p on p.id = any(d.project_ids)
            where p.slug = 'superseded'`,
      );
      return row?.n;
    };
    // 55.5 s: the deadline of 45 s is taken; the project's deadline is now 55 s, within the grace
    // (1 s) of now. It was superseded by the beat at 10 s, which queued its own: dropped.
    expect(await queued()).toBe(2);
    clock.set(t0.getTime() + 55_500);
    expect(await sweeper.sweepStatuses()).toEqual([]);
    expect(await queued()).toBe(1);
    // 56.1 s: that one is past the grace, and claimed once.
    clock.set(t0.getTime() + 56_100);
    expect(path(await sweeper.sweepStatuses())).toEqual(['superseded:online>degraded']);
  });

  it('a coalesced heartbeat after another replica claimed keeps history in time order', async () => {
    const t0 = clock.now();
    const a = catalogFor();
    const b = catalogFor();
    await a.writeHeartbeats([beat('ordered', t0)], true);
    // 46 s: replica B claims online > degraded (the degraded threshold is 45 s).
    clock.set(t0.getTime() + 46_000);
    expect(path(await b.sweepStatuses())).toEqual(['ordered:online>degraded']);
    // 47 s: replica A writes a heartbeat it had kept while behind, first heard at 30 s. Judged at
    // 30 s, the project was online, which would store degraded > online before B's claim at 46 s.
    // It is judged at B's change instead: only degraded > online, at 47 s.
    clock.set(t0.getTime() + 47_000);
    await a.writeHeartbeats(
      [beat('ordered', clock.now(), { heard_at: new Date(t0.getTime() + 30_000).toISOString() })],
      true,
    );
    const events = await query<{ change: string; at: Date }>(
      handle.db,
      sql`select e.from_status || '>' || e.to_status as change, e.at from project_status_events e
          join projects p on p.id = e.project_id where p.slug = 'ordered' order by e.id`,
    );
    expect(events.map((e) => e.change)).toEqual(['offline>online', 'online>degraded', 'degraded>online']);
    const times = events.map((e) => new Date(e.at).getTime());
    expect(times).toEqual([...times].sort((x, y) => x - y));
    expect(times.at(-1)).toBe(t0.getTime() + 47_000);
    expect((await a.getProject('ordered')).status).toBe('online');
  });

  it('the mass-offline guard looks due ids up only when they could trigger it', async () => {
    const slugs = Array.from({ length: 30 }, (_, i) => `guard-bound-${i}`);
    await catalogFor().writeHeartbeats(
      slugs.map((s) => beat(s, clock.now())),
      true,
    );
    clock.advance(100_000);
    const { db, statements } = recording(handle.db);
    const catalog = new CatalogService({ db, clock, thresholds, guard: noGrace });
    const exact = await catalog.countPendingOffline();
    expect(exact.exact).toBe(true);
    expect(exact.pending).toBeGreaterThanOrEqual(30);

    // Told an upper bound that cannot trigger it, the guard needs no more: one statement, no lookups.
    statements.length = 0;
    let told: { pending: number; live: number } | undefined;
    const bounded = await catalog.countPendingOffline({
      needed: (atMost) => {
        told = atMost;
        return false;
      },
    });
    expect(statements).toHaveLength(1);
    expect(bounded.exact).toBe(false);
    expect(bounded.pending).toBeGreaterThanOrEqual(exact.pending);
    expect(told).toEqual({ pending: bounded.pending, live: exact.live });

    statements.length = 0;
    expect(await catalog.countPendingOffline({ needed: () => true })).toEqual(exact);
    expect(statements).toHaveLength(2);
  });

  it('reads only what is due: every statement of a sweep, a status page and the counts uses an index', async () => {
    await query(
      handle.db,
      sql`insert into projects (slug, name, hub_url, mesh_namespace, status, last_heartbeat_at)
          select 'bulk-' || i, 'bulk', 'http://bulk', 'hub.bulk', 'online', ${clock.now().toISOString()}::timestamptz
          from generate_series(1, 20000) i`,
    );
    await query(
      handle.db,
      sql`insert into project_deadlines (due_at, project_ids)
          select ${clock.now().toISOString()}::timestamptz + interval '45 s', array_agg(id) from projects where slug like 'bulk-%'`,
    );
    await query(handle.db, sql`analyze projects`);
    const { db, statements } = recording(handle.db);
    const catalog = new CatalogService({ db, clock, thresholds, guard: noGrace });
    await catalog.writeHeartbeats([beat('due-soon', new Date(clock.now().getTime() - 50_000))], true);
    statements.length = 0;
    expect(path(await catalog.sweepStatuses())).toEqual(['due-soon:online>degraded']);
    await catalog.getProjects({ status: 'offline', limit: 100 });
    await catalog.getProjects({ status: 'online', limit: 100 });
    expect(await catalog.countByStatus()).toEqual({ online: 20000, degraded: 1, offline: 0 });
    await catalog.countPendingOffline();
    expect(statements.length).toBeGreaterThanOrEqual(6);
    const client = (
      handle.db as unknown as {
        $client: { query(text: string, params: unknown[]): Promise<{ rows: Record<string, string>[] }> };
      }
    ).$client;
    for (const statement of statements) {
      const { rows } = await client.query(`explain ${statement.sql}`, statement.params);
      const plan = rows.map((r) => Object.values(r)[0]).join('\n');
      expect(plan).not.toMatch(/Seq Scan on projects/);
    }
  });
});

/** A statement as it is sent: its text with $n placeholders and their values. */
type SentStatement = { sql: string; params: unknown[] };

/**
 * The database, recording every statement run through it (and through its transactions), whether
 * run plainly (`execute`) or as a named prepared statement (`query`'s `prepared`, which goes through
 * the session).
 */
function recording(db: Database): { db: Database; statements: SentStatement[] } {
  const statements: SentStatement[] = [];
  const wrap = (target: Database): Database =>
    new Proxy(target, {
      get(t, prop, receiver) {
        if (prop === 'execute') {
          return (q: SQL) => {
            statements.push(dialect.sqlToQuery(q));
            return t.execute(q);
          };
        }
        if (prop === 'session') {
          const session = Reflect.get(t, prop, receiver) as {
            prepareQuery: (q: SentStatement, ...rest: unknown[]) => unknown;
          };
          return new Proxy(session, {
            get(s, p, r) {
              if (p !== 'prepareQuery') return Reflect.get(s, p, r);
              return (q: SentStatement, ...rest: unknown[]) => {
                statements.push({ sql: q.sql, params: q.params });
                return s.prepareQuery(q, ...rest);
              };
            },
          });
        }
        if (prop === 'transaction') {
          return (fn: (tx: Database) => Promise<unknown>) =>
            t.transaction((tx) => fn(wrap(tx as unknown as Database)));
        }
        return Reflect.get(t, prop, receiver);
      },
    });
  return { db: wrap(db), statements };
}
