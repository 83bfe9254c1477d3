import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrayParam, type DatabaseHandle, openDatabase, query } from '../db/connection.ts';
import type { ProjectStatus } from '../protocol/index.ts';
import {
  computeStatus,
  type GuardState,
  guardedStatus,
  guardedStatusSql,
  type StatusInput,
  type Thresholds,
} from './status-rule.ts';

const NOW = new Date('2025-05-01T12:00:00.000Z');
const ago = (s: number) => new Date(NOW.getTime() - s * 1000);
const DEFAULTS: Thresholds = { degradedAfterS: 45, offlineAfterS: 90 };

describe('computeStatus', () => {
  const input = (ageS: number | null, extra: Partial<StatusInput> = {}): StatusInput => ({
    lastHeartbeatAt: ageS === null ? null : ago(ageS),
    reportedHealth: null,
    intervalS: null,
    ...extra,
  });

  it('applies the rule of DESIGN.md', () => {
    expect(computeStatus(input(null), NOW, DEFAULTS)).toBe('offline');
    expect(computeStatus(input(1), NOW, DEFAULTS)).toBe('online');
    expect(computeStatus(input(1, { reportedHealth: 'degraded' }), NOW, DEFAULTS)).toBe('degraded');
    expect(computeStatus(input(46), NOW, DEFAULTS)).toBe('degraded');
    expect(computeStatus(input(91), NOW, DEFAULTS)).toBe('offline');
    expect(computeStatus(input(91, { reportedHealth: 'degraded' }), NOW, DEFAULTS)).toBe('offline');
    // A project that said it is leaving is offline at once, whatever the age of that heartbeat.
    expect(computeStatus(input(1, { reportedHealth: 'leaving' }), NOW, DEFAULTS)).toBe('offline');
    expect(computeStatus(input(46), NOW, { degradedAfterS: 0, offlineAfterS: 90 })).toBe('online');
  });

  it('scales the thresholds with the announced interval (1.5× and 3×)', () => {
    expect(computeStatus(input(14, { intervalS: 10 }), NOW, DEFAULTS)).toBe('online');
    expect(computeStatus(input(16, { intervalS: 10 }), NOW, DEFAULTS)).toBe('degraded');
    expect(computeStatus(input(31, { intervalS: 10 }), NOW, DEFAULTS)).toBe('offline');
    expect(computeStatus(input(200, { intervalS: 100 }), NOW, DEFAULTS)).toBe('degraded');
  });
});

describe('guardedStatusSql agrees with guardedStatus', () => {
  let handle: DatabaseHandle;
  const AGES = [null, 0, 10, 14.9, 15, 16, 44, 45, 46, 89, 90, 91, 150, 180, 181, 1000];
  const HEALTH = [null, 'ok', 'degraded', 'leaving'];
  const INTERVALS = [null, 0.5, 10, 60];
  const STORED: ProjectStatus[] = ['online', 'degraded', 'offline'];
  const rows: Array<StatusInput & { slug: string; stored: ProjectStatus }> = [];

  beforeAll(async () => {
    handle = await openDatabase({ databaseUrl: 'memory://', dataDir: '' });
    await handle.migrate();
    let i = 0;
    for (const age of AGES)
      for (const reportedHealth of HEALTH)
        for (const intervalS of INTERVALS)
          for (const stored of STORED) {
            rows.push({
              slug: `p-${i++}`,
              stored,
              lastHeartbeatAt: age === null ? null : ago(age),
              reportedHealth,
              intervalS,
            });
          }
    const col = (f: (r: (typeof rows)[number]) => unknown) => arrayParam(rows.map(f));
    await query(
      handle.db,
      sql`insert into projects (slug, name, hub_url, mesh_namespace, status, last_heartbeat_at, reported_health, interval_s)
          select s, s, 'http://x', 'hub.x', st, at, h, iv
          from unnest(${col((r) => r.slug)}::text[], ${col((r) => r.stored)}::text[],
                      ${col((r) => r.lastHeartbeatAt?.toISOString() ?? null)}::timestamptz[],
                      ${col((r) => r.reportedHealth)}::text[], ${col((r) => r.intervalS)}::float8[])
            as u(s, st, at, h, iv)`,
    );
  });
  afterAll(async () => {
    await handle.close();
  });

  const guards: Array<[string, GuardState]> = [
    ['long-running, no hold', { heardSince: ago(100_000), holdAll: false }],
    ['started 20 s ago', { heardSince: ago(20), holdAll: false }],
    ['started 100 s ago', { heardSince: ago(100), holdAll: false }],
    ['just started', { heardSince: NOW, holdAll: false }],
    ['holding all', { heardSince: ago(100_000), holdAll: true }],
    ['started 20 s ago and holding', { heardSince: ago(20), holdAll: true }],
  ];
  const thresholds: Array<[string, Thresholds]> = [
    ['default thresholds', DEFAULTS],
    ['lateness off', { degradedAfterS: 0, offlineAfterS: 90 }],
    ['short thresholds', { degradedAfterS: 1, offlineAfterS: 2.5 }],
  ];

  for (const [tName, t] of thresholds) {
    for (const [gName, guard] of guards) {
      it(`${tName}, ${gName}`, async () => {
        const result = await query<{ slug: string; status: ProjectStatus }>(
          handle.db,
          sql`select slug, ${guardedStatusSql(NOW, t, guard)} as status from projects`,
        );
        const fromSql = new Map(result.map((r) => [r.slug, r.status]));
        const mismatches = rows
          .map((r) => ({ ...r, pure: guardedStatus(r.stored, r, NOW, t, guard), sql: fromSql.get(r.slug) }))
          .filter((r) => r.pure !== r.sql)
          .map(
            (r) =>
              `age=${r.lastHeartbeatAt ? (NOW.getTime() - r.lastHeartbeatAt.getTime()) / 1000 : null} health=${r.reportedHealth} interval=${r.intervalS} stored=${r.stored}: pure ${r.pure}, sql ${r.sql}`,
          );
        expect(mismatches).toEqual([]);
        expect(fromSql.size).toBe(rows.length);
      });
    }
  }
});
