import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LARGE_HEAP_BYTES, limitHeapGrowth, SMALL_HEAP_BYTES } from './heap-growth.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('limitHeapGrowth', () => {
  it('slows heap growth above the large mark and hands it back to V8 below the small one', () => {
    vi.useFakeTimers();
    let used = 50 * 1024 * 1024;
    const flags: string[] = [];
    const stop = limitHeapGrowth({
      usedHeapBytes: () => used,
      setV8Flags: (f) => flags.push(f),
      execArgv: [],
    });
    vi.advanceTimersByTime(3_000);
    expect(flags).toEqual([]);
    used = LARGE_HEAP_BYTES + 1;
    vi.advanceTimersByTime(1_000);
    expect(flags).toEqual(['--heap-growing-percent=5']);
    // Between the marks nothing changes either way (no flapping around one threshold).
    used = (LARGE_HEAP_BYTES + SMALL_HEAP_BYTES) / 2;
    vi.advanceTimersByTime(5_000);
    expect(flags).toEqual(['--heap-growing-percent=5']);
    used = SMALL_HEAP_BYTES - 1;
    vi.advanceTimersByTime(1_000);
    expect(flags).toEqual(['--heap-growing-percent=5', '--heap-growing-percent=0']);
    used = LARGE_HEAP_BYTES * 2;
    vi.advanceTimersByTime(1_000);
    stop();
    expect(flags.at(-1)).toBe('--heap-growing-percent=0');
    const count = flags.length;
    vi.advanceTimersByTime(5_000);
    expect(flags).toHaveLength(count);
  });

  it("leaves an operator's own --heap-growing-percent alone", () => {
    vi.useFakeTimers();
    const flags: string[] = [];
    const stop = limitHeapGrowth({
      usedHeapBytes: () => LARGE_HEAP_BYTES * 2,
      setV8Flags: (f) => flags.push(f),
      execArgv: ['--heap-growing-percent=50'],
    });
    vi.advanceTimersByTime(5_000);
    stop();
    expect(flags).toEqual([]);
  });

  it('names a flag this Node has (setFlagsFromString ignores names it does not know)', () => {
    const options = spawnSync(process.execPath, ['--v8-options'], { encoding: 'utf8' }).stdout;
    expect(options).toMatch(/--heap-growing-percent \(/);
  });
});
