import v8 from 'node:v8';

/** Used heap above which the old generation grows by `LARGE_HEAP_GROWING_PERCENT` at a time. */
export const LARGE_HEAP_BYTES = 256 * 1024 * 1024;
/** Used heap below which V8's own growing factor is back. */
export const SMALL_HEAP_BYTES = 128 * 1024 * 1024;
export const LARGE_HEAP_GROWING_PERCENT = 5;
export const HEAP_CHECK_INTERVAL_MS = 1_000;

export interface HeapGrowthDeps {
  usedHeapBytes?: () => number;
  setV8Flags?: (flags: string) => void;
  intervalMs?: number;
  /** The process's own node flags: an operator's --heap-growing-percent is left alone. */
  execArgv?: readonly string[];
}

/**
 * Keeps a large heap from doubling before V8 collects it. With `--max-old-space-size=1536` V8 lets
 * the old generation grow to about 1.8 times what was live after the last full collection; that is
 * harmless for the service's usual 50 MB, but when a fleet's first heartbeats fill the writer's
 * buffer (400 MB live at a million projects) it made the process 1.1 GB of heap. Above
 * `LARGE_HEAP_BYTES` used, the heap grows by 5 % at a time (V8's `--heap-growing-percent`, read
 * at every collection), and below `SMALL_HEAP_BYTES` V8 chooses again: the steady state pays no
 * extra full collections for it. Returns a stop function.
 */
export function limitHeapGrowth(deps: HeapGrowthDeps = {}): () => void {
  const execArgv = deps.execArgv ?? process.execArgv;
  if (
    execArgv.some((a) => a.startsWith('--heap-growing-percent') || a.startsWith('--heap_growing_percent'))
  ) {
    return () => {};
  }
  const used = deps.usedHeapBytes ?? (() => v8.getHeapStatistics().used_heap_size);
  const setFlags = deps.setV8Flags ?? ((flags: string) => v8.setFlagsFromString(flags));
  let large = false;
  const check = () => {
    const bytes = used();
    const next = large ? bytes > SMALL_HEAP_BYTES : bytes > LARGE_HEAP_BYTES;
    if (next === large) return;
    large = next;
    setFlags(`--heap-growing-percent=${large ? LARGE_HEAP_GROWING_PERCENT : 0}`);
  };
  const timer = setInterval(check, deps.intervalMs ?? HEAP_CHECK_INTERVAL_MS);
  timer.unref();
  return () => {
    clearInterval(timer);
    if (large) setFlags('--heap-growing-percent=0');
  };
}
