import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

// Placeholder until the presence feature lands; registered by app.ts.
export const presencePlugin = fp(async (_app: FastifyInstance) => {}, {
  name: 'presence',
  dependencies: ['core', 'catalog'],
});
