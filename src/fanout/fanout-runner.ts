import { randomUUID } from 'node:crypto';
import { errors, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import { Value } from 'typebox/value';
import { TARGET_SLUG_HEADER } from '../client/action-responder.ts';
import type { Clock } from '../clock.ts';
import { UnavailableError } from '../errors.ts';
import {
  ActionReplySchema,
  type ActionRequest,
  actionSubject,
  findUnstorableText,
  unstorableTextMessage,
} from '../protocol/index.ts';
import {
  type Counts,
  countOutcomes,
  type FanoutService,
  type RunStatus,
  type RunView,
  type TargetResult,
} from './fanout-service.ts';
import { planTargets, selectTargets, type TargetCatalog, type TargetSpec } from './targets.ts';

export const DEFAULT_TIMEOUT_MS = 5000;
export const MAX_TIMEOUT_MS = 60_000;
/** How long shutdown waits for running runs before recording their silent targets as timeouts. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 2000;
/** Answers are written in batches: one UPDATE per tick instead of one per project. */
const FLUSH_DELAY_MS = 20;
export interface FanoutRequest {
  action: string;
  targets: TargetSpec;
  params?: unknown;
  timeoutMs?: number;
  includeOffline?: boolean;
}

/** What progress listeners (the SSE feed) receive: at start, on each answer and at the end. */
export type FanoutProgress = {
  id: string;
  action: string;
  status: RunStatus;
  counts: Counts;
  slug?: string;
  outcome?: TargetResult['outcome'];
};

export interface FanoutRunnerDeps {
  service: FanoutService;
  catalog: TargetCatalog;
  /** The current NATS connection, undefined while NATS is disabled or disconnected. */
  connection: () => NatsConnection | undefined;
  clock: Clock;
  log: FastifyBaseLogger;
  onProgress?: (progress: FanoutProgress) => void;
  onResult?: (outcome: TargetResult['outcome']) => void;
}

/** One run in flight: its answers so far and the writes not yet flushed. */
class ActiveRun {
  readonly results = new Map<string, TargetResult>();
  readonly unflushed: TargetResult[] = [];
  flushTimer: NodeJS.Timeout | undefined;
  flushing: Promise<void> = Promise.resolve();
  settle!: () => void;
  readonly settled = new Promise<void>((r) => {
    this.settle = r;
  });
  /** Resolved by shutdown: every target still pending becomes a timeout now. */
  abort!: () => void;
  readonly aborted = new Promise<void>((r) => {
    this.abort = r;
  });
  finished: Promise<void> = Promise.resolve();

  constructor(
    readonly id: string,
    readonly action: string,
  ) {}

  get counts(): Counts {
    return countOutcomes(this.results.values());
  }
}

function classify(err: unknown): Pick<TargetResult, 'outcome' | 'error'> {
  if (err instanceof errors.RequestError && err.isNoResponders()) {
    return { outcome: 'error', error: 'no responders' };
  }
  if (
    err instanceof errors.TimeoutError ||
    (err as { cause?: unknown })?.cause instanceof errors.TimeoutError
  ) {
    return { outcome: 'timeout', error: 'no answer within the timeout' };
  }
  return { outcome: 'error', error: `request failed: ${(err as Error)?.message ?? String(err)}` };
}

/** Reads one action reply; exported for the fuzz tests. Never throws. */
export function interpretReply(reply: unknown): Pick<TargetResult, 'outcome' | 'error' | 'result'> {
  if (!Value.Check(ActionReplySchema, reply)) {
    return {
      outcome: 'error',
      error: 'invalid reply: expected {"ok":true,"result"} or {"ok":false,"error"}',
    };
  }
  // Stored as it is, such text would fail the write of every answer of the run, which would never finish.
  const unstorable = findUnstorableText(reply);
  if (unstorable !== undefined) {
    return { outcome: 'error', error: `invalid reply: ${unstorableTextMessage(unstorable)}` };
  }
  if (reply.ok) return { outcome: 'ok', ...(reply.result === undefined ? {} : { result: reply.result }) };
  return { outcome: 'error', error: reply.error };
}

/**
 * Scatter/gather of fan-out actions: one NATS request per allowed live target, all at once; the run
 * ends when the last target has answered or the timeout has passed, whichever comes first, so one
 * silent project never holds the others' results back.
 */
export class FanoutRunner {
  readonly #deps: FanoutRunnerDeps;
  readonly #active = new Map<string, ActiveRun>();
  #stopping = false;

  constructor(deps: FanoutRunnerDeps) {
    this.#deps = deps;
  }

  get activeRuns(): number {
    return this.#active.size;
  }

  /** Selects the targets, stores the run and sends the requests; returns before the answers arrive. */
  async start(request: FanoutRequest): Promise<RunView> {
    if (this.#stopping) throw new UnavailableError('the service is shutting down; fan-out is closed');
    const timeoutMs = request.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // Targets first: a request that is wrong gets its 400 even while NATS is down.
    const projects = await selectTargets(this.#deps.catalog, request.targets);
    const plan = planTargets(projects, request.action, request.includeOffline ?? false);
    const nc = this.#deps.connection();
    if (!nc || nc.isClosed() || nc.isDraining()) {
      throw new UnavailableError('NATS is disabled or not connected; fan-out needs it');
    }

    const id = randomUUID();
    const createdAt = this.#deps.clock.now();
    const run = new ActiveRun(id, request.action);
    for (const { project, disposition } of plan) {
      run.results.set(
        project.slug,
        disposition === 'send'
          ? { slug: project.slug, outcome: 'pending', durationMs: null }
          : {
              slug: project.slug,
              outcome: disposition,
              error:
                disposition === 'not_allowed'
                  ? `action ${request.action} is not in the project's allow_fanout`
                  : 'project is offline',
              durationMs: null,
            },
      );
    }
    await this.#deps.service.createRun(
      {
        id,
        action: request.action,
        targets: request.targets,
        params: request.params,
        timeoutMs,
        createdAt,
      },
      [...run.results.values()],
    );
    this.#active.set(id, run);
    for (const r of run.results.values()) if (r.outcome !== 'pending') this.#deps.onResult?.(r.outcome);
    this.#progress(run, 'running');

    const payload = JSON.stringify({
      run_id: id,
      action: request.action,
      params: request.params ?? {},
    } satisfies ActionRequest);
    const sends = plan
      .filter((t) => t.disposition === 'send')
      .map((t) =>
        this.#ask(
          nc,
          run,
          t.project.slug,
          actionSubject(t.project.meshNamespace, request.action),
          payload,
          timeoutMs,
        ),
      );
    const view: RunView = {
      id,
      action: request.action,
      targets: request.targets,
      params: request.params ?? null,
      timeoutMs,
      status: 'running',
      createdAt,
      finishedAt: null,
      counts: run.counts,
      results: [...run.results.values()],
    };
    run.finished = this.#gather(run, sends);
    return view;
  }

  async #ask(
    nc: NatsConnection,
    run: ActiveRun,
    slug: string,
    subject: string,
    payload: string,
    timeoutMs: number,
  ): Promise<void> {
    const t0 = performance.now();
    let answer: Pick<TargetResult, 'outcome' | 'error' | 'result'>;
    try {
      const h = natsHeaders();
      h.set(TARGET_SLUG_HEADER, slug);
      const msg = await Promise.race([
        nc.request(subject, payload, { timeout: timeoutMs, headers: h }),
        run.aborted.then(() => undefined),
      ]);
      if (msg === undefined) {
        answer = { outcome: 'timeout', error: 'the service stopped before the project answered' };
      } else {
        let reply: unknown;
        try {
          reply = msg.json();
        } catch {
          reply = undefined;
        }
        answer = interpretReply(reply);
      }
    } catch (err) {
      answer = classify(err);
    }
    const result: TargetResult = { slug, ...answer, durationMs: Math.round(performance.now() - t0) };
    const current = run.results.get(slug);
    if (current?.outcome !== 'pending') return;
    run.results.set(slug, result);
    run.unflushed.push(result);
    this.#scheduleFlush(run);
    this.#deps.onResult?.(result.outcome);
    this.#progress(run, 'running', result);
  }

  #scheduleFlush(run: ActiveRun): void {
    if (run.flushTimer) return;
    run.flushTimer = setTimeout(() => {
      run.flushTimer = undefined;
      const batch = run.unflushed.splice(0);
      run.flushing = run.flushing.then(() =>
        this.#deps.service.recordResults(run.id, batch).catch((err) => {
          // The final write retries these rows; a lost progress write only delays them.
          run.unflushed.push(...batch);
          this.#deps.log.warn({ err, run: run.id }, 'could not record fan-out answers yet');
        }),
      );
    }, FLUSH_DELAY_MS);
    run.flushTimer.unref();
  }

  async #gather(run: ActiveRun, sends: Array<Promise<void>>): Promise<void> {
    try {
      await Promise.all(sends);
      if (run.flushTimer) {
        clearTimeout(run.flushTimer);
        run.flushTimer = undefined;
      }
      await run.flushing;
      await this.#deps.service.finishRun(run.id, run.unflushed.splice(0), this.#deps.clock.now());
      this.#progress(run, 'done');
    } catch (err) {
      // The abandoned-run sweep finishes it from the database later.
      this.#deps.log.error({ err, run: run.id }, 'could not finish fan-out run');
    } finally {
      this.#active.delete(run.id);
      run.settle();
    }
  }

  #progress(run: ActiveRun, status: RunStatus, result?: TargetResult): void {
    try {
      this.#deps.onProgress?.({
        id: run.id,
        action: run.action,
        status,
        counts: run.counts,
        ...(result ? { slug: result.slug, outcome: result.outcome } : {}),
      });
    } catch (err) {
      this.#deps.log.warn({ err }, 'fan-out progress listener failed');
    }
  }

  /** Waits up to `graceMs` for running runs; then their silent targets are recorded as timeouts. */
  async stop(graceMs = DEFAULT_SHUTDOWN_GRACE_MS): Promise<void> {
    this.#stopping = true;
    const runs = [...this.#active.values()];
    if (runs.length === 0) return;
    const all = Promise.all(runs.map((r) => r.settled));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'grace'>((r) => {
      timer = setTimeout(() => r('grace'), graceMs);
    });
    const first = await Promise.race([all.then(() => 'done' as const), graceOver]);
    clearTimeout(timer);
    if (first === 'grace') {
      for (const r of runs) r.abort();
      await all;
    }
  }
}
