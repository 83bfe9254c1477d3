import type { FastifyBaseLogger } from 'fastify';
import type { CatalogService } from '../catalog/catalog-service.ts';
import { HEARD_KEY, type HeartbeatRowFields, heartbeatRowJsonAt } from '../catalog/heartbeat-write.ts';
import { DEGRADED_FACTOR } from '../catalog/status-rule.ts';
import type { Clock } from '../clock.ts';
import { DEFAULT_BUFFER_MAX_BYTES } from '../config.ts';
import type { IntegrationsSink } from '../core.ts';
import { causes } from '../errors.ts';
import type { CheckResult } from '../health.ts';
import type { Heartbeat } from '../protocol/index.ts';
import type { HeartbeatRejections, PresenceMetrics } from './presence-metrics.ts';

/** Rows per statement: a flush larger than this continues right away with the rest. */
export const DEFAULT_MAX_BATCH_ROWS = 10_000;
/** A project's integrations are handed to the sinks again after this long even if unchanged. */
export const INTEGRATIONS_REFRESH_MS = 60_000;
export const MAX_RETRY_DELAY_MS = 5_000;
/** How long close() keeps trying to write what is pending before giving up. */
export const CLOSE_FLUSH_DEADLINE_MS = 10_000;

/**
 * A buffered heartbeat, as compact as it can be (a fleet starting at once can leave a million of them
 * pending): its row for the database as one JSON string (`heartbeatRowJsonAt`; in a small buffer,
 * the heartbeat until the row is first needed), the receive time,
 * and its integrations (undefined when it lists none). Every field is set by the constructor, so each entry is one object of one shape
 * (a property added later took a 40-byte side array in a third of them), and the times are counted
 * from the writer's `epochMs`: small integers V8 keeps in the object, where epoch milliseconds took
 * a 16-byte box each (a heap snapshot at a million first heartbeats). Past 24 days of uptime they
 * outgrow that and are boxed again, which costs memory, not correctness.
 */
export class PendingHeartbeat {
  /** Taken into a batch being written: a heartbeat replacing it stands only for itself, unless that write fails. */
  picked = false;
  /** Replacing a picked entry: its `heardMs`, taken back if the write fails. */
  heardIfUnwritten: number | undefined = undefined;
  /** When the first heartbeat this entry stands for was received (its row's `heard_at`), from `epochMs`. */
  heardMs: number;
  /**
   * Its row, or (while the buffer is small, see LAZY_ROWS_BELOW) the fields to build it from: only
   * those the row holds, so a heartbeat's other fields are not kept past its check.
   */
  #row: string | HeartbeatRowFields;

  constructor(
    row: string | HeartbeatRowFields,
    /** When it was received, in milliseconds from the writer's `epochMs`. */
    readonly receivedAtMs: number,
    /** Its approximate size, counted against the byte budget. */
    readonly bytes: number,
    readonly integrations: Heartbeat['integrations'] | undefined,
  ) {
    this.#row = row;
    this.heardMs = receivedAtMs;
  }

  /** Its row for the database (`heartbeatRowJsonAt`), built now if it was not yet. */
  json(epochMs: number): string {
    if (typeof this.#row !== 'string') this.#row = heartbeatRowJsonAt(this.#row, epochMs + this.receivedAtMs);
    return this.#row;
  }
}

/**
 * Below this many projects pending, a heartbeat that replaces a buffered one keeps its row unbuilt
 * until it is written: a project beating faster than the writer writes is likely to be replaced
 * again, and building every row it replaced took a fifth of the intake (a profile of 10,000 projects
 * beating as fast as they can). A project's first heartbeat in the buffer is built at once, as is
 * every one above this: the compact row is what lets a million first heartbeats wait in under
 * 500 MB, and a flush of a steady fleet then does not build thousands of rows in one go.
 */
export const LAZY_ROWS_BELOW = 20_000;

function fieldsOf(heartbeat: Heartbeat): HeartbeatRowFields {
  return {
    health: heartbeat.state === 'leaving' ? 'leaving' : (heartbeat.health ?? 'ok'),
    version: heartbeat.version ?? null,
    interval_s: heartbeat.interval_s ?? null,
    name: heartbeat.name ?? null,
    hub_url: heartbeat.hub_url,
    mesh_namespace: heartbeat.mesh_namespace,
    tags: heartbeat.tags ?? null,
  };
}

function pendingOf(
  heartbeat: Heartbeat,
  receivedAt: Date,
  bytes: number,
  epochMs: number,
  lazy: boolean,
): PendingHeartbeat {
  const receivedMs = receivedAt.getTime();
  return new PendingHeartbeat(
    lazy ? fieldsOf(heartbeat) : heartbeatRowJsonAt(fieldsOf(heartbeat), receivedMs),
    receivedMs - epochMs,
    bytes,
    heartbeat.integrations,
  );
}

export interface HeartbeatWriterOptions {
  /** Stores each batch (one statement in the common case) and claims the transitions heartbeats make. */
  catalog: Pick<CatalogService, 'writeHeartbeats'>;
  clock: Clock;
  log: FastifyBaseLogger;
  metrics: PresenceMetrics;
  rejections: HeartbeatRejections;
  autoRegister: boolean;
  flushIntervalMs: number;
  bufferMax: number;
  /** Approximate bytes of pending heartbeats (their payload sizes) beyond which new projects are refused. */
  bufferMaxBytes?: number;
  maxBatchRows?: number;
  /**
   * Batches written at once, on disjoint projects (default 1). With PostgreSQL, two: one statement
   * waits on its commit's WAL flush and on rows the sweeper holds while the other runs, so a writer
   * behind catches up on both cores instead of one. A write beside another starts only when a whole
   * batch waits: a writer keeping up (few projects beating fast, or a steady fleet) writes one batch
   * at a time, each holding more of the heartbeats it coalesces, and leaves a core to the intake.
   */
  concurrency?: number;
  /**
   * A heartbeat arriving longer than this after the one it replaces in the buffer (the degraded
   * threshold, or 1.5x the project's interval_s) starts a row heard from itself (default 45 s).
   */
  silenceMs?: number;
  /** Below this many projects pending, a replacing heartbeat's row is built when first written (default LAZY_ROWS_BELOW). */
  lazyRowsBelow?: number;
  /** Read at every flush, so sinks registered later are seen (app.integrationSinks). */
  integrationSinks?: readonly IntegrationsSink[];
}

interface WrittenRow {
  slug: string;
  written: boolean;
  known: boolean;
  inserted: boolean;
}

type Batch = Array<[string, PendingHeartbeat]>;

export interface DataError {
  code: string;
  message: string;
}

/** A heartbeat the database refused, and why. */
type Refused = [slug: string, why: DataError];

/**
 * The PostgreSQL data exception (SQLSTATE class 22: NUL in text, a lone surrogate in JSON, …) behind
 * an error, found through drizzle's wrapping `cause`s; undefined for anything else, such as a lost
 * connection.
 */
export function dataError(err: unknown): DataError | undefined {
  for (const e of causes(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code)) {
      return { code, message: String((e as { message?: unknown }).message) };
    }
  }
  return undefined;
}

/** A heartbeat's size when no raw message is at hand (HTTP, tests): its JSON length. */
export function estimateBytes(heartbeat: Heartbeat): number {
  return JSON.stringify(heartbeat).length;
}

/**
 * Coalesces heartbeats per project (the latest wins) and writes them in batches, one statement per
 * flush, instead of one UPDATE and commit per message. While the database is unreachable it keeps
 * the latest heartbeat of each project (bounded) and retries with backoff.
 */
export class HeartbeatWriter {
  readonly #o: Required<Omit<HeartbeatWriterOptions, 'integrationSinks'>> & {
    integrationSinks: readonly IntegrationsSink[];
  };
  /** Heartbeats of projects not yet found unknown: written by the next batches, oldest first. */
  readonly #pending = new Map<string, PendingHeartbeat>();
  /**
   * Heartbeats of projects a batch found unregistered (auto-registration on): registered one batch
   * at a time between rounds of `#pending`, so that a fleet registering at once never holds back the
   * heartbeats of projects already registered (whose deadlines run), only its own registration.
   */
  readonly #unregistered = new Map<string, PendingHeartbeat>();
  /** Batches of `#pending` left in this round before a registration batch takes its turn. */
  #knownBatchesLeft = 0;
  /** Slugs of the batches being written: a concurrent batch skips them (each project in one at most). */
  readonly #inFlight = new Set<string>();
  /** The writes in progress (at most `concurrency`). */
  readonly #writes = new Set<Promise<void>>();
  /** Integrations are handed to the sinks one batch at a time (two batches' edges could deadlock). */
  #handOver: Promise<void> = Promise.resolve();
  readonly #handedOver = new Map<string, { key: string; at: number }>();
  /** How long the last successful write took, in ms (`backlogMs`). */
  #lastWriteMs = 0;
  /** Sum of the pending entries' bytes. */
  #bytes = 0;
  /** The origin of the entries' times: a day before the writer started (see PendingHeartbeat). */
  readonly #epochMs: number;
  #timer: NodeJS.Timeout | undefined;
  #timerDue = 0;
  /** Failed attempts in a row: writes failing together (concurrency > 1) count as one attempt. */
  #failures = 0;
  /** Bumped at each counted failure; a write counts its failure only if none was counted since it began. */
  #failuresCounted = 0;
  #failingSince: Date | undefined;
  #lastError: string | undefined;
  #closed = false;

  constructor(opts: HeartbeatWriterOptions) {
    this.#o = {
      maxBatchRows: DEFAULT_MAX_BATCH_ROWS,
      concurrency: 1,
      silenceMs: 45_000,
      lazyRowsBelow: LAZY_ROWS_BELOW,
      bufferMaxBytes: DEFAULT_BUFFER_MAX_BYTES,
      integrationSinks: [],
      ...opts,
    };
    this.#epochMs = opts.clock.now().getTime() - 86_400_000;
  }

  /** Projects with a heartbeat not yet written. */
  get pending(): number {
    return this.#pending.size + this.#unregistered.size;
  }

  /**
   * Whether the buffer holds a heartbeat of `slug` (pending, or in a write in progress) that keeps
   * its project from being silent at `deadline`: one first heard by then (and, while writes fail,
   * received less than a degraded threshold, `silenceMs`, ago). A held heartbeat heard only after
   * the deadline is a real silence; one older than a threshold whose write keeps failing no longer
   * speaks for the project.
   */
  holds(slug: string, deadline: Date): boolean {
    const entry = this.#pending.get(slug) ?? this.#unregistered.get(slug);
    if (!entry) return false;
    // An entry that replaced one being written stands for itself only, but the one being written
    // was heard earlier and lands first: it is what speaks for the project until then.
    const heardMs =
      entry.heardIfUnwritten === undefined ? entry.heardMs : Math.min(entry.heardMs, entry.heardIfUnwritten);
    if (heardMs > deadline.getTime() - this.#epochMs) return false;
    // While writes succeed, however far behind they are, it will be written: the project was heard,
    // and judging it silent because this service is slow would be a false offline (a fleet's
    // restart, a slow database). Only a write that keeps failing lets it lapse.
    if (this.#failures === 0) return true;
    return this.#o.clock.now().getTime() - this.#epochMs - entry.receivedAtMs < this.#o.silenceMs;
  }

  /**
   * About how long what is pending now takes to write, in ms: its batches times the last write's
   * duration, shared by the writes that run side by side. A sweep waits at least this long before
   * it looks again at a project it left to its buffered heartbeat (0 when nothing is pending).
   */
  get backlogMs(): number {
    if (this.pending === 0) return 0;
    return (Math.ceil(this.pending / this.#o.maxBatchRows) * this.#lastWriteMs) / this.#o.concurrency;
  }

  /** Of `pending`, the projects found unregistered and waiting for their registration batch. */
  get unregistered(): number {
    return this.#unregistered.size;
  }

  /** Approximate bytes of the heartbeats not yet written. */
  get pendingBytes(): number {
    return this.#bytes;
  }

  get failing(): boolean {
    return this.#failures > 0;
  }

  /**
   * Buffers a heartbeat received at `receivedAt` (the service's clock), `bytes` being its approximate
   * size (the raw message's length where there is one). Returns false, and counts it, when a new
   * project would exceed `bufferMax` projects or `bufferMaxBytes` in all. A project already pending
   * is always replaced by its newer heartbeat, even past the byte budget: it is already held, and
   * dropping its latest beat could turn it offline while it beats.
   */
  enqueue(heartbeat: Heartbeat, receivedAt: Date, bytes: number = estimateBytes(heartbeat)): boolean {
    const slug = heartbeat.project_slug;
    const queue = this.#unregistered.has(slug) ? this.#unregistered : this.#pending;
    const current = queue.get(slug);
    if (current) {
      const at = receivedAt.getTime() - this.#epochMs;
      if (current.receivedAtMs <= at) {
        const entry = pendingOf(
          heartbeat,
          receivedAt,
          bytes,
          this.#epochMs,
          this.pending < this.#o.lazyRowsBelow,
        );
        // It stands for the beats it replaces, unless those are being written now, or it comes after
        // a silence the status rule would count (a project that crashed and came back while nothing
        // could be written must not look heard all along).
        const silenceMs = heartbeat.interval_s
          ? heartbeat.interval_s * 1000 * DEGRADED_FACTOR
          : this.#o.silenceMs;
        if (at - current.receivedAtMs > silenceMs) {
          // Heard from this heartbeat on only.
        } else if (current.picked) entry.heardIfUnwritten = current.heardMs;
        else {
          entry.heardMs = current.heardMs;
          if (current.heardIfUnwritten !== undefined) entry.heardIfUnwritten = current.heardIfUnwritten;
        }
        queue.set(slug, entry);
        this.#bytes += bytes - current.bytes;
      }
      return true;
    }
    if (this.#closed || this.pending >= this.#o.bufferMax || this.#bytes + bytes > this.#o.bufferMaxBytes) {
      this.#o.rejections.reject(
        'buffer_full',
        { slug, pending: this.pending, pending_bytes: this.#bytes },
        this.#closed
          ? 'the writer is shut down'
          : this.pending >= this.#o.bufferMax
            ? `the heartbeat buffer is full (${this.#o.bufferMax} projects waiting)`
            : `the heartbeat buffer is full (${this.#bytes} of ${this.#o.bufferMaxBytes} bytes waiting)`,
      );
      return false;
    }
    this.#pending.set(slug, pendingOf(heartbeat, receivedAt, bytes, this.#epochMs, false));
    this.#bytes += bytes;
    this.#schedule(this.#failures === 0 ? this.#o.flushIntervalMs : this.#retryDelay());
    return true;
  }

  /** Writes everything pending now; rejects if the database refuses (what failed stays pending). */
  async flush(): Promise<void> {
    // Bounded, so that a steady inflow cannot keep a caller waiting forever.
    let launches = 2 * Math.ceil(this.pending / this.#o.maxBatchRows) + 2 + this.#o.concurrency;
    while (this.pending > 0) {
      while (launches > 0 && this.#launch()) launches -= 1;
      if (this.#writes.size === 0) break;
      await Promise.race(this.#writes);
    }
    await Promise.all(this.#writes);
  }

  /** Stops the timer and writes what is pending, retrying until CLOSE_FLUSH_DEADLINE_MS has passed. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clearTimer();
    const deadline = Date.now() + CLOSE_FLUSH_DEADLINE_MS;
    let delay = 100;
    for (;;) {
      try {
        await this.flush();
        return;
      } catch (err) {
        if (Date.now() + delay > deadline) {
          this.#o.log.error(
            { err, lost: this.pending },
            'could not write pending heartbeats before shutdown',
          );
          return;
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  health(): CheckResult {
    if (this.#failures === 0) return { status: 'ok', pending: this.pending, pending_bytes: this.#bytes };
    return {
      status: 'degraded',
      pending: this.pending,
      pending_bytes: this.#bytes,
      failing_since: this.#failingSince?.toISOString(),
      consecutive_failures: this.#failures,
      last_error: this.#lastError,
      message: 'heartbeats cannot be written; the latest per project is kept and retried',
    };
  }

  #retryDelay(): number {
    return Math.min(this.#o.flushIntervalMs * 2 ** this.#failures, MAX_RETRY_DELAY_MS);
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    const due = Date.now() + delayMs;
    if (this.#timer && this.#timerDue <= due) return;
    this.#clearTimer();
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#backgroundFlush();
    }, delayMs);
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Starts as many writes as `concurrency` allows and pending heartbeats fill. */
  #backgroundFlush(): void {
    while (this.#launch()) {}
  }

  /**
   * Starts the next write when fewer than `concurrency` are in progress and a heartbeat not already
   * being written is pending (a whole batch of them beside a write in progress); returns it (undefined when none started). When it ends, what is pending
   * is written next at once, or after a backoff when it failed.
   */
  #launch(): Promise<void> | undefined {
    if (this.#writes.size >= this.#o.concurrency || this.pending <= this.#inFlight.size) return undefined;
    if (this.#writes.size > 0 && this.pending - this.#inFlight.size < this.#o.maxBatchRows) return undefined;
    const write = this.#writeNext();
    if (!write) return undefined;
    const done = write.then(
      () => {
        this.#writes.delete(done);
        if (this.pending > this.#inFlight.size) this.#schedule(0);
      },
      (err: unknown) => {
        this.#writes.delete(done);
        // #writeBatch recorded the failure; try again later with what is pending.
        if (this.pending > 0) this.#schedule(this.#retryDelay());
        throw err;
      },
    );
    // A background write's failure is recorded and retried; flush() awaits `done` itself.
    done.catch(() => {});
    this.#writes.add(done);
    return done;
  }

  /**
   * The next batch: in rounds, every batch of registered projects' heartbeats pending when the round
   * began, then one batch of registrations. A registered project's heartbeat so waits at most one
   * registration batch, however many projects are still to be registered.
   */
  #writeNext(): Promise<void> | undefined {
    const known = this.#pickable(this.#pending);
    const registering = this.#pickable(this.#unregistered);
    if (known && (this.#knownBatchesLeft > 0 || !registering)) {
      this.#knownBatchesLeft = Math.max(0, this.#knownBatchesLeft - 1);
      return this.#writeBatch(known, this.#pending, false);
    }
    this.#knownBatchesLeft = Math.ceil(this.#pending.size / this.#o.maxBatchRows);
    if (registering) return this.#writeBatch(registering, this.#unregistered, true);
    return undefined;
  }

  /**
   * Up to maxBatchRows heartbeats of `queue`, oldest first, of projects no write in progress holds,
   * sorted by slug for a stable lock order; undefined when there are none.
   */
  #pickable(queue: Map<string, PendingHeartbeat>): Batch | undefined {
    if (queue.size === 0) return undefined;
    const batch: Batch = [];
    for (const entry of queue) {
      if (this.#inFlight.has(entry[0])) continue;
      batch.push(entry);
      if (batch.length >= this.#o.maxBatchRows) break;
    }
    if (batch.length === 0) return undefined;
    batch.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return batch;
  }

  /**
   * One statement for `batch` (of `queue`). `register`: the batch registers the projects it does not
   * find (the `#unregistered` queue); otherwise those move to `#unregistered` when auto-registration
   * is on. Its projects are held from other writes until it ends.
   */
  async #writeBatch(batch: Batch, queue: Map<string, PendingHeartbeat>, register: boolean): Promise<void> {
    for (const [slug, entry] of batch) {
      this.#inFlight.add(slug);
      entry.picked = true;
    }
    let written: Batch = [];
    let ok = false;
    try {
      written = await this.#writeHeld(batch, queue, register);
      ok = true;
    } finally {
      for (const [slug, entry] of batch) {
        this.#inFlight.delete(slug);
        entry.picked = false;
        const current = this.#pending.get(slug) ?? this.#unregistered.get(slug);
        if (!current || current === entry || current.heardIfUnwritten === undefined) continue;
        // Not written: the heartbeat that replaced it stands for both again.
        if (!ok) current.heardMs = Math.min(current.heardMs, current.heardIfUnwritten);
        current.heardIfUnwritten = undefined;
      }
    }
    // After the batch's projects are released: while a sink is slow, they are free for the next
    // write, and `pending - #inFlight.size` (the whole-batch rule in #launch) counts only what waits.
    // The write still counts against `concurrency` until its integrations are handed over.
    const handOver = this.#handOver.then(() => this.#handOverIntegrations(written));
    this.#handOver = handOver.catch(() => {});
    await handOver;
  }

  /** Writes the batch and settles the queue; returns the entries written (for the integrations). */
  async #writeHeld(batch: Batch, queue: Map<string, PendingHeartbeat>, register: boolean): Promise<Batch> {
    // Set here, at every write attempt (successful or not), rather than once per received heartbeat.
    this.#o.metrics.pending.set(this.pending);
    this.#o.metrics.pendingBytes.set(this.#bytes);
    const stopTimer = this.#o.metrics.flushSeconds.startTimer();
    const counted = this.#failuresCounted;
    let rows: WrittenRow[];
    let refused: Refused[];
    let tookS = 0;
    try {
      ({ rows, refused } = await this.#writeIsolatingRefused(batch, register));
    } catch (err) {
      this.#o.metrics.flushes.inc({ result: 'error' });
      if (this.#failures === 0) {
        this.#failingSince = this.#o.clock.now();
        this.#o.log.warn(
          { err, pending: this.pending },
          'heartbeat write failed; keeping the latest per project and retrying',
        );
      }
      // Two writes failing together (the database went away under both) are one failed attempt:
      // counting each would double the backoff at every retry.
      if (counted === this.#failuresCounted) {
        this.#failures += 1;
        this.#failuresCounted += 1;
      }
      this.#lastError = (err as Error).message;
      throw err;
    } finally {
      tookS = stopTimer();
    }
    if (this.#failures > 0) {
      this.#o.log.info({ pending: this.pending }, 'heartbeat writes recovered');
    }
    this.#lastWriteMs = tookS * 1000;
    this.#failures = 0;
    this.#failingSince = undefined;
    this.#lastError = undefined;
    this.#o.metrics.flushes.inc({ result: 'ok' });

    const unregistered = new Set<string>();
    if (!register && this.#o.autoRegister) {
      for (const r of rows) if (!r.known) unregistered.add(r.slug);
    }
    for (const [slug, entry] of batch) {
      const current = queue.get(slug);
      if (unregistered.has(slug)) {
        // Not registered yet: its latest heartbeat waits for a registration batch.
        if (current) {
          queue.delete(slug);
          this.#unregistered.set(slug, current);
        }
      } else if (current === entry) {
        queue.delete(slug);
        this.#bytes -= entry.bytes;
      } else if (current) {
        // A newer heartbeat arrived during the write: it waits behind the projects not yet written,
        // or a fleet refreshing faster than one batch writes would keep the same batch at the front
        // and starve every project after it (they would turn offline while beating).
        queue.delete(slug);
        queue.set(slug, current);
      }
    }
    // Left the buffer with the rest of the batch: retrying them could only fail again and hold every
    // batch after them back (a newer heartbeat of the same project stays, as above).
    for (const [slug, why] of refused) {
      this.#o.rejections.reject(
        'invalid',
        { slug, code: why.code },
        `the database refused the heartbeat of ${slug}: ${why.message}`,
      );
    }
    this.#o.metrics.pending.set(this.pending);
    this.#o.metrics.pendingBytes.set(this.#bytes);

    const bySlug = new Map(batch);
    const written: Batch = [];
    const unknown: string[] = [];
    let inserted = 0;
    for (const r of rows) {
      const entry = bySlug.get(r.slug);
      if (!entry) continue;
      if (r.written) written.push([r.slug, entry]);
      else if (!r.known && !unregistered.has(r.slug)) unknown.push(r.slug);
      if (r.inserted) inserted += 1;
    }
    this.#o.metrics.written.inc(written.length);
    if (inserted > 0) {
      this.#o.metrics.autoRegistered.inc(inserted);
      this.#o.log.info({ count: inserted }, 'registered projects from their first heartbeat');
    }
    if (unknown.length > 0) {
      this.#o.rejections.reject(
        'unknown_project',
        { slugs: unknown.slice(0, 10) },
        `${unknown.length} heartbeat(s) from unregistered projects (FED_AUTO_REGISTER is off)`,
        unknown.length,
      );
    }
    return written;
  }

  /**
   * Writes the batch; when the database refuses its data (SQLSTATE class 22), writes each half again,
   * down to the single rows it refuses, so that one heartbeat that slipped past the checks costs a few
   * statements and its own write, not every write after it. Any other failure is thrown, to be retried.
   */
  async #writeIsolatingRefused(
    batch: Batch,
    register: boolean,
  ): Promise<{ rows: WrittenRow[]; refused: Refused[] }> {
    try {
      return { rows: await this.#write(batch, register), refused: [] };
    } catch (err) {
      const why = dataError(err);
      if (!why) throw err;
      const [only] = batch;
      if (batch.length === 1 && only) return { rows: [], refused: [[only[0], why]] };
      const half = Math.ceil(batch.length / 2);
      const first = await this.#writeIsolatingRefused(batch.slice(0, half), register);
      const second = await this.#writeIsolatingRefused(batch.slice(half), register);
      return { rows: [...first.rows, ...second.rows], refused: [...first.refused, ...second.refused] };
    }
  }

  async #write(batch: Batch, register: boolean): Promise<WrittenRow[]> {
    // A row standing for several heartbeats says since when the project was heard (HeartbeatRow.heard_at).
    const rows = batch.map(
      ([slug, e]) =>
        [
          slug,
          e.heardMs < e.receivedAtMs
            ? `{"${HEARD_KEY}":${this.#epochMs + e.heardMs},${e.json(this.#epochMs).slice(1)}`
            : e.json(this.#epochMs),
        ] as const,
    );
    const result = await this.#o.catalog.writeHeartbeats(rows, register, { unregistered: register });
    return batch.map(([slug]) => ({
      slug,
      written: !result.notWritten.has(slug),
      known: !result.unknown.has(slug),
      inserted: result.inserted.has(slug),
    }));
  }

  async #handOverIntegrations(written: Batch): Promise<void> {
    const sinks = this.#o.integrationSinks;
    if (sinks.length === 0) return;
    const now = this.#o.clock.now().getTime();
    const batch: Parameters<IntegrationsSink>[0] = [];
    for (const [slug, { integrations, receivedAtMs }] of written) {
      if (!integrations) continue;
      const key = JSON.stringify(integrations);
      const last = this.#handedOver.get(slug);
      if (last && last.key === key && now - last.at < INTEGRATIONS_REFRESH_MS) continue;
      this.#handedOver.set(slug, { key, at: now });
      batch.push({ slug, integrations, at: new Date(this.#epochMs + receivedAtMs) });
    }
    if (batch.length === 0) return;
    for (const sink of sinks) {
      try {
        await sink(batch);
      } catch (err) {
        this.#o.log.error({ err, projects: batch.length }, 'an integrations sink failed');
      }
    }
  }
}
