import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';
import negotiate from '@fastify/accept-negotiator';
import compress from '@fastify/compress';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set by compressionPlugin on a route that turns compression off. */
    oneShotCompression?: boolean;
  }
}

/** Responses smaller than this go out as they are: compressing them costs more than it saves. */
export const COMPRESS_THRESHOLD_BYTES = 1024;
/** Whole bodies up to this size are compressed in one call (larger ones, and streams, as a stream). */
export const ONE_SHOT_MAX_BYTES = 4 * 1024 * 1024;
const BROTLI_QUALITY = 4;
const ENCODINGS: Array<'br' | 'gzip'> = ['br', 'gzip'];

const brotliOnce = promisify(brotliCompress);
const gzipOnce = promisify(gzip);

/** The encoding `request` asks for among ours, as @fastify/compress negotiates it (`*`, `x-gzip`: gzip). */
function acceptedEncoding(request: FastifyRequest): 'br' | 'gzip' | undefined {
  const header = request.headers['accept-encoding'];
  if (typeof header !== 'string' || request.headers['x-no-compression'] !== undefined) return undefined;
  return negotiate(header.toLowerCase().replace(/\*|x-gzip/gu, 'gzip'), ENCODINGS) ?? undefined;
}

const compressible = (type: unknown) =>
  typeof type === 'string' && /^(application\/(json|javascript)|text\/|image\/svg)/u.test(type);

/**
 * A whole body (a page of projects, one project, /metrics) compressed in one call on libuv's thread
 * pool. @fastify/compress turns every body into a stream through a zlib stream: for a page of 100
 * projects that took 1 ms more at the median and 15-20 ms more at p99 than the body sent plain (a
 * million projects, nothing else running), most of a page's time. Streams (the whole catalog) and
 * bodies above ONE_SHOT_MAX_BYTES are left to it. A HEAD request is answered with the headers its GET
 * would have (the encoding and the compressed length), as @fastify/compress also does.
 */
async function compressWhole(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
): Promise<unknown> {
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload;
  if (request.routeOptions.config.oneShotCompression === false) return payload;
  const size = Buffer.byteLength(payload);
  if (size < COMPRESS_THRESHOLD_BYTES || size > ONE_SHOT_MAX_BYTES) return payload;
  if (reply.getHeader('content-encoding') !== undefined || !compressible(reply.getHeader('content-type'))) {
    return payload;
  }
  const encoding = acceptedEncoding(request);
  if (encoding === undefined) return payload;
  const body =
    encoding === 'br'
      ? await brotliOnce(payload, {
          params: {
            [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY,
            [constants.BROTLI_PARAM_SIZE_HINT]: size,
            [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
          },
        })
      : await gzipOnce(payload);
  reply.header('content-encoding', encoding);
  const vary = reply.getHeader('vary');
  if (vary === undefined) reply.header('vary', 'accept-encoding');
  else if (!/accept-encoding/iu.test(String(vary))) reply.header('vary', `${vary}, accept-encoding`);
  reply.removeHeader('content-length');
  return body;
}

/**
 * Compresses responses (JSON, the streamed catalog, /metrics, the view's assets) with brotli or gzip,
 * as the client's Accept-Encoding asks (brotli preferred). Brotli at quality 4: the default, 11, takes
 * about as long to compress a large catalog as the database takes to read it.
 * Server-Sent Events are hijacked responses and are never buffered by it.
 */
export const compressionPlugin = fp(
  async (app: FastifyInstance) => {
    // A route that turns compression off (`compress: false`, or `config: { compress: false }`, as
    // @fastify/compress reads them) is sent plain by this hook too.
    app.addHook('onRoute', (route) => {
      if (route.compress === false || route.config?.compress === false) {
        route.config = { ...route.config, oneShotCompression: false };
      }
    });
    // Runs before @fastify/compress's own hook (a route's hooks come after the instance's), which
    // leaves a body that says it is encoded alone.
    app.addHook('onSend', compressWhole);
    await app.register(compress, {
      global: true,
      encodings: ENCODINGS,
      threshold: COMPRESS_THRESHOLD_BYTES,
      brotliOptions: { params: { [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY } },
    });
  },
  { name: 'compression' },
);
