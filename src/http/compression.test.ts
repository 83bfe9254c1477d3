import { gunzipSync } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compressionPlugin } from './compression.ts';

const body = JSON.stringify(
  Array.from({ length: 200 }, (_, i) => ({ slug: `project-${i}`, status: 'online' })),
);

describe('compressionPlugin', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = Fastify();
    await app.register(compressionPlugin);
    const send = async (_req: unknown, reply: { type: (t: string) => unknown }) => {
      reply.type('application/json');
      return body;
    };
    app.get('/packed', send);
    app.get('/off', { compress: false }, send);
    app.get('/off-by-config', { config: { compress: false } }, send);
    await app.ready();
  });
  afterAll(async () => {
    await app.close();
  });

  it('compresses a whole body in one piece, and leaves routes that turn compression off plain', async () => {
    const packed = await app.inject({ url: '/packed', headers: { 'accept-encoding': 'gzip' } });
    expect(packed.headers['content-encoding']).toBe('gzip');
    expect(Number(packed.headers['content-length'])).toBe(packed.rawPayload.length);
    expect(gunzipSync(packed.rawPayload).toString('utf8')).toBe(body);
    for (const url of ['/off', '/off-by-config']) {
      const res = await app.inject({ url, headers: { 'accept-encoding': 'gzip, br' } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.body).toBe(body);
    }
  });

  it('answers HEAD with the headers its GET would have, and no body', async () => {
    const get = await app.inject({ url: '/packed', headers: { 'accept-encoding': 'br' } });
    const head = await app.inject({ method: 'HEAD', url: '/packed', headers: { 'accept-encoding': 'br' } });
    expect(head.statusCode).toBe(200);
    expect(head.rawPayload.length).toBe(0);
    expect(head.headers['content-encoding']).toBe('br');
    expect(head.headers['content-length']).toBe(get.headers['content-length']);
    const plainHead = await app.inject({ method: 'HEAD', url: '/off', headers: { 'accept-encoding': 'br' } });
    expect(plainHead.headers['content-encoding']).toBeUndefined();
    expect(Number(plainHead.headers['content-length'])).toBe(Buffer.byteLength(body));
  });
});
