import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { InputError } from '../errors.ts';
import { findUnstorableText, unstorableTextMessage } from '../protocol/index.ts';

function refuseUnstorable(part: 'body' | 'querystring' | 'params', value: unknown): void {
  const path = findUnstorableText(value);
  if (path === undefined) return;
  const field = path === '' ? part : path;
  throw new InputError(`invalid ${part}: field ${unstorableTextMessage(field)}`, { field });
}

/**
 * Refuses, with a 400, request text PostgreSQL cannot store (NUL, an unpaired surrogate): schemas let
 * it through, and the statement it reaches would fail with a 500.
 */
export const textGuardPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('preValidation', async (request: FastifyRequest) => {
      // A route that validates its own body (the heartbeat intake) refuses such text there, and counts it.
      if (!request.routeOptions.attachValidation) refuseUnstorable('body', request.body);
      refuseUnstorable('querystring', request.query);
      refuseUnstorable('params', request.params);
    });
  },
  { name: 'text-guard', dependencies: ['errors'] },
);
