import { type SQL, sql } from 'drizzle-orm';
import { arrayParam, type Database, query } from '../db/connection.ts';
import { InputError, NotFoundError } from '../errors.ts';
import { findUnstorableText } from '../protocol/index.ts';

export const OUTCOMES = ['ok', 'error', 'timeout', 'not_allowed', 'offline'] as const;
export type FinalOutcome = (typeof OUTCOMES)[number];
export type Outcome = FinalOutcome | 'pending';
export type RunStatus = 'running' | 'done';

export type Counts = Record<FinalOutcome, number> & { pending: number };

export interface TargetResult {
  slug: string;
  outcome: Outcome;
  result?: unknown;
  error?: string;
  /** null until the project answered, and for targets nothing was sent to. */
  durationMs: number | null;
}

export interface RunRecord {
  id: string;
  action: string;
  targets: unknown;
  params: unknown;
  timeoutMs: number;
  status: RunStatus;
  createdAt: Date;
  finishedAt: Date | null;
}

export interface RunView extends RunRecord {
  counts: Counts;
  results: TargetResult[];
}

export interface RunSummary extends RunRecord {
  counts: Counts;
}

export const MAX_RUN_PAGE = 200;

export const emptyCounts = (): Counts => ({
  ok: 0,
  error: 0,
  timeout: 0,
  not_allowed: 0,
  offline: 0,
  pending: 0,
});

export function countOutcomes(results: Iterable<Pick<TargetResult, 'outcome'>>): Counts {
  const counts = emptyCounts();
  for (const r of results) counts[r.outcome] += 1;
  return counts;
}

interface RunRow {
  id: string;
  action: string;
  targets: unknown;
  params: unknown;
  timeout_ms: number;
  status: RunStatus;
  created_at: string | Date;
  finished_at: string | Date | null;
}

const toRun = (r: RunRow): RunRecord => ({
  id: r.id,
  action: r.action,
  targets: r.targets,
  params: r.params,
  timeoutMs: r.timeout_ms,
  status: r.status,
  createdAt: new Date(r.created_at),
  finishedAt: r.finished_at === null ? null : new Date(r.finished_at),
});

const jsonOrNull = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));

function encodeRunCursor(r: RunRecord): string {
  return Buffer.from(JSON.stringify({ c: r.createdAt.toISOString(), i: r.id })).toString('base64url');
}

function decodeRunCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { c?: unknown; i?: unknown };
    if (
      typeof v.c === 'string' &&
      typeof v.i === 'string' &&
      !Number.isNaN(Date.parse(v.c)) &&
      findUnstorableText(v) === undefined
    ) {
      return { createdAt: v.c, id: v.i };
    }
  } catch {}
  throw new InputError('cursor is not one this server returned', { field: 'cursor' });
}

/** Fan-out runs and their per-project results in `fanout_runs` and `fanout_results`. */
export class FanoutService {
  readonly #db: Database;

  constructor(deps: { db: Database }) {
    this.#db = deps.db;
  }

  /** Stores a new run with one row per target (pending, or already decided: not_allowed, offline). */
  async createRun(run: Omit<RunRecord, 'status' | 'finishedAt'>, results: TargetResult[]): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await query(
        tx,
        sql`insert into fanout_runs (id, action, targets, params, timeout_ms, status, created_at)
            values (${run.id}, ${run.action}, ${JSON.stringify(run.targets)}::jsonb, ${jsonOrNull(run.params)}::jsonb,
                    ${run.timeoutMs}, 'running', ${run.createdAt.toISOString()})`,
      );
      if (results.length) await query(tx, this.#insertResults(run.id, results));
    });
  }

  #insertResults(runId: string, results: TargetResult[]): SQL {
    return sql`insert into fanout_results (run_id, slug, outcome, result, error, duration_ms)
      select ${runId}, u.slug, u.outcome, u.result::jsonb, u.error, u.duration_ms
      from unnest(${arrayParam(results.map((r) => r.slug))}::text[], ${arrayParam(results.map((r) => r.outcome))}::text[],
                  ${arrayParam(results.map((r) => jsonOrNull(r.result)))}::text[], ${arrayParam(results.map((r) => r.error ?? null))}::text[],
                  ${arrayParam(results.map((r) => r.durationMs))}::int[])
        as u(slug, outcome, result, error, duration_ms)`;
  }

  /** Writes answers in one statement; a target already decided (e.g. by a shutdown) is left alone. */
  async recordResults(runId: string, results: TargetResult[], db: Database = this.#db): Promise<void> {
    if (results.length === 0) return;
    await query(
      db,
      sql`update fanout_results r
          set outcome = u.outcome, result = u.result::jsonb, error = u.error, duration_ms = u.duration_ms
          from unnest(${arrayParam(results.map((r) => r.slug))}::text[], ${arrayParam(results.map((r) => r.outcome))}::text[],
                      ${arrayParam(results.map((r) => jsonOrNull(r.result)))}::text[], ${arrayParam(results.map((r) => r.error ?? null))}::text[],
                      ${arrayParam(results.map((r) => r.durationMs))}::int[])
            as u(slug, outcome, result, error, duration_ms)
          where r.run_id = ${runId} and r.slug = u.slug and r.outcome = 'pending'`,
    );
  }

  /** Records the last answers and marks the run done, together, so a reader never sees done with pending rows. */
  async finishRun(runId: string, lastResults: TargetResult[], finishedAt: Date): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await this.recordResults(runId, lastResults, tx as unknown as Database);
      await query(
        tx,
        sql`update fanout_results set outcome = 'timeout', error = 'no answer was recorded before the run ended'
            where run_id = ${runId} and outcome = 'pending'`,
      );
      await query(
        tx,
        sql`update fanout_runs set status = 'done', finished_at = ${finishedAt.toISOString()}
            where id = ${runId} and status = 'running'`,
      );
    });
  }

  async getRun(id: string): Promise<RunView> {
    const runs = await query<RunRow>(this.#db, sql`select * from fanout_runs where id = ${id}`);
    const row = runs[0];
    if (!row) throw new NotFoundError(`fan-out run ${id} does not exist`);
    const rows = await query<{
      slug: string;
      outcome: Outcome;
      result: unknown;
      error: string | null;
      duration_ms: number | null;
    }>(
      this.#db,
      sql`select slug, outcome, result, error, duration_ms from fanout_results where run_id = ${id} order by slug`,
    );
    const results: TargetResult[] = rows.map((r) => ({
      slug: r.slug,
      outcome: r.outcome,
      ...(r.result === null || r.result === undefined ? {} : { result: r.result }),
      ...(r.error === null ? {} : { error: r.error }),
      durationMs: r.duration_ms,
    }));
    return { ...toRun(row), counts: countOutcomes(results), results };
  }

  /** Runs newest first, each with its counts; `nextCursor` when more remain. */
  async listRuns(opts: { limit: number; cursor?: string; action?: string }): Promise<{
    runs: RunSummary[];
    nextCursor?: string;
  }> {
    const where: SQL[] = [sql`true`];
    if (opts.action) where.push(sql`r.action = ${opts.action}`);
    if (opts.cursor) {
      const c = decodeRunCursor(opts.cursor);
      where.push(sql`(r.created_at, r.id) < (${c.createdAt}::timestamptz, ${c.id})`);
    }
    const rows = await query<RunRow & { counts: Record<string, number> | null }>(
      this.#db,
      sql`select r.*, c.counts from fanout_runs r
          left join lateral (
            select jsonb_object_agg(outcome, n) as counts
            from (select outcome, count(*)::int as n from fanout_results where run_id = r.id group by outcome) g
          ) c on true
          where ${sql.join(where, sql` and `)}
          order by r.created_at desc, r.id desc
          limit ${opts.limit + 1}`,
    );
    const runs = rows
      .slice(0, opts.limit)
      .map((r) => ({ ...toRun(r), counts: { ...emptyCounts(), ...r.counts } }));
    const last = runs[runs.length - 1];
    return rows.length > opts.limit && last ? { runs, nextCursor: encodeRunCursor(last) } : { runs };
  }

  /**
   * Finishes runs that are still 'running' well past their deadline: the instance that ran them is
   * gone (crash, kill -9). Their silent targets become timeouts. Safe with several replicas: a live
   * run always ends by its deadline, and the statement is idempotent.
   */
  async finishAbandonedRuns(now: Date, graceMs: number): Promise<string[]> {
    const rows = await query<{ id: string }>(
      this.#db,
      sql`with stale as (
            update fanout_runs set status = 'done', finished_at = ${now.toISOString()}
            where status = 'running'
              and created_at + (timeout_ms + ${graceMs}) * interval '1 millisecond' < ${now.toISOString()}::timestamptz
            returning id
          ), silenced as (
            update fanout_results set outcome = 'timeout',
              error = 'the service instance running this fan-out stopped before the project answered'
            where outcome = 'pending' and run_id in (select id from stale)
            returning run_id
          )
          select id from stale`,
    );
    return rows.map((r) => r.id);
  }
}
