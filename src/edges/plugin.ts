import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

// Placeholder until the edges feature lands; registered by app.ts.
export const edgesPlugin = fp(async (_app: FastifyInstance) => {}, {
  name: 'edges',
  dependencies: ['core', 'catalog'],
});
