import { Type } from 'typebox';
import { Timestamp } from '../http/schemas.ts';
import { METRIC_TYPE_PATTERN } from '../protocol/index.ts';
import { MAX_HISTORY_LIMIT } from './metrics-service.ts';

const MetricValue = Type.Union([Type.Number(), Type.String()]);

export const LatestMetricsSchema = Type.Record(
  Type.String(),
  Type.Object({ value: MetricValue, observed_at: Timestamp }),
  { description: 'the newest value of each metric type' },
);

export const MetricPointSchema = Type.Object({
  metric_type: Type.String(),
  value: MetricValue,
  observed_at: Timestamp,
});

export const ProjectMetricsSchema = Type.Object({
  project: Type.String({ description: 'the project slug' }),
  project_id: Type.Integer(),
  latest: LatestMetricsSchema,
  history: Type.Optional(
    Type.Array(MetricPointSchema, {
      description: 'present when metric, since or until is given; newest first, at most `limit` points',
    }),
  ),
});

export const AllLatestMetricsSchema = Type.Array(
  Type.Object({ project: Type.String(), project_id: Type.Integer(), latest: LatestMetricsSchema }),
  { description: 'every project in the catalog, by slug, with its latest values ({} when none)' },
);

export const ProjectRefParams = Type.Object({
  project: Type.String({
    pattern: '^[a-z0-9-]{1,50}$',
    description: 'project slug, or numeric project id (a slug made of digits wins)',
  }),
});

export const HistoryQuery = Type.Object({
  metric: Type.Optional(Type.String({ pattern: METRIC_TYPE_PATTERN, description: 'one metric type' })),
  since: Type.Optional(
    Type.String({ maxLength: 64, description: 'ISO 8601 time, inclusive (no offset means UTC)' }),
  ),
  until: Type.Optional(Type.String({ maxLength: 64, description: 'ISO 8601 time, inclusive' })),
  limit: Type.Optional(
    Type.Integer({ minimum: 1, maximum: MAX_HISTORY_LIMIT, description: 'history points (default 1000)' }),
  ),
});
