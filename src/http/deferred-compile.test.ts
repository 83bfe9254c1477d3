import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { DeferredCompilers } from './deferred-compile.ts';

function appWith(compilers: DeferredCompilers) {
  const app = Fastify({
    logger: false,
    schemaController: { compilersFactory: { buildSerializer: compilers.buildSerializer } },
  });
  app.setValidatorCompiler(compilers.validatorCompiler);
  return app;
}

const bodySchema = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1 }, limit: { type: 'integer' } },
  additionalProperties: false,
};
const responseSchema = {
  type: 'object',
  properties: { name: { type: 'string' }, limit: { type: 'integer' } },
};

describe('DeferredCompilers', () => {
  it('compiles nothing at start, then validates and serialises exactly as compiled schemas do', async () => {
    const compilers = new DeferredCompilers();
    const app = appWith(compilers);
    app.post(
      '/things',
      {
        schema: {
          body: bodySchema,
          querystring: { type: 'object', properties: { n: { type: 'integer' } } },
          response: { 200: responseSchema },
        },
      },
      async (req) => ({
        ...(req.body as object),
        secret: 'never serialised',
        n: (req.query as { n?: number }).n,
      }),
    );
    await app.ready();
    // body, querystring and the 200 response: registered, none compiled.
    expect(compilers.pending).toBe(3);

    const bad = await app.inject({ method: 'POST', url: '/things', payload: { name: '' } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('body/name must NOT have fewer than 1 characters');

    const extra = await app.inject({ method: 'POST', url: '/things', payload: { name: 'a', other: 1 } });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().message).toContain('must NOT have additional properties');

    const ok = await app.inject({ method: 'POST', url: '/things?n=2', payload: { name: 'a', limit: 3 } });
    expect(ok.statusCode).toBe(200);
    // The response schema applies: fields it does not list are not sent.
    expect(ok.json()).toEqual({ name: 'a', limit: 3 });
    expect(compilers.pending).toBe(0);
    await app.close();
  });

  it('warmUp compiles whatever no request needed yet and reports a schema that does not compile', async () => {
    const compilers = new DeferredCompilers();
    const app = appWith(compilers);
    app.post('/a', { schema: { body: bodySchema, response: { 200: responseSchema } } }, async () => ({}));
    app.post(
      '/broken',
      { schema: { body: { type: 'object', properties: { x: { $ref: '#/definitions/missing' } } } } },
      async () => ({}),
    );
    await app.ready();
    expect(compilers.pending).toBe(3);
    const failures = await compilers.warmUp();
    expect(compilers.pending).toBe(0);
    expect(failures.map((f) => f.route)).toEqual(['POST /broken body']);
    expect(String(failures[0]?.error)).toContain('missing');
    // A request that needs the broken schema fails, it is not let through unvalidated.
    const r = await app.inject({ method: 'POST', url: '/broken', payload: { x: 1 } });
    expect(r.statusCode).toBe(500);
    await app.close();
  });
});
