import { STATUS_CODES } from 'node:http';
import type { SwaggerOptions } from '@fastify/swagger';
import { ERROR_SCHEMA_ID } from './schemas.ts';

/** Routes every caller may use without a token (see http/auth.ts); the rest may answer 401. */
const OPEN_ROUTES = new Set(['/api/fed/health']);
const API_PREFIX = '/api/fed';

const pascal = (s: string): string =>
  s
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]?.toUpperCase() + w.slice(1))
    .join('');

/**
 * A stable camelCase operationId from the method and the route, so that every route, including
 * ones added later, gets one without touching its file: `GET /api/fed/projects/:slug/history` →
 * `getProjectsBySlugHistory`. A route that sets `schema.operationId` keeps its own.
 */
export function operationIdOf(method: string, url: string): string {
  const path = url === API_PREFIX || url.startsWith(`${API_PREFIX}/`) ? url.slice(API_PREFIX.length) : url;
  const words = path
    .split('/')
    .filter(Boolean)
    .map((segment) => (segment.startsWith(':') ? `By${pascal(segment.slice(1))}` : pascal(segment)));
  return method.toLowerCase() + words.join('');
}

const errorDescription = (code: string | number): string =>
  `${STATUS_CODES[code] ?? 'Error'}: {"error","message","details"?}`;

/** One tag per feature folder; every route names one of them. */
export const FEATURE_TAGS = [
  { name: 'system', description: 'health of the service and its dependencies' },
  { name: 'catalog', description: 'projects: register, list, remove; maintenance windows' },
  { name: 'presence', description: 'heartbeats, status events and status history' },
  { name: 'metrics', description: 'metrics summaries published by projects' },
  { name: 'edges', description: 'integration edges and the ecosystem graph' },
  { name: 'fanout', description: 'actions sent to many projects at once and their results' },
  { name: 'notify', description: 'webhook notifiers and their deliveries (signed, retried, never lost)' },
] as const;

type RouteSchema = Record<string, unknown> & { response?: Record<string, unknown> };

/**
 * Documentation defaults applied to every route: an operationId, and the shared Error response for
 * 400 (the route validates input) and 401 (tokens may be required) when the route lists no 4xx.
 * Only the document changes; validation and serialisation still use the route's own schema.
 */
export function documentRoute(method: string, url: string, schema: RouteSchema | undefined): RouteSchema {
  const out: RouteSchema = { ...(schema ?? {}) };
  out.operationId ??= operationIdOf(method, url);
  const response: Record<string, unknown> = {};
  // The shared Error schema, by reference: one named type for generators, not a copy per route.
  for (const [code, value] of Object.entries(out.response ?? {})) {
    const v = value as { $id?: unknown; description?: unknown } | undefined;
    response[code] =
      v?.$id === ERROR_SCHEMA_ID
        ? { $ref: `${ERROR_SCHEMA_ID}#`, description: errorDescription(code) }
        : value;
  }
  if (!Object.keys(response).some((code) => /^4(\d\d|XX)$/.test(code))) {
    const takesInput = ['params', 'querystring', 'body', 'headers'].some((k) => out[k] !== undefined);
    const codes = [...(takesInput ? [400] : []), ...(OPEN_ROUTES.has(url) ? [] : [401])];
    for (const code of codes)
      response[code] = { $ref: `${ERROR_SCHEMA_ID}#`, description: errorDescription(code) };
  }
  out.response = response;
  return out;
}

/** The @fastify/swagger registration: OpenAPI 3.1 (the route schemas are JSON Schema 2020-12). */
export function openApiOptions(version: string): SwaggerOptions {
  return {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'CommandCenter Federation Service',
        version,
        description:
          'Catalog, live presence, metrics, integration edges and fan-out actions of CommandCenter projects',
        license: { name: 'MIT', identifier: 'MIT' },
      },
      // Relative: the document is served by the service it describes, wherever that runs.
      servers: [{ url: '/', description: 'the service that serves this document' }],
      tags: [...FEATURE_TAGS],
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearer: [] }],
    },
    // Shared schemas keep their $id as the component name (Error, ProjectResponse …) for generators.
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
    transform: ({ schema, url, route }) => {
      const method = Array.isArray(route.method) ? String(route.method[0]) : String(route.method);
      return { schema: documentRoute(method, url, schema as RouteSchema), url };
    },
  };
}
