import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

// Placeholder until the metrics feature lands; registered by app.ts.
export const metricsPlugin = fp(async (_app: FastifyInstance) => {}, {
  name: 'metrics',
  dependencies: ['core', 'catalog'],
});
