import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

export interface SecurityOptions {
  /** Origins allowed by CORS; empty: no CORS headers at all (closed). */
  corsOrigins: readonly string[];
  /** Writes per IP per window; 0: off. */
  rateLimitWrites: number;
  /** Requests refused with 401 per IP per window before that IP gets 429 for everything; 0: off. */
  rateLimitAuthFailures: number;
  rateLimitWindowS: number;
}

/**
 * The Content-Security-Policy of every response. The ecosystem view and the docs UI load only their
 * own scripts and styles from this origin; React and Swagger UI set inline `style` attributes through
 * the DOM, which style-src 'unsafe-inline' allows. No `upgrade-insecure-requests`: the service is
 * often reached over plain HTTP on a private network, where that directive would break every asset.
 */
export const CONTENT_SECURITY_POLICY = {
  'default-src': ["'self'"],
  'base-uri': ["'self'"],
  'connect-src': ["'self'"],
  'font-src': ["'self'", 'data:'],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  'style-src': ["'self'", "'unsafe-inline'"],
} as const;

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function tooMany(reply: FastifyReply, retryAfterS: number, message: string) {
  const seconds = Math.max(1, Math.ceil(retryAfterS));
  return reply
    .code(429)
    .header('retry-after', String(seconds))
    .send({
      error: 'rate_limited',
      message: `${message}; retry in ${seconds} s`,
      details: { retry_after_s: seconds },
    });
}

/**
 * HTTP limits and headers: security headers and a CSP (helmet), CORS closed unless FED_CORS_ORIGINS
 * names origins, and two per-IP buckets: one on writes, one on requests that fail authentication (a
 * token guesser is stopped even before it guesses right). Register it before the auth plugin, so that
 * an address over its failure budget is refused before its token is even looked at.
 */
export const securityPlugin = fp(
  async (app: FastifyInstance, opts: SecurityOptions) => {
    await app.register(helmet, {
      contentSecurityPolicy: { useDefaults: false, directives: { ...CONTENT_SECURITY_POLICY } },
      // The docs UI and the view open nothing cross-origin; the service never runs in a frame.
      crossOriginEmbedderPolicy: false,
    });

    if (opts.corsOrigins.length > 0) {
      const any = opts.corsOrigins.includes('*');
      await app.register(cors, {
        origin: any ? '*' : [...opts.corsOrigins],
        methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
        allowedHeaders: ['authorization', 'content-type'],
        exposedHeaders: ['x-next-cursor', 'retry-after'],
        maxAge: 600,
      });
    }

    if (opts.rateLimitWrites === 0 && opts.rateLimitAuthFailures === 0) return;
    await app.register(rateLimit, { global: false, timeWindow: opts.rateLimitWindowS * 1000 });
    const windowMs = opts.rateLimitWindowS * 1000;
    // Distinct keys per bucket: both limiters share the plugin's store.
    const writes =
      opts.rateLimitWrites > 0
        ? app.createRateLimit({
            max: opts.rateLimitWrites,
            timeWindow: windowMs,
            keyGenerator: (r: FastifyRequest) => `write:${r.ip}`,
          })
        : undefined;
    const authFailures =
      opts.rateLimitAuthFailures > 0
        ? app.createRateLimit({
            max: opts.rateLimitAuthFailures,
            timeWindow: windowMs,
            keyGenerator: (r: FastifyRequest) => `auth:${r.ip}`,
          })
        : undefined;

    app.addHook('onRequest', async (request, reply) => {
      // Health stays answerable for load balancers and probes, which often share one address.
      if (authFailures && request.routeOptions.url !== '/api/fed/health') {
        const peek = await authFailures(request, { increment: false });
        // Peeking reports the count so far: `remaining` 0 means the budget of failures is spent.
        if (!peek.isAllowed && peek.remaining === 0) {
          return tooMany(reply, peek.ttlInSeconds, 'too many requests with a bad or missing token');
        }
      }
      if (writes && WRITE_METHODS.has(request.method) && request.routeOptions.url !== undefined) {
        const limit = await writes(request);
        if (!limit.isAllowed && limit.isExceeded) {
          return tooMany(
            reply,
            limit.ttlInSeconds,
            `more than ${limit.max} writes in ${opts.rateLimitWindowS} s`,
          );
        }
      }
    });
    if (authFailures) {
      app.addHook('onResponse', async (request, reply) => {
        if (reply.statusCode === 401) await authFailures(request);
      });
    }
  },
  { name: 'security', dependencies: ['errors'] },
);
