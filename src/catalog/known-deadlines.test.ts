import { describe, expect, it } from 'vitest';
import { KnownDeadlines } from './known-deadlines.ts';

describe('KnownDeadlines', () => {
  const start = Date.parse('2026-01-01T00:00:00Z');

  it('keeps the latest deadline written, even when it moved earlier (a shorter interval_s)', () => {
    const known = new KnownDeadlines(start);
    known.record(7, start + 450_000);
    expect(known.laterThan(7, start + 100_000)).toBe(true);
    known.record(7, start + 75_000);
    // The entry queued at 75 s is the one that matters now: nothing later is known past it.
    expect(known.laterThan(7, start + 75_000)).toBe(false);
    expect(known.laterThan(7, start + 100_000)).toBe(false);
    expect(known.laterThan(7, start + 70_000)).toBe(true);
  });

  it('never says later for its own bucket, nor for ids it has not seen or cannot hold', () => {
    const known = new KnownDeadlines(start, 1000);
    known.recordPairs(`3:${start + 45_005},2000:${start + 45_000},bad,4:x`);
    // Rounded down to 10 ms: never later than the bucket end (45.1 s) its own entry is due at.
    expect(known.laterThan(3, start + 45_100)).toBe(false);
    expect(known.laterThan(3, start + 44_999)).toBe(true);
    expect(known.laterThan(2000, start)).toBe(false);
    expect(known.laterThan(4, start)).toBe(false);
    expect(known.laterThan(99, start)).toBe(false);
  });
});
