import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { STATEMENT_TIMEOUT_MS } from '../db/connection.ts';
import { causes, DomainError } from '../errors.ts';

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  '57P01',
  '57P03',
  '08006',
  '08001',
]);

function isDatabaseUnavailable(err: unknown): boolean {
  for (const e of causes(err)) {
    const code = (e as { code?: string }).code;
    if (code && CONNECTION_ERROR_CODES.has(code)) return true;
    const msg = (e as Error).message ?? '';
    if (
      /Connection terminated|timeout exceeded when trying to connect|PGlite is closed|^Query read timeout$/i.test(
        msg,
      )
    )
      return true;
  }
  return false;
}

/**
 * A statement the database gave up on: its statement timeout (or a cancel, same SQLSTATE 57014) or
 * a lock timeout an operator set (55P03). The service and the database are up but busy: 503, worth
 * retrying, not a 500. (The client's own read timeout means the server stopped answering: that is
 * "unavailable".)
 */
function isDatabaseTimeout(err: unknown): boolean {
  for (const e of causes(err)) {
    const code = (e as { code?: string }).code;
    if (code === '57014' || code === '55P03') return true;
  }
  return false;
}

/** One place that turns errors into `{"error","message","details"?}`; 5xx details stay in the log. */
export const errorsPlugin = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err: FastifyError, request, reply) => {
      if (err instanceof DomainError) {
        return reply.code(err.statusCode).send({
          error: err.code,
          message: err.message,
          ...(err.details === undefined ? {} : { details: err.details }),
        });
      }
      if (err.validation) {
        const details = err.validation.map((v) => ({
          field: [
            (v.instancePath || '').replace(/^\//, '').replaceAll('/', '.'),
            (v.params as { missingProperty?: string; additionalProperty?: string })?.missingProperty ??
              (v.params as { additionalProperty?: string })?.additionalProperty,
          ]
            .filter(Boolean)
            .join('.'),
          message: (v.params as { allowedValues?: unknown[] })?.allowedValues
            ? `${v.message}: ${(v.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
            : v.message,
        }));
        const first = details[0];
        return reply.code(400).send({
          error: 'validation_failed',
          message: `invalid ${err.validationContext ?? 'request'}: ${first ? `${first.field || err.validationContext} ${first.message}` : err.message}`,
          details,
        });
      }
      // Fastify's own code says nothing to a user; the field at fault is the body itself.
      if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
        return reply.code(400).send({
          error: 'invalid_json',
          message:
            'the body is not valid JSON, or it carries a "__proto__" or "constructor.prototype" key (refused)',
          details: [{ field: 'body', message: err.message }],
        });
      }
      if (err.statusCode === 413) {
        return reply.code(413).send({ error: 'payload_too_large', message: err.message });
      }
      if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
        return reply
          .code(err.statusCode)
          .send({ error: (err.code ?? 'bad_request').toLowerCase(), message: err.message });
      }
      if (isDatabaseUnavailable(err)) {
        request.log.warn({ err }, 'database unavailable');
        return reply
          .code(503)
          .send({ error: 'unavailable', message: 'the database is unreachable; try again shortly' });
      }
      if (isDatabaseTimeout(err)) {
        request.log.warn({ err }, 'database statement timed out');
        return reply
          .code(503)
          .header('retry-after', '1')
          .send({
            error: 'timeout',
            message: `the database did not answer in time (statements end after ${STATEMENT_TIMEOUT_MS / 1000} s); try again shortly`,
          });
      }
      request.log.error({ err }, 'unhandled error');
      return reply.code(500).send({ error: 'internal', message: 'internal server error' });
    });

    // An attacker could probe for valid URLs; answer every unknown route the same plain way.
    app.setNotFoundHandler((request, reply) => {
      reply
        .code(404)
        .send({ error: 'not_found', message: `no route for ${request.method} ${request.url.split('?')[0]}` });
    });
  },
  { name: 'errors' },
);
