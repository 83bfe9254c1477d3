import { sql } from 'drizzle-orm';
import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CatalogService, type Transition } from '../catalog/catalog-service.ts';
import { ManualClock } from '../clock.ts';
import { type DatabaseHandle, openDatabase, query } from '../db/connection.ts';
import { PresenceOfflineGuard } from './offline-guard.ts';
import { StatusSweeper } from './status-sweeper.ts';

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;
const thresholds = { degradedAfterS: 45, offlineAfterS: 90 };

let handle: DatabaseHandle;
let clock: ManualClock;
let catalog: CatalogService;
let sweeper: StatusSweeper;
let guard: PresenceOfflineGuard;
let published: Transition[];

beforeAll(async () => {
  handle = await openDatabase({ databaseUrl: 'memory://', dataDir: '' });
  await handle.migrate();
});
afterAll(async () => {
  await handle.close();
});

beforeEach(async () => {
  await query(handle.db, sql`delete from projects`);
  await query(handle.db, sql`delete from project_deadlines`);
  await query(handle.db, sql`delete from presence_holds`);
  await query(handle.db, sql`delete from project_status_counts`);
  clock = new ManualClock(Date.parse('2025-03-01T00:00:00Z'));
  catalog = new CatalogService({ db: handle.db, clock, thresholds });
  guard = new PresenceOfflineGuard({
    startedAt: clock.now(),
    offlineAfterS: thresholds.offlineAfterS,
    nats: { enabled: false, connected: false, since: clock.now() },
  });
  catalog.setGuard(guard);
  published = [];
  // Transitions heartbeats make are claimed as they are written, the rest by the sweeper.
  catalog.onHeartbeatTransitions((t) => void published.push(...t));
  sweeper = new StatusSweeper({
    catalog,
    guard,
    clock,
    log,
    intervalMs: 10,
    onTransitions: (t) => void published.push(...t),
  });
});
afterEach(async () => {
  await sweeper.stop();
});

async function register(slug: string) {
  await catalog.registerProject({ slug, name: slug, hubUrl: `http://${slug}`, meshNamespace: `hub.${slug}` });
}

const path = (ts: Transition[]) => ts.map((t) => `${t.from}>${t.to}`);

describe('StatusSweeper', () => {
  it('claims offline → online → degraded → offline, once each, and stores them', async () => {
    await register('alpha');
    await catalog.updateHeartbeat('alpha');
    expect(path(published)).toEqual(['offline>online']);
    expect(await sweeper.sweepOnce()).toEqual([]);
    // Each flip is taken by the first sweep past its threshold, and not by one at it: on the clock a
    // sweep reads, so the delay after a threshold is the sweep interval at most (its wall-clock figure
    // is the bench's offline_delay_p99_ms, not a timed assertion here).
    clock.advance(45_000);
    expect(await sweeper.sweepOnce()).toEqual([]);
    clock.advance(1);
    expect(path(await sweeper.sweepOnce())).toEqual(['online>degraded']);
    clock.advance(44_999);
    expect(await sweeper.sweepOnce()).toEqual([]);
    clock.advance(1);
    const last = await sweeper.sweepOnce();
    expect(path(last)).toEqual(['degraded>offline']);
    expect(last[0]?.reason).toMatch(/no heartbeat for more than 90s/);
    expect(last[0]?.at).toEqual(clock.now());
    expect(path(published)).toEqual(['offline>online', 'online>degraded', 'degraded>offline']);
    const events = await query<{ from_status: string; to_status: string }>(
      handle.db,
      sql`select from_status, to_status from project_status_events order by id`,
    );
    expect(events.map((e) => `${e.from_status}>${e.to_status}`)).toEqual(path(published));
  });

  it('goes straight to degraded when the project reports it, and back to online', async () => {
    await register('beta');
    await catalog.updateHeartbeat('beta', { health: 'degraded' });
    expect(path(published)).toEqual(['offline>degraded']);
    expect(published[0]?.reason).toBe('project reported health degraded');
    await catalog.updateHeartbeat('beta', { health: 'ok' });
    expect(path(published)).toEqual(['offline>degraded', 'degraded>online']);
    expect(await sweeper.sweepOnce()).toEqual([]);
  });

  it('gives a start-up grace of one offline threshold for silence it could not have heard', async () => {
    await register('gamma');
    clock.advance(-80_000);
    await catalog.updateHeartbeat('gamma');
    clock.advance(80_000);
    await sweeper.sweepOnce();
    // 100 s of silence, but only 20 s of it since the service started.
    clock.advance(20_000);
    expect(path(await sweeper.sweepOnce())).toEqual([]);
    expect((await catalog.getProject('gamma')).status).not.toBe('offline');
    clock.advance(70_001);
    expect(path(await sweeper.sweepOnce())).toEqual(['degraded>offline']);
  });

  it('holds a mass offline for one more threshold, then flips whoever is still silent', async () => {
    const slugs = Array.from({ length: 12 }, (_, i) => `mass-${i}`);
    for (const s of slugs) await register(s);
    clock.advance(100_000); // past the start-up grace
    for (const s of slugs) await catalog.updateHeartbeat(s);
    expect(published).toHaveLength(12);
    clock.advance(91_000);
    // 12 of 12 would go offline at once: held, they stay degraded (late) in the API too.
    const held = await sweeper.sweepOnce();
    expect(held.every((t) => t.to === 'degraded')).toBe(true);
    expect((await catalog.getProjects({ status: 'offline' })).projects).toHaveLength(0);
    // Two come back during the hold.
    clock.advance(60_000);
    await catalog.updateHeartbeat('mass-0');
    await catalog.updateHeartbeat('mass-1');
    expect((await sweeper.sweepOnce()).filter((t) => t.to === 'offline')).toHaveLength(0);
    clock.advance(31_000);
    const flipped = await sweeper.sweepOnce();
    expect(
      flipped
        .filter((t) => t.to === 'offline')
        .map((t) => t.slug)
        .sort(),
    ).toEqual(slugs.slice(2).sort());
    expect((await catalog.getProject('mass-0')).status).not.toBe('offline');
  });

  it('keeps holding when most, but not all, come back during the hold', async () => {
    const slugs = Array.from({ length: 12 }, (_, i) => `partial-${i}`);
    for (const s of slugs) await register(s);
    clock.advance(100_000); // past the start-up grace
    for (const s of slugs) await catalog.updateHeartbeat(s);
    await sweeper.sweepOnce();
    clock.advance(91_000);
    await sweeper.sweepOnce();
    // Eight are back: the four still silent are below the trigger, but may be one beat away.
    clock.advance(30_000);
    for (const s of slugs.slice(0, 8)) await catalog.updateHeartbeat(s);
    expect((await sweeper.sweepOnce()).filter((t) => t.to === 'offline')).toEqual([]);
    clock.advance(59_000);
    expect((await sweeper.sweepOnce()).filter((t) => t.to === 'offline')).toEqual([]);
    clock.advance(1_000);
    const flipped = await sweeper.sweepOnce();
    expect(
      flipped
        .filter((t) => t.to === 'offline')
        .map((t) => t.slug)
        .sort(),
    ).toEqual(slugs.slice(8).sort());
  });

  it('holds a fleet whose deadlines spread over its beat interval, counting what went offline within a threshold', async () => {
    const slugs = Array.from({ length: 20 }, (_, i) => `spread-${i}`);
    for (const s of slugs) await register(s);
    clock.advance(100_000); // past the start-up grace
    // They beat 1.5 s apart (a jittered fleet), then all fall silent at once.
    for (const s of slugs) {
      await catalog.updateHeartbeat(s);
      clock.advance(1_500);
    }
    const offline: string[] = [];
    // Sweep every second for two thresholds: without counting the recent flips, each sweep would
    // see one or two projects due and never a mass event.
    for (let i = 0; i < 180; i++) {
      clock.advance(1_000);
      for (const t of await sweeper.sweepOnce()) if (t.to === 'offline') offline.push(t.slug);
      if (guard.massHolding(clock.now())) break;
    }
    expect(guard.massHolding(clock.now())).toBe(true);
    // Held once more than half of them had gone (or were going) offline: the rest wait.
    expect(offline.length).toBeGreaterThan(0);
    expect(offline.length).toBeLessThan(slugs.length);
  });

  it('shares one mass-offline hold between replicas: held once, released once, flipped once', async () => {
    const other = new CatalogService({ db: handle.db, clock, thresholds });
    const otherGuard = new PresenceOfflineGuard({
      startedAt: clock.now(),
      offlineAfterS: thresholds.offlineAfterS,
      nats: { enabled: false, connected: false, since: clock.now() },
    });
    other.setGuard(otherGuard);
    const otherSweeper = new StatusSweeper({
      catalog: other,
      guard: otherGuard,
      clock,
      log,
      intervalMs: 10,
      onTransitions: (t) => void published.push(...t),
    });
    const slugs = Array.from({ length: 12 }, (_, i) => `shared-${i}`);
    for (const s of slugs) await register(s);
    clock.advance(100_000);
    for (const s of slugs) await catalog.updateHeartbeat(s);
    clock.advance(91_000);
    await sweeper.sweepOnce(); // this replica sees the event and records the hold
    expect(guard.massHolding(clock.now())).toBe(true);
    clock.advance(1_000);
    await otherSweeper.sweepOnce(); // the other adopts it
    expect(otherGuard.massHolding(clock.now())).toBe(true);
    expect(otherGuard.health(clock.now()).mass_offline).toEqual(guard.health(clock.now()).mass_offline);
    // The hold ends at the same instant for both; the still silent flip once, and neither holds again.
    clock.advance(89_001);
    const flipped = [...(await otherSweeper.sweepOnce()), ...(await sweeper.sweepOnce())];
    expect(
      flipped
        .filter((t) => t.to === 'offline')
        .map((t) => t.slug)
        .sort(),
    ).toEqual([...slugs].sort());
    clock.advance(1_000);
    await otherSweeper.sweepOnce();
    await sweeper.sweepOnce();
    expect(guard.massHolding(clock.now()) || otherGuard.massHolding(clock.now())).toBe(false);
    await otherSweeper.stop();
  });

  it('refuses a second start and keeps sweeping after a failed sweep', async () => {
    let calls = 0;
    const flaky = new StatusSweeper({
      catalog: {
        countPendingOffline: async () => ({ pending: 0, live: 0, hold: null, exact: true }),
        sweepStatuses: async () => {
          calls += 1;
          if (calls === 1) throw new Error('database went away');
          return [];
        },
      },
      guard: { observe: () => undefined, adopt: () => {}, triggers: () => false, massHolding: () => false },
      clock,
      log,
      intervalMs: 5,
    });
    flaky.start();
    expect(() => flaky.start()).toThrow(/already started/);
    for (let i = 0; i < 200 && calls < 3; i++) await new Promise((r) => setTimeout(r, 5));
    await flaky.stop();
    expect(calls).toBeGreaterThanOrEqual(3);
  });
});
