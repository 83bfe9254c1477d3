import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

// Placeholder until the fanout feature lands; registered by app.ts.
export const fanoutPlugin = fp(async (_app: FastifyInstance) => {}, {
  name: 'fanout',
  dependencies: ['core', 'catalog'],
});
