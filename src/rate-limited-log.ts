import type { FastifyBaseLogger } from 'fastify';
import { type Clock, systemClock } from './clock.ts';

export const DEFAULT_LOG_WINDOW_MS = 10_000;

/**
 * At most one warning per key per window, so that a flood of bad input cannot flood the log;
 * the next warning says how many were suppressed in between.
 */
export class RateLimitedLog {
  readonly #log: FastifyBaseLogger;
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(log: FastifyBaseLogger, clock: Clock = systemClock, windowMs = DEFAULT_LOG_WINDOW_MS) {
    this.#log = log;
    this.#clock = clock;
    this.#windowMs = windowMs;
  }

  /** Logs now, or counts the message as suppressed; returns whether it was logged. */
  warn(key: string, details: Record<string, unknown>, message: string): boolean {
    const now = this.#clock.now().getTime();
    const entry = this.#last.get(key);
    if (entry && now - entry.at < this.#windowMs) {
      entry.suppressed += 1;
      return false;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.#last.set(key, { at: now, suppressed: 0 });
    this.#log.warn({ ...details, ...(suppressed ? { suppressed } : {}) }, message);
    return true;
  }
}
