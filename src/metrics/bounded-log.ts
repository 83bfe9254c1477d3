import type { FastifyBaseLogger } from 'fastify';

export const DEFAULT_LOG_WINDOW_MS = 10_000;

/**
 * At most one warning per key per window (real time), so a publisher flooding bad metrics cannot flood
 * the log; the next warning of that key says how many were suppressed.
 */
export class BoundedLog {
  readonly #log: FastifyBaseLogger;
  readonly #windowMs: number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(log: FastifyBaseLogger, windowMs = DEFAULT_LOG_WINDOW_MS) {
    this.#log = log;
    this.#windowMs = windowMs;
  }

  warn(key: string, details: Record<string, unknown>, message: string): void {
    const now = performance.now();
    const entry = this.#last.get(key);
    if (entry && now - entry.at < this.#windowMs) {
      entry.suppressed += 1;
      return;
    }
    this.#last.set(key, { at: now, suppressed: 0 });
    const suppressed = entry?.suppressed ?? 0;
    this.#log.warn({ ...details, ...(suppressed ? { suppressed } : {}) }, message);
  }
}
