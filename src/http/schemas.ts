import { Type } from 'typebox';

export const ERROR_SCHEMA_ID = 'Error';

export const ErrorSchema = Type.Object(
  {
    error: Type.String({ description: 'machine-readable code, e.g. bad_request, not_found, unauthorized' }),
    message: Type.String({ description: 'a human sentence' }),
    details: Type.Optional(Type.Unknown()),
  },
  { $id: ERROR_SCHEMA_ID },
);

/** Standard error responses a route may add to its schema. */
export const errorResponses = (...codes: Array<400 | 401 | 404 | 409 | 413 | 429 | 503>) =>
  Object.fromEntries(codes.map((c) => [c, ErrorSchema])) as Record<number, typeof ErrorSchema>;

// 429: the per-IP limits of src/http/security.ts (writes; requests that keep failing authentication).
export const READ_ERRORS = errorResponses(400, 401, 429, 503);
export const WRITE_ERRORS = errorResponses(400, 401, 413, 429, 503);

/** ISO 8601 UTC with Z, as every time in the API. */
export const Timestamp = Type.String({ format: 'date-time' });
export const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);
export const iso = (d: Date): string => d.toISOString();
export const isoOrNull = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);
