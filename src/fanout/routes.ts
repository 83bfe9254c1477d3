import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type Static, Type } from 'typebox';
import {
  errorResponses,
  iso,
  isoOrNull,
  NullableTimestamp,
  READ_ERRORS,
  Timestamp,
} from '../http/schemas.ts';
import { ACTION_NAME_PATTERN, ProjectStatusSchema, SlugSchema } from '../protocol/index.ts';
import { DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS } from './fanout-runner.ts';
import { MAX_RUN_PAGE, OUTCOMES, type RunSummary, type RunView } from './fanout-service.ts';

const ActionName = Type.String({ pattern: ACTION_NAME_PATTERN, description: 'e.g. audit' });

const TargetsSchema = Type.Object(
  {
    slugs: Type.Optional(
      Type.Array(SlugSchema, {
        minItems: 1,
        maxItems: 1000,
        description: 'these projects (unknown slugs: 400)',
      }),
    ),
    tags: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
        minItems: 1,
        maxItems: 50,
        description: 'projects carrying any of these tags',
      }),
    ),
    status: Type.Optional(
      Type.Union([ProjectStatusSchema, Type.Array(ProjectStatusSchema, { minItems: 1, maxItems: 3 })], {
        description: 'projects whose live status is this one (or one of these)',
      }),
    ),
    all: Type.Optional(
      Type.Boolean({
        description: 'required, and enough, to target every project when no criterion is given',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'criteria combine with AND; an empty object is refused unless all is true',
  },
);

const FanoutCreateSchema = Type.Object(
  {
    action: ActionName,
    targets: TargetsSchema,
    params: Type.Optional(Type.Unknown({ description: 'sent to every target as "params"' })),
    timeout_ms: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_TIMEOUT_MS, default: DEFAULT_TIMEOUT_MS }),
    ),
    include_offline: Type.Optional(
      Type.Boolean({ default: false, description: 'also send to projects the catalog shows offline' }),
    ),
  },
  { additionalProperties: false },
);

const CountsSchema = Type.Object({
  ok: Type.Integer(),
  error: Type.Integer(),
  timeout: Type.Integer(),
  not_allowed: Type.Integer(),
  offline: Type.Integer(),
  pending: Type.Integer({ description: 'sent, not answered yet' }),
});

const ResultSchema = Type.Object({
  slug: Type.String(),
  outcome: Type.Enum(['pending', ...OUTCOMES]),
  result: Type.Optional(Type.Unknown()),
  error: Type.Optional(Type.String()),
  duration_ms: Type.Union([Type.Integer(), Type.Null()], {
    description: 'request to answer; null while pending and when nothing was sent',
  }),
});

const runFields = {
  id: Type.String(),
  action: Type.String(),
  status: Type.Enum(['running', 'done']),
  targets: Type.Unknown(),
  params: Type.Unknown(),
  timeout_ms: Type.Integer(),
  counts: CountsSchema,
  created_at: Timestamp,
  finished_at: NullableTimestamp,
};
const RunSummarySchema = Type.Object(runFields, { $id: 'FanoutRunSummary' });
export const RunSchema = Type.Object(
  { ...runFields, results: Type.Array(ResultSchema) },
  { $id: 'FanoutRun' },
);
/** A fan-out run as `GET /api/fed/actions/:id` returns it. */
export type FanoutRunResponse = Static<typeof RunSchema>;

function toSummary(r: RunSummary): Static<typeof RunSummarySchema> {
  return {
    id: r.id,
    action: r.action,
    status: r.status,
    targets: r.targets,
    params: r.params ?? null,
    timeout_ms: r.timeoutMs,
    counts: r.counts,
    created_at: iso(r.createdAt),
    finished_at: isoOrNull(r.finishedAt),
  };
}

function toRun(r: RunView): Static<typeof RunSchema> {
  return {
    ...toSummary(r),
    results: r.results.map((x) => ({
      slug: x.slug,
      outcome: x.outcome,
      ...(x.result === undefined ? {} : { result: x.result }),
      ...(x.error === undefined ? {} : { error: x.error }),
      duration_ms: x.durationMs,
    })),
  };
}

export const fanoutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/api/fed/actions',
    {
      schema: {
        tags: ['fanout'],
        summary: 'Send an action to many projects at once',
        description: [
          'Returns at once with the run (status running); poll GET /api/fed/actions/:id or follow SSE event fanout.',
          'Targets combine with AND (tags: any of them); an empty targets object is refused unless all is true;',
          'unknown slugs, or targets matching no project, answer 400.',
          'Projects whose allow_fanout lacks the action are reported not_allowed, offline ones offline; nothing is sent to either.',
          'The run ends when every target has answered or timeout_ms has passed: a silent project is a timeout,',
          'a subject nobody subscribes to is an error "no responders", a reply that is not {ok,result|error} an error.',
          '503 while NATS is disabled or disconnected.',
        ].join(' '),
        body: FanoutCreateSchema,
        response: { 202: RunSchema, ...errorResponses(400, 401, 413, 503) },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const run = await app.fanout.start({
        action: b.action,
        targets: b.targets,
        params: b.params,
        timeoutMs: b.timeout_ms,
        includeOffline: b.include_offline,
      });
      return reply.code(202).send(toRun(run));
    },
  );

  app.get(
    '/api/fed/actions',
    {
      schema: {
        tags: ['fanout'],
        summary: 'Recent fan-out runs, newest first, with their counts',
        querystring: Type.Object({
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_RUN_PAGE, default: 20 })),
          cursor: Type.Optional(Type.String({ maxLength: 300 })),
          action: Type.Optional(ActionName),
        }),
        response: {
          200: Type.Array(RunSummarySchema, {
            description: 'when more remain, X-Next-Cursor holds the cursor of the next page',
          }),
          ...READ_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const { runs, nextCursor } = await app.fanoutService.listRuns({
        limit: request.query.limit ?? 20,
        ...(request.query.cursor ? { cursor: request.query.cursor } : {}),
        ...(request.query.action ? { action: request.query.action } : {}),
      });
      if (nextCursor) reply.header('X-Next-Cursor', nextCursor);
      return runs.map(toSummary);
    },
  );

  app.get(
    '/api/fed/actions/:id',
    {
      schema: {
        tags: ['fanout'],
        summary: 'One fan-out run with its per-project results',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: RunSchema, ...READ_ERRORS, ...errorResponses(404) },
      },
    },
    async (request) => toRun(await app.fanoutService.getRun(request.params.id)),
  );
};
