import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import {
  DEADLINE_BUCKET_MS,
  guardedStatus,
  heartbeatStatus,
  type StatusInput,
  type Thresholds,
  thresholdsFor,
} from '../src/catalog/status-rule.ts';
import { ManualClock } from '../src/clock.ts';
import { query } from '../src/db/connection.ts';
import type { ProjectStatus } from '../src/protocol/index.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';
import { waitFor } from './helpers/wait.ts';

/**
 * Property tests of the status rule and the sweeper, black-box: random heartbeat timelines (with
 * interval_s, health, restarts of the service and NATS gaps) on an injectable clock, fed through
 * POST /api/fed/heartbeats, swept with app.sweeper.sweepOnce(), read back through the API. At every
 * step the API's status (one project and the ?status= filter) equals the pure rule with its guards,
 * and the stored transitions are exactly the changes of that status, each once, in order.
 *
 * Fewer than 10 projects per timeline, so the mass-offline guard (at least 10) never triggers here;
 * it has tests of its own (offline-guard.test.ts, presence-transitions.test.ts).
 */

const PROJECTS = 4;
const INTERVAL_S = 10; // server default: degraded after 15 s, offline after 30 s

type Step =
  | { t: 'beat'; p: number; health: 'ok' | 'degraded' | 'leaving' | undefined; interval: number | undefined }
  | { t: 'advance'; ms: number }
  | { t: 'sweep' }
  | { t: 'restart' }
  | { t: 'nats' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('beat' as const),
      p: fc.nat(PROJECTS - 1),
      // 'leaving': a heartbeat with state "leaving" (a graceful stop).
      health: fc.constantFrom('ok' as const, 'degraded' as const, undefined, 'leaving' as const),
      interval: fc.constantFrom(undefined, undefined, 4, 20),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('advance' as const),
      // Exactly at and just past the thresholds (6, 12; 15, 30; 30, 60), and anything up to two minutes.
      ms: fc.oneof(
        fc.constantFrom(1000, 6000, 6001, 12_000, 12_001, 15_000, 15_001, 30_000, 30_001, 60_001),
        fc.integer({ min: 0, max: 120_000 }),
      ),
    }),
  },
  { weight: 5, arbitrary: fc.constant({ t: 'sweep' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'restart' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'nats' as const }) },
);

interface ModelProject {
  slug: string;
  input: StatusInput | undefined; // undefined: never heard, not registered
  stored: ProjectStatus;
  transitions: Array<{ from: ProjectStatus; to: ProjectStatus; after: number; by: number }>;
}

describe('status rule and sweeper: property tests on random timelines', () => {
  let db: TestDatabase;
  let nats: TestNatsServer;

  beforeAll(async () => {
    db = await createPostgresDatabase('fed_prop');
    nats = await startNatsServer();
  });
  afterAll(async () => {
    await nats?.destroy();
    await db?.drop();
  });

  it('the API always shows the guarded rule, and history holds each change once', async () => {
    const build = (clock: ManualClock) =>
      buildTestApp(
        {
          DATABASE_URL: db.url,
          NATS_URL: nats.url,
          FED_HEARTBEAT_INTERVAL_S: String(INTERVAL_S),
          // The sweeps are the test's own: the timer would sweep at moments the model does not know.
          FED_SWEEP_INTERVAL_S: '3600',
          FED_RATE_LIMIT_WRITES: '0',
        },
        { clock },
      );

    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 4, maxLength: 30 }), async (steps) => {
        const tag = uniqueSlug('prop');
        const clock = new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
        let app: App = await build(clock);
        const thresholds: Thresholds = {
          degradedAfterS: app.config.degradedAfterS,
          offlineAfterS: app.config.offlineAfterS,
        };
        let startedAt = clock.now();
        let natsUp = true;
        let natsSince = clock.now();
        // The NATS pause applies only once this instance has had a connection (offline-guard.ts).
        let natsSeenThisRun = true;
        let lastSweep = clock.now().getTime();
        const model: ModelProject[] = Array.from({ length: PROJECTS }, (_, i) => ({
          slug: `${tag}-${i}`,
          input: undefined,
          stored: 'offline',
          transitions: [],
        }));
        const guard = () => ({
          heardSince: new Date(Math.max(startedAt.getTime(), natsUp ? natsSince.getTime() : 0)),
          holdAll: !natsUp && natsSeenThisRun,
        });
        const expected = (p: ModelProject) =>
          p.input ? guardedStatus(p.stored, p.input, clock.now(), thresholds, guard()) : undefined;
        // When the rule next moves the stored status (deadlineSql's twin; an offline flip counts
        // silence only from when this instance could hear it, like the guards).
        const deadline = (p: ModelProject) => {
          if (!p.input?.lastHeartbeatAt || p.stored === 'offline') return undefined;
          const t = thresholdsFor(p.input, thresholds);
          const last = p.input.lastHeartbeatAt.getTime();
          const toOffline =
            p.stored === 'degraded' || p.input.reportedHealth === 'degraded' || t.degradedAfterS === 0;
          return toOffline
            ? Math.max(last, guard().heardSince.getTime()) + t.offlineAfterS * 1000
            : last + t.degradedAfterS * 1000;
        };
        // A sweep claims a deadline once it has passed by the claim grace (twice the flush interval,
        // for heartbeats still in a replica's buffer); deadlines are queued in buckets, so one that
        // passed by less than a bucket more may wait for the next sweep.
        const claimGraceMs = () => 2 * app.config.flushIntervalMs;
        const storedStatus = async (slug: string) =>
          (
            await query<{ status: ProjectStatus }>(
              app.db,
              sql`select status from projects where slug = ${slug}`,
            )
          )[0]?.status;

        const check = async (trace: string) => {
          for (const p of model) {
            const res = await app.inject(`/api/fed/projects/${p.slug}`);
            if (!p.input) {
              expect(res.statusCode, `${trace}: ${p.slug} unknown`).toBe(404);
              continue;
            }
            expect(res.statusCode, trace).toBe(200);
            expect((res.json() as { status: string }).status, `${trace}: ${p.slug}`).toBe(expected(p));
          }
          for (const status of ['online', 'degraded', 'offline'] as const) {
            const res = await app.inject(`/api/fed/projects?tag=${tag}&status=${status}`);
            const listed = (res.json() as Array<{ slug: string }>).map((r) => r.slug).sort();
            const want = model.filter((p) => expected(p) === status).map((p) => p.slug);
            expect(listed, `${trace}: ?status=${status}`).toEqual(want);
          }
        };

        const trace: string[] = [];
        try {
          for (const step of steps) {
            trace.push(JSON.stringify(step));
            const where = trace.join(' ');
            switch (step.t) {
              case 'beat': {
                const p = model[step.p] as ModelProject;
                const res = await app.inject({
                  method: 'POST',
                  url: '/api/fed/heartbeats',
                  payload: {
                    project_slug: p.slug,
                    hub_url: 'http://127.0.0.1:9',
                    mesh_namespace: `hub.${p.slug}`,
                    timestamp: clock.now().toISOString(),
                    tags: [tag],
                    ...(step.health === 'leaving'
                      ? { state: 'leaving' }
                      : step.health
                        ? { health: step.health }
                        : {}),
                    ...(step.interval ? { interval_s: step.interval } : {}),
                  },
                });
                expect(res.statusCode, where).toBe(202);
                await app.heartbeatWriter.flush();
                // A transition the rule had made and no sweep had claimed is stored first, by the write.
                if (p.input) {
                  const pending = guardedStatus(p.stored, p.input, clock.now(), thresholds, guard());
                  if (pending !== p.stored) {
                    // Dated when the rule made it: at the deadline it had passed, or later.
                    p.transitions.push({
                      from: p.stored,
                      to: pending,
                      after: deadline(p) ?? lastSweep,
                      by: clock.now().getTime(),
                    });
                    p.stored = pending;
                  }
                }
                p.input = {
                  lastHeartbeatAt: clock.now(),
                  reportedHealth: step.health ?? 'ok',
                  intervalS: step.interval ?? null,
                };
                // A heartbeat claims its own transition as it is written (back online, or degraded
                // when it reports so), at its receive time; the sweeper claims the rest.
                {
                  const now = clock.now().getTime();
                  const written = heartbeatStatus(step.health);
                  if (written !== p.stored) {
                    p.transitions.push({ from: p.stored, to: written, after: now, by: now });
                    p.stored = written;
                  }
                }
                break;
              }
              case 'advance':
                clock.advance(step.ms);
                break;
              case 'sweep': {
                await app.sweeper.sweepOnce();
                const now = clock.now().getTime();
                for (const p of model) {
                  const next = expected(p);
                  const due = deadline(p);
                  if (next === undefined || next === p.stored || due === undefined) continue;
                  const late = now - claimGraceMs() - due;
                  // Past the grace and a whole bucket: claimed. Not past the grace: not yet. Between: either.
                  const claimed =
                    late > DEADLINE_BUCKET_MS || (late > 0 && (await storedStatus(p.slug)) !== p.stored);
                  expect(
                    late > 0 || (await storedStatus(p.slug)) === p.stored,
                    `${where}: ${p.slug} claimed early`,
                  ).toBe(true);
                  if (claimed) {
                    p.transitions.push({ from: p.stored, to: next, after: lastSweep, by: now });
                    p.stored = next;
                  }
                }
                lastSweep = now;
                break;
              }
              case 'restart':
                await app.close();
                app = await build(clock);
                startedAt = clock.now();
                natsSeenThisRun = natsUp;
                if (natsUp) {
                  await waitFor(() => app.nats.connected, { what: 'NATS after restart' });
                  natsSince = clock.now();
                }
                break;
              case 'nats':
                if (natsUp) {
                  await nats.stop();
                  await waitFor(() => !app.nats.connected, { what: 'NATS seen down' });
                } else {
                  await nats.start();
                  await waitFor(() => app.nats.connected, { what: 'NATS seen back' });
                  natsSince = clock.now();
                  natsSeenThisRun = true;
                }
                natsUp = !natsUp;
                break;
            }
            await check(where);
          }

          for (const p of model) {
            if (!p.input) continue;
            const res = await app.inject(`/api/fed/projects/${p.slug}/history`);
            const got = (res.json() as { transitions: Array<{ from: string; to: string; at: string }> })
              .transitions;
            const where = `${trace.join(' ')}: history of ${p.slug}`;
            expect(
              got.map((t) => `${t.from}>${t.to}`),
              where,
            ).toEqual(p.transitions.map((t) => `${t.from}>${t.to}`));
            got.forEach((t, i) => {
              const m = p.transitions[i];
              const at = Date.parse(t.at);
              expect(at, where).toBeGreaterThanOrEqual(m?.after ?? 0);
              expect(at, where).toBeLessThanOrEqual(m?.by ?? 0);
            });
          }
        } finally {
          if (!natsUp) {
            await nats.start();
            await waitFor(() => app.nats.connected, { what: 'NATS back for cleanup' });
          }
          // Leave nothing live behind: the next timeline's mass-offline count covers the whole table.
          for (const p of model)
            if (p.input) await app.inject({ method: 'DELETE', url: `/api/fed/projects/${p.slug}` });
          await app.close();
        }
      }),
      { numRuns: 30 },
    );
  }, 600_000);
});
