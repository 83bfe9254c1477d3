import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Constant time, length included: both sides are hashed to 32 bytes first, so neither the position of
 * the first wrong byte nor the length of the real token shows in the time taken.
 */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

function presentedToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice(7).trim();
  // EventSource cannot send headers, so reads also accept ?access_token=.
  if (request.method === 'GET') {
    const q = (request.query as Record<string, unknown> | undefined)?.access_token;
    if (typeof q === 'string') return q;
  }
  return undefined;
}

const OPEN_PATHS = new Set(['/api/fed/health']);

/**
 * Writes (POST, PUT, PATCH, DELETE) need FED_ADMIN_TOKEN when it is set; reads need FED_READ_TOKEN
 * (or the admin token) when that is set. Health, the docs and the view's static files stay open.
 */
export const authPlugin = fp(
  async (app: FastifyInstance, opts: { adminToken: string | undefined; readToken: string | undefined }) => {
    const { adminToken, readToken } = opts;
    app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      // Decide on the route that matched, never on the raw URL: the router decodes "%61pi" to "api",
      // so a check on request.url could be walked around with percent-encoding.
      const route = request.routeOptions.url;
      if (route === undefined) return; // no route: the 404 handler answers
      const isApi = route.startsWith('/api/fed/') || route === '/metrics';
      if (
        !isApi ||
        OPEN_PATHS.has(route) ||
        route.startsWith('/api/fed/docs') ||
        route === '/api/fed/openapi.json'
      ) {
        return;
      }
      const write = !['GET', 'HEAD', 'OPTIONS'].includes(request.method);
      const token = presentedToken(request);
      if (write) {
        if (!adminToken) return;
        if (token && safeEqual(token, adminToken)) return;
        return reply.code(401).send({
          error: 'unauthorized',
          message: token
            ? 'the admin token is not valid'
            : 'writes need Authorization: Bearer <FED_ADMIN_TOKEN>',
        });
      }
      if (!readToken) return;
      if (
        token &&
        (safeEqual(token, readToken) || (adminToken !== undefined && safeEqual(token, adminToken)))
      )
        return;
      return reply.code(401).send({
        error: 'unauthorized',
        message: token ? 'the token is not valid' : 'reads need Authorization: Bearer <FED_READ_TOKEN>',
      });
    });
  },
  { name: 'auth' },
);
