import { describe, expect, it } from 'vitest';
import type { ProjectStatus } from '../protocol/index.ts';
import { uptimeFraction } from './history-service.ts';

const NOW = new Date('2025-01-08T00:00:00Z');
const minutesAgo = (m: number) => new Date(NOW.getTime() - m * 60_000);
const change = (from: ProjectStatus, to: ProjectStatus, m: number) => ({ from, to, at: minutesAgo(m) });
const HOUR = minutesAgo(60);
const LONG_AGO = new Date('2020-01-01T00:00:00Z');

describe('uptimeFraction', () => {
  it('counts online and degraded time within the window', () => {
    const changes = [
      change('offline', 'online', 60 * 10),
      change('online', 'degraded', 30),
      change('degraded', 'offline', 15),
    ];
    const base = {
      changes,
      statusBefore: undefined,
      currentStatus: 'offline' as const,
      createdAt: LONG_AGO,
      now: NOW,
    };
    expect(uptimeFraction({ ...base, windowStart: HOUR })).toBeCloseTo(45 / 60, 6);
  });

  it('uses the status from before the window', () => {
    const base = {
      statusBefore: 'online' as const,
      currentStatus: 'online' as const,
      createdAt: LONG_AGO,
      now: NOW,
    };
    expect(uptimeFraction({ ...base, changes: [], windowStart: HOUR })).toBe(1);
    expect(
      uptimeFraction({ ...base, changes: [change('online', 'offline', 6)], windowStart: HOUR }),
    ).toBeCloseTo(0.9, 6);
    // With no earlier event, the first change's "from" is the status before it.
    expect(
      uptimeFraction({
        ...base,
        statusBefore: undefined,
        changes: [change('offline', 'online', 30)],
        windowStart: HOUR,
      }),
    ).toBeCloseTo(0.5, 6);
  });

  it('does not count time before the project existed', () => {
    const r = uptimeFraction({
      changes: [change('offline', 'online', 9)],
      statusBefore: undefined,
      currentStatus: 'online',
      createdAt: minutesAgo(10),
      windowStart: HOUR,
      now: NOW,
    });
    expect(r).toBeCloseTo(0.9, 6);
  });

  it('is 0 for a project never heard from', () => {
    expect(
      uptimeFraction({
        changes: [],
        statusBefore: undefined,
        currentStatus: 'offline',
        createdAt: LONG_AGO,
        windowStart: HOUR,
        now: NOW,
      }),
    ).toBe(0);
  });
});
