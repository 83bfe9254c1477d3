/** Deadlines are kept in units of this many milliseconds, rounded down (never later than queued). */
const UNIT_MS = 10;
/** Ids beyond this are not remembered (their superseded deadlines are looked up instead): 32 MiB at most. */
export const KNOWN_DEADLINES_MAX_IDS = 8 * 1024 * 1024;
const INITIAL_IDS = 64 * 1024;

/**
 * The latest deadline this replica queued for each project whose heartbeat it wrote through the
 * common path, by project id: 4 bytes a project.
 *
 * Every heartbeat queues its deadline, so almost every id a sweep takes from the queue has been
 * superseded by a later heartbeat. A sweep used to look each one up in `projects` to find out,
 * which at 1,000,000 projects was as many lookups a second as heartbeats, on the sweeper's path.
 * An id for which this replica knows it queued a later deadline is dropped without a lookup: that
 * later entry is in the queue (or being handled by whichever sweep took it), and every heartbeat
 * after it queued its own. Ids it does not know (written by another replica, before a restart, or
 * by the locked path) are looked up as before.
 */
export class KnownDeadlines {
  readonly #epochMs: number;
  readonly #maxIds: number;
  #units = new Uint32Array(INITIAL_IDS);

  constructor(startMs: number, maxIds = KNOWN_DEADLINES_MAX_IDS) {
    // A day before start, so that heartbeats received (and deadlines due) a little earlier still fit.
    this.#epochMs = startMs - 86_400_000;
    this.#maxIds = maxIds;
  }

  /** Records `id`'s deadline, at `deadlineMs`, queued by the write of it that committed last. */
  record(id: number, deadlineMs: number): void {
    if (!Number.isInteger(id) || id <= 0 || id >= this.#maxIds) return;
    const units = Math.floor((deadlineMs - this.#epochMs) / UNIT_MS);
    if (!(units > 0 && units < 0xffffffff)) return;
    if (id >= this.#units.length) {
      let size = this.#units.length;
      while (size <= id) size *= 2;
      const grown = new Uint32Array(Math.min(size, this.#maxIds));
      grown.set(this.#units);
      this.#units = grown;
    }
    // The latest write's, not the largest: a deadline that moved earlier (a shorter interval_s) is
    // the one the queue must keep. Writes of one id are recorded in commit order (one batch at a time).
    this.#units[id] = units;
  }

  /** Records the `id:deadline-ms` pairs, comma-separated, that a heartbeat write returned. */
  recordPairs(pairs: string): void {
    let start = 0;
    while (start < pairs.length) {
      let end = pairs.indexOf(',', start);
      if (end < 0) end = pairs.length;
      const colon = pairs.indexOf(':', start);
      if (colon > start && colon < end) {
        this.record(Number(pairs.slice(start, colon)), Number(pairs.slice(colon + 1, end)));
      }
      start = end + 1;
    }
  }

  /** Whether this replica queued a deadline for `id` later than `dueMs`. */
  laterThan(id: number, dueMs: number): boolean {
    const units = this.#units[id];
    if (units === undefined || units === 0) return false;
    return this.#epochMs + units * UNIT_MS > dueMs;
  }
}
