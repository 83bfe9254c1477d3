import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { heartbeatPayload, openEventStream } from './helpers/presence.ts';
import { waitFor } from './helpers/wait.ts';

const ADMIN = 'security-admin-secret';
const project = (slug: string) => ({
  slug,
  name: slug,
  hub_url: `http://${slug}.local:8000`,
  mesh_namespace: `hub.${slug}`,
});

describe('HTTP limits and headers', () => {
  let app: App | undefined;
  afterEach(async () => {
    await app?.close();
    app = undefined;
  });

  it('sends security headers and a CSP on API answers and on the view', async () => {
    app = await buildTestApp();
    for (const url of ['/api/fed/projects', '/api/fed/health', '/ecosystem', '/api/fed/docs/']) {
      const res = await app.inject(url);
      expect(res.headers['x-content-type-options'], url).toBe('nosniff');
      expect(res.headers['x-frame-options'], url).toBeDefined();
      expect(String(res.headers['content-security-policy']), url).toContain("script-src 'self'");
      expect(String(res.headers['content-security-policy']), url).toContain("frame-ancestors 'none'");
    }
  });

  it('limits writes per IP: 429 with Retry-After and a JSON error; reads and other IPs go on', async () => {
    app = await buildTestApp({ FED_RATE_LIMIT_WRITES: '3', FED_RATE_LIMIT_WINDOW_S: '600' });
    const slug = uniqueSlug('rl');
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await app.inject({ method: 'POST', url: '/api/fed/projects', payload: project(slug) });
      codes.push(res.statusCode);
    }
    expect(codes).toEqual([201, 200, 200]);
    const refused = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeatPayload(slug),
    });
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(600);
    expect(refused.json()).toMatchObject({
      error: 'rate_limited',
      message: expect.stringMatching(/retry in/),
    });
    expect((await app.inject(`/api/fed/projects/${slug}`)).statusCode).toBe(200);
    const elsewhere = await app.inject({
      method: 'DELETE',
      url: `/api/fed/projects/${slug}`,
      remoteAddress: '10.1.2.3',
    });
    expect(elsewhere.statusCode).toBe(204);
  });

  it('refuses an address that keeps failing authentication, even once it has the right token', async () => {
    app = await buildTestApp({
      FED_ADMIN_TOKEN: ADMIN,
      FED_RATE_LIMIT_AUTH_FAILURES: '4',
      FED_RATE_LIMIT_WINDOW_S: '600',
    });
    const post = (token: string, remoteAddress = '127.0.0.1') =>
      app?.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: project(uniqueSlug('guess')),
        headers: { authorization: `Bearer ${token}` },
        remoteAddress,
      });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) codes.push((await post(`guess-${i}`))?.statusCode ?? 0);
    expect(codes).toEqual([401, 401, 401, 401]);
    const locked = await post(ADMIN);
    expect(locked?.statusCode).toBe(429);
    expect(locked?.headers['retry-after']).toBeDefined();
    expect(locked?.json()).toMatchObject({ error: 'rate_limited' });
    expect(locked?.body).not.toContain(ADMIN);
    // Reads from that address are refused too; health stays open for probes; other addresses go on.
    expect((await app.inject('/api/fed/projects')).statusCode).toBe(429);
    expect((await app.inject('/api/fed/health')).statusCode).toBe(200);
    expect((await post(ADMIN, '10.9.8.7'))?.statusCode).toBe(201);
  });

  it('turns either limit off with 0', async () => {
    app = await buildTestApp({
      FED_ADMIN_TOKEN: ADMIN,
      FED_RATE_LIMIT_WRITES: '0',
      FED_RATE_LIMIT_AUTH_FAILURES: '0',
    });
    for (let i = 0; i < 30; i++) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/fed/projects',
        payload: project(uniqueSlug('off')),
        headers: { authorization: 'Bearer wrong' },
      });
      expect(res.statusCode).toBe(401);
    }
  });

  it('keeps CORS closed by default', async () => {
    app = await buildTestApp();
    const res = await app.inject({ url: '/api/fed/projects', headers: { origin: 'https://evil.example' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/api/fed/projects',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('opens CORS to the origins FED_CORS_ORIGINS names, and only to them', async () => {
    app = await buildTestApp({ FED_CORS_ORIGINS: 'https://ops.example.com' });
    const ok = await app.inject({
      method: 'OPTIONS',
      url: '/api/fed/projects',
      headers: { origin: 'https://ops.example.com', 'access-control-request-method': 'POST' },
    });
    expect(ok.statusCode).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe('https://ops.example.com');
    expect(String(ok.headers['access-control-allow-headers'])).toContain('authorization');
    const other = await app.inject({ url: '/api/fed/projects', headers: { origin: 'https://evil.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('caps open SSE clients with a 503 naming the limit, and takes new ones once one leaves', async () => {
    app = await buildTestApp({ FED_SSE_MAX_CLIENTS: '2' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no TCP address');
    const url = `http://127.0.0.1:${address.port}/api/fed/events`;
    const first = await openEventStream(url);
    const second = await openEventStream(url);
    const refused = await fetch(url);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('30');
    const body = (await refused.json()) as { error: string; message: string };
    expect(body.error).toBe('unavailable');
    expect(body.message).toContain('FED_SSE_MAX_CLIENTS');
    await first.close();
    const third = await waitFor(
      async () => {
        try {
          return await openEventStream(url);
        } catch {
          return undefined;
        }
      },
      { what: 'a free SSE slot' },
    );
    await Promise.all([second.close(), third.close()]);
  });
});
