import { constants } from 'node:zlib';
import compress from '@fastify/compress';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** Responses smaller than this go out as they are: compressing them costs more than it saves. */
export const COMPRESS_THRESHOLD_BYTES = 1024;

/**
 * Compresses responses (JSON, the streamed catalog, /metrics, the view's assets) with brotli or gzip,
 * as the client's Accept-Encoding asks (brotli preferred). Brotli at quality 4: the default, 11, takes
 * about as long to compress a large catalog as the database takes to read it.
 * Server-Sent Events are hijacked responses and are never buffered by it.
 */
export const compressionPlugin = fp(
  async (app: FastifyInstance) => {
    await app.register(compress, {
      global: true,
      encodings: ['br', 'gzip'],
      threshold: COMPRESS_THRESHOLD_BYTES,
      brotliOptions: { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } },
    });
  },
  { name: 'compression' },
);
