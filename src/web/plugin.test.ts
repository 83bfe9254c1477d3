import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { errorsPlugin } from '../http/errors.ts';
import { webPlugin } from './plugin.ts';

describe('web plugin', () => {
  const dirs: string[] = [];
  const apps: FastifyInstance[] = [];

  async function serve(files: Record<string, string>): Promise<FastifyInstance> {
    const dir = mkdtempSync(join(tmpdir(), 'web-dist-'));
    dirs.push(dir);
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), body);
    }
    const app = Fastify({ logger: false });
    apps.push(app);
    await app.register(errorsPlugin);
    await app.register(webPlugin, { distDir: dir });
    await app.ready();
    return app;
  }

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('answers 503 with the command to run when the view is not built', async () => {
    const app = await serve({});
    for (const url of ['/ecosystem', '/ecosystem/', '/ecosystem/assets/index.js']) {
      const res = await app.inject(url);
      expect(res.statusCode, url).toBe(503);
      expect(res.json()).toMatchObject({ error: 'unavailable' });
      expect(res.json().message).toContain('npm run build:web');
    }
  });

  it('serves index.html at /ecosystem and hashed assets with a long cache', async () => {
    const app = await serve({
      'index.html': '<!doctype html><title>Ecosystem</title>',
      'assets/index-abc123.js': 'console.log(1)',
    });
    for (const url of ['/ecosystem', '/ecosystem/']) {
      const res = await app.inject(url);
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toContain('text/html');
      expect(res.headers['cache-control']).toBe('no-cache');
      expect(res.body).toContain('<title>Ecosystem</title>');
    }
    const asset = await app.inject('/ecosystem/assets/index-abc123.js');
    expect(asset.statusCode).toBe(200);
    expect(asset.headers['content-type']).toContain('javascript');
    expect(asset.headers['cache-control']).toContain('immutable');

    const missing = await app.inject('/ecosystem/assets/gone.js');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found' });
  });

  it('sends / to the ecosystem view', async () => {
    const app = await serve({ 'index.html': '<!doctype html>' });
    const res = await app.inject('/');
    expect(res.statusCode).toBe(302);
    expect(res.headers.location).toBe('/ecosystem');
  });
});
