import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { UnavailableError } from '../errors.ts';

export const ECOSYSTEM_PATH = '/ecosystem';
export const DEFAULT_WEB_DIST = fileURLToPath(new URL('../../web/dist/', import.meta.url));

export interface WebPluginOptions {
  /** The Vite build output; defaults to web/dist of this package. */
  distDir?: string;
}

/**
 * Serves the ecosystem view (web/dist) at /ecosystem. It talks to the API over HTTP and SSE only, so
 * the files are static; hashed assets are cached for good, index.html is revalidated every time.
 */
export const webPlugin = fp(
  async (app: FastifyInstance, opts: WebPluginOptions) => {
    const distDir = opts.distDir ?? DEFAULT_WEB_DIST;
    const built = existsSync(`${distDir}/index.html`);

    app.get('/', { schema: { hide: true } }, async (_request, reply) => reply.redirect(ECOSYSTEM_PATH));

    if (!built) {
      app.log.warn({ distDir }, 'ecosystem view is not built; /ecosystem answers 503');
      const notBuilt = async () => {
        throw new UnavailableError(
          `the ecosystem view is not built (${distDir} has no index.html): run \`npm run build:web\` and restart`,
        );
      };
      app.get(ECOSYSTEM_PATH, { schema: { hide: true } }, notBuilt);
      app.get(`${ECOSYSTEM_PATH}/*`, { schema: { hide: true } }, notBuilt);
      return;
    }

    // Encapsulated so that reply.sendFile stays local to the view and cannot clash with other plugins.
    await app.register(async (scope) => {
      await scope.register(fastifyStatic, {
        root: distDir,
        prefix: `${ECOSYSTEM_PATH}/`,
        index: ['index.html'],
        wildcard: true,
        schemaHide: true,
        setHeaders(reply, path) {
          reply.header(
            'Cache-Control',
            path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
          );
        },
      });
      scope.get(ECOSYSTEM_PATH, { schema: { hide: true } }, async (_request, reply) =>
        reply.header('Cache-Control', 'no-cache').sendFile('index.html'),
      );
    });
  },
  { name: 'web' },
);
