import { sql } from 'drizzle-orm';
import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresDatabase, ENGINES, type TestDatabase } from '../../test/helpers/postgres.ts';
import { waitFor } from '../../test/helpers/wait.ts';
import { CatalogService } from '../catalog/catalog-service.ts';
import { ManualClock } from '../clock.ts';
import type { IntegrationsSink } from '../core.ts';
import { type Database, type DatabaseHandle, openDatabase, query } from '../db/connection.ts';
import type { Heartbeat } from '../protocol/index.ts';
import { HeartbeatIntake } from './heartbeat-intake.ts';
import { dataError, HeartbeatWriter, INTEGRATIONS_REFRESH_MS } from './heartbeat-writer.ts';
import { HeartbeatRejections, PresenceMetrics } from './presence-metrics.ts';

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;
let n = 0;
const slugOf = (p: string) => `${p}-${process.pid}-${++n}`;

const hb = (slug: string, extra: Partial<Heartbeat> = {}): Heartbeat => ({
  project_slug: slug,
  hub_url: `http://${slug}:8000`,
  mesh_namespace: `hub.${slug}`,
  timestamp: '2020-01-01T00:00:00Z',
  ...extra,
});

const refused = () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });

/** Wraps a database so that every statement can be made to fail, like an unreachable server. */
function breakable(db: Database) {
  const state: { down: boolean; statements: number; onExecute?: () => void } = { down: false, statements: 0 };
  const proxy = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'execute') {
        return (q: unknown) => {
          state.statements += 1;
          state.onExecute?.();
          if (state.down) return Promise.reject(refused());
          return target.execute(q as never);
        };
      }
      if (prop === 'session') {
        // A statement `query` runs as a prepared one goes through the session.
        const session = Reflect.get(target, prop, receiver) as {
          prepareQuery: (...args: unknown[]) => { execute(): Promise<unknown> };
        };
        return new Proxy(session, {
          get(s, p, r) {
            if (p !== 'prepareQuery') return Reflect.get(s, p, r);
            return (...args: unknown[]) => {
              const prepared = s.prepareQuery(...args);
              return {
                execute: () => {
                  state.statements += 1;
                  state.onExecute?.();
                  if (state.down) return Promise.reject(refused());
                  return prepared.execute();
                },
              };
            };
          },
        });
      }
      return Reflect.get(target, prop, receiver);
    },
  });
  return { db: proxy as Database, state };
}

let handle: DatabaseHandle;
beforeAll(async () => {
  handle = await openDatabase({ databaseUrl: 'memory://', dataDir: '' });
  await handle.migrate();
});
afterAll(async () => {
  await handle.close();
});

function makeWriter(
  opts: {
    autoRegister?: boolean;
    bufferMax?: number;
    bufferMaxBytes?: number;
    flushIntervalMs?: number;
    sinks?: IntegrationsSink[];
    maxBatchRows?: number;
    concurrency?: number;
    lazyRowsBelow?: number;
    db?: Database;
    /** Wraps the catalog the writer writes through (to watch or hold its statements). */
    wrap?: (catalog: CatalogService) => Pick<CatalogService, 'writeHeartbeats'>;
  } = {},
) {
  const clock = new ManualClock(Date.parse('2025-06-01T12:00:00Z'));
  const registry = new Registry();
  const metrics = new PresenceMetrics(registry);
  const { db, state } = breakable(opts.db ?? handle.db);
  const rejections = new HeartbeatRejections(metrics, log, clock);
  const catalog = new CatalogService({ db, clock, thresholds: { degradedAfterS: 45, offlineAfterS: 90 } });
  const writer = new HeartbeatWriter({
    catalog: opts.wrap ? opts.wrap(catalog) : catalog,
    clock,
    log,
    metrics,
    rejections,
    autoRegister: opts.autoRegister ?? true,
    flushIntervalMs: opts.flushIntervalMs ?? 60_000,
    bufferMax: opts.bufferMax ?? 1000,
    ...(opts.bufferMaxBytes ? { bufferMaxBytes: opts.bufferMaxBytes } : {}),
    integrationSinks: opts.sinks ?? [],
    ...(opts.maxBatchRows ? { maxBatchRows: opts.maxBatchRows } : {}),
    ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
    ...(opts.lazyRowsBelow !== undefined ? { lazyRowsBelow: opts.lazyRowsBelow } : {}),
  });
  const counter = async (name: string, labels: Record<string, string> = {}) => {
    const m = await registry.getSingleMetric(name)?.get();
    return m?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
  };
  return { clock, writer, state, counter, metrics, rejections, db };
}

/** The project's stored transitions, oldest first, as `from>to`. */
async function transitionsOf(slug: string): Promise<string[]> {
  const events = await query<{ from_status: string; to_status: string }>(
    handle.db,
    sql`select e.from_status, e.to_status from project_status_events e join projects p on p.id = e.project_id
        where p.slug = ${slug} order by e.id`,
  );
  return events.map((e) => `${e.from_status}>${e.to_status}`);
}

async function row(slug: string, db: Database = handle.db) {
  const rows = await query<{
    version: string | null;
    last_heartbeat_at: string;
    reported_health: string;
    interval_s: number | null;
    source: string;
    name: string;
    tags: string[];
    status: string;
  }>(
    db,
    sql`select version, last_heartbeat_at, reported_health, interval_s, source, name, tags, status from projects where slug = ${slug}`,
  );
  return rows[0];
}

describe('HeartbeatWriter', () => {
  it('coalesces many heartbeats per project into one statement per flush, keeping the latest', async () => {
    const { clock, writer, state, counter } = makeWriter();
    const slugs = [slugOf('a'), slugOf('b'), slugOf('c')];
    for (let i = 0; i < 300; i++) {
      clock.advance(10);
      const slug = slugs[i % 3] as string;
      expect(
        writer.enqueue(
          hb(slug, { version: `v${i}`, health: i === 299 ? 'degraded' : 'ok', interval_s: 5 }),
          clock.now(),
        ),
      ).toBe(true);
    }
    expect(writer.pending).toBe(3);
    let before = state.statements;
    await writer.flush();
    // The update finds none of them and a second statement finds them unregistered; their own batch
    // then registers them in one statement.
    expect(state.statements - before).toBe(3);
    expect(writer.pending).toBe(0);
    expect(await counter('federation_heartbeat_flushes_total', { result: 'ok' })).toBe(2);
    expect(await counter('federation_heartbeats_written_total')).toBe(3);
    expect(await row(slugs[2] as string)).toMatchObject({
      version: 'v299',
      reported_health: 'degraded',
      interval_s: 5,
      source: 'heartbeat',
    });
    expect(await row(slugs[0] as string)).toMatchObject({ version: 'v297', reported_health: 'ok' });
    expect(new Date((await row(slugs[2] as string))?.last_heartbeat_at as string).getTime()).toBe(
      clock.now().getTime(),
    );
    // Known projects whose status does not change: one statement, however many heartbeats.
    for (let i = 0; i < 100; i++) {
      clock.advance(10);
      writer.enqueue(hb(slugs[i % 2] as string, { version: `w${i}`, interval_s: 5 }), clock.now());
    }
    before = state.statements;
    await writer.flush();
    expect(state.statements - before).toBe(1);
    expect(await row(slugs[1] as string)).toMatchObject({ version: 'w99' });
  });

  it('stores the same row whether a replacing heartbeat was built on arrival (a large buffer) or when first written (a small one)', async () => {
    const stored = [];
    for (const lazyRowsBelow of [0, 1000]) {
      const { clock, writer } = makeWriter({ lazyRowsBelow });
      const slugs = [slugOf('eager'), slugOf('lazy')];
      const fields = [
        {
          version: '1.2.3',
          name: 'Zoë "q"',
          tags: ['a', 'b\\c'],
          interval_s: 7,
          health: 'degraded' as const,
        },
        { state: 'leaving' as const, name: 'leaving' },
      ];
      // The second heartbeat of each replaces the first in the buffer (and is the one left unbuilt).
      for (const slug of slugs) writer.enqueue(hb(slug, { version: 'first' }), clock.now());
      clock.advance(5);
      for (const [i, slug] of slugs.entries()) writer.enqueue(hb(slug, fields[i]), clock.now());
      await writer.flush();
      for (const [i, slug] of slugs.entries()) {
        const r = await row(slug);
        stored.push({
          i,
          name: r?.name,
          version: r?.version,
          tags: r?.tags,
          interval_s: r?.interval_s,
          health: r?.reported_health,
          status: r?.status,
          at: new Date(r?.last_heartbeat_at as string).getTime() - clock.now().getTime(),
        });
      }
    }
    expect(stored.slice(2)).toEqual(stored.slice(0, 2));
    expect(stored[0]).toMatchObject({
      name: 'Zoë "q"',
      tags: ['a', 'b\\c'],
      health: 'degraded',
      interval_s: 7,
      at: 0,
    });
    expect(stored[1]).toMatchObject({ status: 'offline' });
  });

  it('registers from the payload, and only moves the address of projects that heartbeats registered', async () => {
    const { clock, writer } = makeWriter();
    const fromApi = slugOf('api');
    const fromBeat = slugOf('beat');
    await query(
      handle.db,
      sql`insert into projects (slug, name, hub_url, mesh_namespace, source) values (${fromApi}, 'Api', 'http://api', 'hub.api', 'api')`,
    );
    writer.enqueue(hb(fromBeat, { name: 'Beat', tags: ['edge', 'eu'] }), clock.now());
    writer.enqueue(hb(fromApi, { hub_url: 'http://elsewhere' }), clock.now());
    await writer.flush();
    clock.advance(1000);
    writer.enqueue(hb(fromBeat, { hub_url: 'http://moved:9000' }), clock.now());
    await writer.flush();
    const rows = await query<{ slug: string; name: string; hub_url: string; tags: string[]; source: string }>(
      handle.db,
      sql`select slug, name, hub_url, tags, source from projects where slug in (${fromApi}, ${fromBeat}) order by slug`,
    );
    expect(rows.find((r) => r.slug === fromApi)).toMatchObject({
      name: 'Api',
      hub_url: 'http://api',
      source: 'api',
    });
    expect(rows.find((r) => r.slug === fromBeat)).toMatchObject({
      name: 'Beat',
      hub_url: 'http://moved:9000',
      tags: ['edge', 'eu'],
      source: 'heartbeat',
    });
  });

  it('never lets an older heartbeat overwrite a newer one', async () => {
    const { clock, writer } = makeWriter();
    const slug = slugOf('order');
    const newer = clock.now();
    writer.enqueue(hb(slug, { version: 'new' }), newer);
    writer.enqueue(hb(slug, { version: 'older-in-buffer' }), new Date(newer.getTime() - 1000));
    await writer.flush();
    expect((await row(slug))?.version).toBe('new');
    writer.enqueue(hb(slug, { version: 'older-in-db' }), new Date(newer.getTime() - 500));
    await writer.flush();
    expect((await row(slug))?.version).toBe('new');
  });

  it('refuses and counts new projects when the buffer is full, but still takes known ones', async () => {
    const { clock, writer, counter } = makeWriter({ bufferMax: 2 });
    const [a, b, c] = [slugOf('full'), slugOf('full'), slugOf('full')];
    expect(writer.enqueue(hb(a), clock.now())).toBe(true);
    expect(writer.enqueue(hb(b), clock.now())).toBe(true);
    expect(writer.enqueue(hb(c), clock.now())).toBe(false);
    expect(writer.enqueue(hb(a, { version: '2' }), clock.now())).toBe(true);
    expect(await counter('federation_heartbeats_rejected_total', { reason: 'buffer_full' })).toBe(1);
    await writer.flush();
    expect(writer.enqueue(hb(c), clock.now())).toBe(true);
  });

  it('while the database is down, refuses new projects past the byte budget but takes refreshes of pending ones', async () => {
    const { clock, writer, state, counter } = makeWriter({ bufferMaxBytes: 1000, flushIntervalMs: 5 });
    const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((p) => slugOf(`bytes-${p}`)) as [
      string,
      string,
      string,
      string,
      string,
    ];
    state.down = true;
    expect(writer.enqueue(hb(a), clock.now(), 300)).toBe(true);
    expect(writer.enqueue(hb(b), clock.now(), 300)).toBe(true);
    expect(writer.enqueue(hb(c), clock.now(), 300)).toBe(true);
    expect(writer.pendingBytes).toBe(900);
    // 1200 > 1000: a new project is refused although the count bound (1000 projects) is far away.
    expect(writer.enqueue(hb(d), clock.now(), 300)).toBe(false);
    expect(writer.enqueue(hb(d), clock.now(), 100)).toBe(true);
    expect(writer.pendingBytes).toBe(1000);
    await expect(writer.flush()).rejects.toThrow(/ECONNREFUSED/);
    expect(await counter('federation_heartbeat_buffer_bytes')).toBe(1000);

    clock.advance(1000);
    // A refresh replaces its entry, even when it grows the total past the budget.
    expect(writer.enqueue(hb(a, { version: '2' }), clock.now(), 350)).toBe(true);
    expect(writer.enqueue(hb(b, { version: '2' }), clock.now(), 200)).toBe(true);
    expect(writer.pendingBytes).toBe(1000 + 50 - 100);
    expect(writer.enqueue(hb(e), clock.now(), 100)).toBe(false);
    expect(writer.enqueue(hb(e), clock.now(), 50)).toBe(true);
    expect(writer.enqueue(hb(c, { version: '2' }), clock.now(), 400)).toBe(true);
    expect(writer.pendingBytes).toBe(1100);
    expect(writer.enqueue(hb(slugOf('bytes-f')), clock.now(), 1)).toBe(false);
    expect(writer.pending).toBe(5);
    expect(await counter('federation_heartbeats_rejected_total', { reason: 'buffer_full' })).toBe(3);
    expect(writer.health()).toMatchObject({ status: 'degraded', pending: 5, pending_bytes: 1100 });

    state.down = false;
    // The background retry (with backoff) writes them without a manual flush.
    await waitFor(() => writer.pending === 0, { what: 'the buffer to drain' });
    expect(writer.pendingBytes).toBe(0);
    expect(writer.health()).toMatchObject({ status: 'ok', pending: 0, pending_bytes: 0 });
    for (const slug of [a, b, c]) expect((await row(slug))?.version).toBe('2');
    for (const slug of [d, e]) expect(await row(slug)).toBeDefined();
    expect(await counter('federation_heartbeats_written_total')).toBe(5);
    await writer.flush();
    expect(await counter('federation_heartbeat_buffer_bytes')).toBe(0);
  });

  it('counts a NATS heartbeat at the size of its raw message, and an HTTP one at its JSON length', async () => {
    const budget = 64 * 1024;
    const { clock, writer, metrics, rejections, db, counter } = makeWriter({ bufferMaxBytes: budget });
    const intake = new HeartbeatIntake({ writer, rejections, metrics, clock, db, autoRegister: true });
    // Whitespace after the JSON value: the parsed heartbeat is small, the message is not.
    const padded = (slug: string, bytes: number) => {
      const json = JSON.stringify(hb(slug));
      return new TextEncoder().encode(json + ' '.repeat(bytes - json.length));
    };
    const first = slugOf('raw');
    expect(intake.fromNats(`hub.presence.${first}`, padded(first, 8000))).toBe(true);
    expect(writer.pendingBytes).toBe(8000);
    const body = hb(slugOf('http'), { name: 'x'.repeat(200) });
    await intake.fromHttp(body);
    expect(writer.pendingBytes).toBe(8000 + JSON.stringify(body).length);
    while (writer.pendingBytes + 8000 <= budget) {
      const slug = slugOf('raw');
      expect(intake.fromNats(`hub.presence.${slug}`, padded(slug, 8000))).toBe(true);
    }
    const last = slugOf('raw');
    expect(intake.fromNats(`hub.presence.${last}`, padded(last, 8000))).toBe(false);
    expect(intake.fromNats(`hub.presence.${last}`, padded(last, budget - writer.pendingBytes - 100))).toBe(
      true,
    );
    expect(writer.pendingBytes).toBe(budget - 100);
    await expect(intake.fromHttp(hb(slugOf('http'), { name: 'y'.repeat(200) }))).rejects.toThrow(
      /buffer is full/,
    );
    expect(await counter('federation_heartbeats_rejected_total', { reason: 'buffer_full' })).toBe(2);
    await writer.flush();
    expect(writer.pendingBytes).toBe(0);
  });

  it('with auto-register off, updates known projects and counts unknown ones', async () => {
    const { clock, writer, counter } = makeWriter({ autoRegister: false });
    const known = slugOf('known');
    await query(
      handle.db,
      sql`insert into projects (slug, name, hub_url, mesh_namespace) values (${known}, 'K', 'http://k', 'hub.k')`,
    );
    writer.enqueue(hb(known, { version: '9' }), clock.now());
    writer.enqueue(hb(slugOf('stranger')), clock.now());
    writer.enqueue(hb(slugOf('stranger')), clock.now());
    await writer.flush();
    expect(await row(known)).toMatchObject({ version: '9', source: 'api' });
    expect(await counter('federation_heartbeats_rejected_total', { reason: 'unknown_project' })).toBe(2);
    expect(await counter('federation_heartbeats_written_total')).toBe(1);
  });

  it('keeps the latest heartbeat per project while the database is down and writes it on recovery', async () => {
    const { clock, writer, state } = makeWriter({ flushIntervalMs: 5 });
    const slug = slugOf('outage');
    state.down = true;
    writer.enqueue(hb(slug, { version: '1' }), clock.now());
    await expect(writer.flush()).rejects.toThrow(/ECONNREFUSED/);
    clock.advance(1000);
    writer.enqueue(hb(slug, { version: '2' }), clock.now());
    expect(writer.pending).toBe(1);
    const health = writer.health();
    expect(health).toMatchObject({ status: 'degraded', pending: 1 });
    expect(String(health.last_error)).toMatch(/ECONNREFUSED/);
    state.down = false;
    // The background retry (with backoff) writes it without a manual flush.
    for (let i = 0; i < 200 && writer.pending > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(writer.pending).toBe(0);
    expect((await row(slug))?.version).toBe('2');
    expect(writer.health().status).toBe('ok');
  });

  it('a heartbeat standing for those buffered during an outage is heard from the first: no false offline in history', async () => {
    const { clock, writer, state } = makeWriter();
    const slug = slugOf('outage');
    writer.enqueue(hb(slug, { version: 'v0' }), clock.now());
    await writer.flush();
    state.down = true;
    // Beating every 30 s for two minutes while nothing can be written: only the latest is kept.
    for (let i = 1; i <= 4; i++) {
      clock.advance(30_000);
      writer.enqueue(hb(slug, { version: `v${i}` }), clock.now());
      if (i === 2) await expect(writer.flush()).rejects.toThrow();
    }
    state.down = false;
    await writer.flush();
    const events = await transitionsOf(slug);
    // Registered online, and never offline or degraded: it was heard all along.
    expect(events).toEqual(['offline>online']);
    expect((await row(slug))?.version).toBe('v4');
  });

  it('a project silent for longer than its threshold while nothing could be written keeps that silence in history', async () => {
    const { clock, writer, state } = makeWriter();
    const slug = slugOf('crashed');
    writer.enqueue(hb(slug, { version: 'v0' }), clock.now());
    await writer.flush();
    state.down = true;
    clock.advance(30_000);
    writer.enqueue(hb(slug, { version: 'v1' }), clock.now());
    await expect(writer.flush()).rejects.toThrow();
    // Crashed after its beat at 30 s, back at 9 min: the buffer must not make it look heard since 30 s.
    clock.advance(510_000);
    writer.enqueue(hb(slug, { version: 'v2' }), clock.now());
    state.down = false;
    await writer.flush();
    const events = await transitionsOf(slug);
    expect(events).toEqual(['offline>online', 'online>offline', 'offline>online']);
  });

  it('writes on its own within the flush interval', async () => {
    const { clock, writer } = makeWriter({ flushIntervalMs: 20 });
    const slug = slugOf('timer');
    writer.enqueue(hb(slug), clock.now());
    for (let i = 0; i < 100 && !(await row(slug)); i++) await new Promise((r) => setTimeout(r, 10));
    expect(await row(slug)).toBeDefined();
    await writer.close();
  });

  it('hands integrations over only when they change or have not been refreshed for a while', async () => {
    const batches: Array<Parameters<IntegrationsSink>[0]> = [];
    const { clock, writer } = makeWriter({ sinks: [(b) => void batches.push(b)] });
    const slug = slugOf('integr');
    const integrations: NonNullable<Heartbeat['integrations']> = [{ to: 'other', kind: 'api' }];
    const beat = async (list = integrations) => {
      writer.enqueue(hb(slug, { integrations: list }), clock.now());
      await writer.flush();
    };
    await beat();
    expect(batches).toHaveLength(1);
    expect(batches[0]?.[0]).toMatchObject({ slug, integrations });
    clock.advance(1000);
    await beat();
    await beat();
    expect(batches).toHaveLength(1);
    await beat([{ to: 'other', kind: 'queue' }]);
    expect(batches).toHaveLength(2);
    clock.advance(INTEGRATIONS_REFRESH_MS + 1);
    await beat([{ to: 'other', kind: 'queue' }]);
    expect(batches).toHaveLength(3);
    writer.enqueue(hb(slug), clock.now());
    await writer.flush();
    expect(batches).toHaveLength(3);
  });
});

describe('HeartbeatWriter fairness', () => {
  it('holds a project heard by its deadline until its heartbeat is written (within a degraded threshold while writes fail)', async () => {
    const { writer, clock, state } = makeWriter();
    const [a, b] = [slugOf('held'), slugOf('held')] as [string, string];
    const at = (ms: number) => new Date(clock.now().getTime() + ms);
    writer.enqueue(hb(a), clock.now());
    expect(writer.holds(a, at(0))).toBe(true);
    expect(writer.holds(b, at(0))).toBe(false);
    // Heard only after that deadline: a real silence, not held.
    expect(writer.holds(a, at(-1))).toBe(false);
    // Writes succeed, however late: still held a minute on (the writer is behind, not the project).
    clock.advance(60_000);
    expect(writer.holds(a, at(-60_000))).toBe(true);
    await writer.flush();
    expect(writer.holds(a, at(0))).toBe(false);
    writer.enqueue(hb(a, { version: 'x1' }), clock.now());
    writer.enqueue(hb(b), clock.now());
    state.down = true;
    await expect(writer.flush()).rejects.toThrow();
    expect([writer.holds(a, at(0)), writer.holds(b, at(0))]).toEqual([true, true]);
    // Unwritten for longer than a degraded threshold (45 s): no longer speaks for the project.
    clock.advance(45_000);
    expect(writer.holds(a, at(-45_000))).toBe(false);
    state.down = false;
    await writer.flush();
    expect([writer.holds(a, at(0)), writer.holds(b, at(0))]).toEqual([false, false]);
  });

  it('registers a fleet in batches of its own, each project with its latest heartbeat', async () => {
    const { writer, clock } = makeWriter({ maxBatchRows: 2 });
    const known = [slugOf('known'), slugOf('known')];
    for (const s of known) writer.enqueue(hb(s, { version: 'k0' }), clock.now());
    await writer.flush();
    const fleet = Array.from({ length: 8 }, () => slugOf('fleet'));
    clock.advance(10);
    for (const s of fleet) writer.enqueue(hb(s), clock.now());
    for (const s of known) writer.enqueue(hb(s, { version: 'k1' }), clock.now());
    clock.advance(10);
    writer.enqueue(hb(fleet[0] as string, { version: 'f1' }), clock.now());
    expect(writer.pending).toBe(10);
    await writer.flush();
    expect(writer.pending).toBe(0);
    const rows = await query<{ slug: string; version: string | null }>(
      handle.db,
      sql`select slug, version from projects where slug = any(${sql.param([...known, ...fleet])}::text[])`,
    );
    expect(rows).toHaveLength(10);
    expect(rows.find((r) => r.slug === fleet[0])?.version).toBe('f1');
    for (const s of known) expect(rows.find((r) => r.slug === s)?.version).toBe('k1');
  });

  it('writes every project in turn even when the first batch beats again during each write', async () => {
    // Batches of 2 over 6 projects, and the two at the front beat again while every write is under
    // way, as a fleet beating faster than one batch writes would.
    const { writer, clock, state } = makeWriter({ maxBatchRows: 2 });
    const slugs = Array.from({ length: 6 }, () => slugOf('fair'));
    for (const s of slugs) writer.enqueue(hb(s), clock.now());
    state.onExecute = () => {
      clock.advance(10);
      for (const s of slugs.slice(0, 2)) writer.enqueue(hb(s), clock.now());
    };
    await writer.flush();
    state.onExecute = undefined;
    const rows = await query<{ slug: string }>(
      handle.db,
      sql`select slug from projects where slug = any(${sql.param(slugs)}::text[]) and last_heartbeat_at is not null`,
    );
    expect(rows.map((r) => r.slug).sort()).toEqual([...slugs].sort());
  });
});

describe('dataError', () => {
  it('finds a class 22 SQLSTATE through the causes drizzle wraps, and nothing else', () => {
    const pgError = Object.assign(new Error('unsupported Unicode escape sequence'), { code: '22P05' });
    expect(dataError(new Error('Failed query: …', { cause: pgError }))).toEqual({
      code: '22P05',
      message: 'unsupported Unicode escape sequence',
    });
    expect(dataError(Object.assign(new Error('x'), { code: '22021' }))?.code).toBe('22021');
    expect(dataError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBeUndefined();
    expect(
      dataError(new Error('y', { cause: Object.assign(new Error('z'), { code: '57P01' }) })),
    ).toBeUndefined();
    expect(dataError(Object.assign(new Error('unique'), { code: '23505' }))).toBeUndefined();
    expect(dataError(undefined)).toBeUndefined();
  });
});

describe('HeartbeatWriter with two batches in flight, on PostgreSQL', () => {
  let testDb: TestDatabase;
  let database: DatabaseHandle;
  beforeAll(async () => {
    testDb = await createPostgresDatabase();
    database = await openDatabase({ databaseUrl: testDb.url, dataDir: '' });
    await database.migrate();
  });
  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
  });

  it('counts two writes failing together as one failed attempt, so the backoff does not double twice', async () => {
    let settled = 0;
    let release = () => {};
    const both = new Promise<void>((r) => {
      release = r;
    });
    let started = 0;
    const { writer, clock, state } = makeWriter({
      maxBatchRows: 1,
      concurrency: 2,
      wrap: (catalog) => ({
        writeHeartbeats: async (rows, autoRegister, opts) => {
          // Both are under way before the database refuses either.
          if (++started === 2) release();
          await both;
          try {
            return await catalog.writeHeartbeats(rows, autoRegister, opts);
          } finally {
            settled += 1;
          }
        },
      }),
    });
    state.down = true;
    for (const s of [slugOf('fail2'), slugOf('fail2')]) writer.enqueue(hb(s), clock.now());
    await expect(writer.flush()).rejects.toThrow();
    await waitFor(() => settled === 2, { what: 'both writes failed' });
    expect(writer.health()).toMatchObject({ status: 'degraded', consecutive_failures: 1 });
    // The next attempt is the second.
    await expect(writer.flush()).rejects.toThrow();
    await waitFor(() => settled === 4, { what: 'both retries failed' });
    expect(writer.health()).toMatchObject({ consecutive_failures: 2 });
    state.down = false;
    await writer.flush();
    expect(writer.health().status).toBe('ok');
  });

  it('a write failing while another succeeds is still counted: health says degraded', async () => {
    const bad = slugOf('failone');
    let release = () => {};
    const okDone = new Promise<void>((r) => {
      release = r;
    });
    const { writer, clock } = makeWriter({
      maxBatchRows: 1,
      concurrency: 2,
      wrap: (catalog) => ({
        writeHeartbeats: async (rows, autoRegister, opts) => {
          if (rows.some(([s]) => s === bad)) {
            // Fails after the other write has succeeded.
            await okDone;
            throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
          }
          try {
            return await catalog.writeHeartbeats(rows, autoRegister, opts);
          } finally {
            setImmediate(release);
          }
        },
      }),
    });
    writer.enqueue(hb(bad), clock.now());
    writer.enqueue(hb(slugOf('failone')), clock.now());
    await expect(writer.flush()).rejects.toThrow();
    await waitFor(() => writer.health().status === 'degraded', { what: 'the failure counted' });
    expect(writer.health()).toMatchObject({ consecutive_failures: 1, pending: 1 });
  });

  it('holds a project by the heartbeat being written while a newer one waits behind it', async () => {
    let release = () => {};
    let hold: Promise<void> | undefined;
    let writes = 0;
    const { writer, clock } = makeWriter({
      db: database.db,
      wrap: (catalog) => ({
        writeHeartbeats: async (rows, autoRegister, opts) => {
          writes += 1;
          await hold;
          return catalog.writeHeartbeats(rows, autoRegister, opts);
        },
      }),
    });
    const slug = slugOf('inflight');
    writer.enqueue(hb(slug), clock.now());
    await writer.flush();
    hold = new Promise<void>((r) => {
      release = r;
    });
    const before = writes;
    const heard = clock.now();
    writer.enqueue(hb(slug, { version: '1' }), heard);
    const flushed = writer.flush();
    await waitFor(() => writes === before + 1, { what: 'the write in progress' });
    // 20 s on, a newer heartbeat replaces it in the buffer while it is being written.
    clock.advance(20_000);
    writer.enqueue(hb(slug, { version: '2' }), clock.now());
    // Silent at a deadline 10 s after the one being written? No: that one was heard before it.
    expect(writer.holds(slug, new Date(heard.getTime() + 10_000))).toBe(true);
    expect(writer.holds(slug, new Date(heard.getTime() - 1))).toBe(false);
    release();
    await flushed;
    await writer.flush();
    expect(writer.pending).toBe(0);
  });

  it('frees written projects for the next write while their integrations wait on a slow sink', async () => {
    const sizes: number[] = [];
    let releaseSink = () => {};
    const sinkHeld = new Promise<void>((r) => {
      releaseSink = r;
    });
    const handed: string[][] = [];
    const { writer, clock } = makeWriter({
      db: database.db,
      maxBatchRows: 3,
      concurrency: 2,
      sinks: [
        async (b) => {
          handed.push(b.map((x) => x.slug));
          await sinkHeld;
        },
      ],
      wrap: (catalog) => ({
        writeHeartbeats: async (rows, autoRegister, opts) => {
          sizes.push(rows.length);
          return catalog.writeHeartbeats(rows, autoRegister, opts);
        },
      }),
    });
    const first = Array.from({ length: 3 }, () => slugOf('sink'));
    const next = Array.from({ length: 3 }, () => slugOf('sink'));
    // Registered first, so that each batch below is one write.
    for (const s of [...first, ...next]) writer.enqueue(hb(s, { version: '0' }), clock.now());
    await writer.flush();
    sizes.length = 0;
    clock.advance(10);
    for (const s of first)
      writer.enqueue(hb(s, { integrations: [{ to: 'other', kind: 'api' }] }), clock.now());
    const flushed = writer.flush();
    await waitFor(() => handed.length === 1, { what: 'the first batch handed to the sink' });
    // The first write holds its place in `concurrency` until the sink returns, but not its projects:
    // a whole batch is waiting beside it, so a second write starts.
    clock.advance(10);
    for (const s of next) writer.enqueue(hb(s), clock.now());
    const flushedNext = writer.flush();
    await waitFor(() => sizes.length === 2, { what: 'a second write while the sink is held' });
    expect(sizes).toEqual([3, 3]);
    releaseSink();
    await Promise.all([flushed, flushedNext]);
    expect(writer.pending).toBe(0);
    expect(handed).toEqual([[...first].sort()]);
  });

  it('starts a write beside another only when a whole batch waits', async () => {
    const sizes: number[] = [];
    let running = 0;
    let most = 0;
    let release = () => {};
    let hold: Promise<void> | undefined;
    const { writer, clock } = makeWriter({
      db: database.db,
      maxBatchRows: 3,
      concurrency: 2,
      wrap: (catalog) => ({
        writeHeartbeats: async (rows, autoRegister, opts) => {
          sizes.push(rows.length);
          running += 1;
          most = Math.max(most, running);
          try {
            await hold;
            return await catalog.writeHeartbeats(rows, autoRegister, opts);
          } finally {
            running -= 1;
          }
        },
      }),
    });
    const few = Array.from({ length: 4 }, () => slugOf('few'));
    const many = Array.from({ length: 6 }, () => slugOf('many'));
    // Registered first, so that each batch below is one write.
    for (const s of [...few, ...many]) writer.enqueue(hb(s, { version: '0' }), clock.now());
    await writer.flush();
    sizes.length = 0;
    most = 0;
    hold = new Promise<void>((r) => {
      release = r;
    });
    clock.advance(10);
    // Three in the first batch, one left: less than a batch, so it waits for the first write.
    for (const s of few) writer.enqueue(hb(s, { version: '1' }), clock.now());
    let flushed = writer.flush();
    await waitFor(() => sizes.length === 1, { what: 'the first write' });
    await new Promise((r) => setImmediate(r));
    expect(running).toBe(1);
    release();
    await flushed;
    expect(sizes).toEqual([3, 1]);
    expect(most).toBe(1);

    // Six: a whole batch waits beside the first, so both are written at once.
    sizes.length = 0;
    hold = new Promise<void>((r) => {
      release = r;
    });
    clock.advance(10);
    for (const s of many) writer.enqueue(hb(s, { version: '1' }), clock.now());
    flushed = writer.flush();
    await waitFor(() => sizes.length === 2, { what: 'two writes under way' });
    expect(running).toBe(2);
    release();
    await flushed;
    expect(sizes).toEqual([3, 3]);
    expect(writer.pending).toBe(0);
  });

  it('writes two batches at once on disjoint projects; one beating again during its write waits for the next', async () => {
    const calls: string[][] = [];
    let running = 0;
    let most = 0;
    let hold: Promise<void> | undefined;
    const { writer, clock } = makeWriter({
      db: database.db,
      maxBatchRows: 2,
      concurrency: 2,
      wrap: (catalog) => ({
        writeHeartbeats: async (rows, autoRegister, opts) => {
          calls.push(rows.map((r) => r[0]));
          running += 1;
          most = Math.max(most, running);
          try {
            await hold;
            return await catalog.writeHeartbeats(rows, autoRegister, opts);
          } finally {
            running -= 1;
          }
        },
      }),
    });
    const slugs = Array.from({ length: 5 }, () => slugOf('pair'));
    for (const s of slugs) writer.enqueue(hb(s, { version: '0' }), clock.now());
    await writer.flush();
    calls.length = 0;
    most = 0;

    let release = () => {};
    hold = new Promise<void>((r) => {
      release = r;
    });
    clock.advance(10);
    for (const s of slugs) writer.enqueue(hb(s, { version: '1' }), clock.now());
    const flushed = writer.flush();
    await waitFor(() => calls.length === 2);
    // Both are under way; the first project beats again meanwhile.
    clock.advance(10);
    writer.enqueue(hb(slugs[0] as string, { version: '2' }), clock.now());
    expect(running).toBe(2);
    release();
    await flushed;

    expect(most).toBe(2);
    const [first, second] = calls as [string[], string[]];
    expect(first.filter((s) => second.includes(s))).toEqual([]);
    // The refreshed project was never in two writes at once: its newer beat went in a later batch.
    const withFirst = calls.flatMap((c, i) => (c.includes(slugs[0] as string) ? [i] : []));
    expect(withFirst).toHaveLength(2);
    expect(withFirst[0]).toBe(0);
    expect(withFirst[1]).toBeGreaterThanOrEqual(2);
    expect(writer.pending).toBe(0);
    const rows = await query<{ slug: string; version: string | null }>(
      database.db,
      sql`select slug, version from projects where slug = any(${sql.param(slugs)}::text[]) order by slug`,
    );
    expect(Object.fromEntries(rows.map((r) => [r.slug, r.version]))).toEqual(
      Object.fromEntries(slugs.map((s, i) => [s, i === 0 ? '2' : '1'])),
    );
  });
});

describe.each(ENGINES)('HeartbeatWriter with a heartbeat the database refuses, on $name', (engine) => {
  let testDb: TestDatabase;
  let database: DatabaseHandle;
  beforeAll(async () => {
    testDb = await engine.create();
    database = await openDatabase({ databaseUrl: testDb.url, dataDir: '' });
    await database.migrate();
  });
  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
  });

  // These bypass the intake's check, as a heartbeat from a path that forgot it would.
  const refused: Array<[string, Partial<Heartbeat>]> = [
    ['NUL in text', { version: '1.0\u0000' }],
    ['a lone surrogate', { name: 'Zo\ud800' }],
    ['NUL in jsonb', { tags: ['ok', 'a\u0000b'] }],
  ];

  it.each(refused)(
    'writes the good rows of the batch, drops and counts the one with %s, and goes on',
    async (_what, bad) => {
      const { clock, writer, counter } = makeWriter({ db: database.db });
      const good = Array.from({ length: 5 }, () => slugOf('good'));
      const poisoned = slugOf('poisoned');
      for (const s of good.slice(0, 2)) writer.enqueue(hb(s, { version: '1' }), clock.now());
      writer.enqueue(hb(poisoned, bad), clock.now());
      for (const s of good.slice(2)) writer.enqueue(hb(s, { version: '1' }), clock.now());

      await writer.flush();
      expect(writer.pending).toBe(0);
      for (const s of good) expect((await row(s, database.db))?.version).toBe('1');
      expect(await row(poisoned, database.db)).toBeUndefined();
      expect(await counter('federation_heartbeats_rejected_total', { reason: 'invalid' })).toBe(1);
      expect(await counter('federation_heartbeats_written_total')).toBe(good.length);
      expect(writer.health().status).toBe('ok');

      clock.advance(1000);
      for (const s of [...good, poisoned]) writer.enqueue(hb(s, { version: '2' }), clock.now());
      await writer.flush();
      for (const s of [...good, poisoned]) expect((await row(s, database.db))?.version).toBe('2');
      expect(await counter('federation_heartbeats_rejected_total', { reason: 'invalid' })).toBe(1);
    },
  );

  it('keeps a newer heartbeat of the project whose refused one was being written', async () => {
    const { clock, writer, state } = makeWriter({ db: database.db });
    const slug = slugOf('newer');
    writer.enqueue(hb(slug, { version: 'bad\u0000' }), clock.now());
    writer.enqueue(hb(slugOf('other')), clock.now());
    state.onExecute = () => {
      state.onExecute = undefined;
      clock.advance(10);
      writer.enqueue(hb(slug, { version: 'fixed' }), clock.now());
    };
    await writer.flush();
    expect((await row(slug, database.db))?.version).toBe('fixed');
  });

  it('still keeps everything pending when the connection fails while it isolates the refused row', async () => {
    const { clock, writer, state, counter } = makeWriter({ db: database.db });
    const good = slugOf('good');
    const poisoned = slugOf('poisoned');
    writer.enqueue(hb(good), clock.now());
    writer.enqueue(hb(poisoned, { version: '\u0000' }), clock.now());
    // The batch statement reaches the database and is refused; the connection is gone for the halves.
    state.onExecute = () => {
      state.onExecute = () => {
        state.down = true;
      };
    };
    await expect(writer.flush()).rejects.toThrow(/ECONNREFUSED/);
    expect(writer.pending).toBe(2);
    expect(writer.health().status).toBe('degraded');
    expect(await counter('federation_heartbeats_rejected_total', { reason: 'invalid' })).toBe(0);

    state.onExecute = undefined;
    state.down = false;
    await writer.flush();
    expect(writer.pending).toBe(0);
    expect(await row(good, database.db)).toBeDefined();
    expect(await row(poisoned, database.db)).toBeUndefined();
    expect(await counter('federation_heartbeats_rejected_total', { reason: 'invalid' })).toBe(1);
    expect(writer.health().status).toBe('ok');
  });
});
