import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { testConfig } from '../src/config.ts';

describe('secrets never reach the log', () => {
  it('masks ?access_token= and drops the Authorization header from request logs', async () => {
    const stream = new PassThrough();
    let log = '';
    stream.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    const app = await buildApp({
      config: testConfig({
        LOG_LEVEL: 'info',
        FED_ADMIN_TOKEN: 'ADMIN-SECRET-1',
        FED_READ_TOKEN: 'READ-SECRET-2',
      }),
      logStream: stream,
    });
    try {
      const byQuery = await app.inject({ url: '/api/fed/projects?limit=5&access_token=READ-SECRET-2' });
      expect(byQuery.statusCode).toBe(200);
      const byHeader = await app.inject({
        method: 'POST',
        url: '/api/fed/projects',
        headers: { authorization: 'Bearer ADMIN-SECRET-1' },
        payload: {
          slug: 'logged',
          name: 'Logged',
          hub_url: 'http://localhost:1',
          mesh_namespace: 'hub.logged',
        },
      });
      expect(byHeader.statusCode).toBe(201);
      const refused = await app.inject({ url: '/api/fed/projects?access_token=WRONG-SECRET-3' });
      expect(refused.statusCode).toBe(401);
    } finally {
      await app.close();
    }
    expect(log).toContain('/api/fed/projects?limit=5&access_token=***');
    expect(log).not.toContain('READ-SECRET-2');
    expect(log).not.toContain('ADMIN-SECRET-1');
    expect(log).not.toContain('WRONG-SECRET-3');
  });
});

describe('credentials of NATS and PostgreSQL never reach the log or an error', () => {
  it('keeps NATS_PASS, NATS_TOKEN and a password in NATS_URL or DATABASE_URL out of every line', async () => {
    const stream = new PassThrough();
    let log = '';
    stream.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    // Nothing listens on port 9: NATS is unreachable, and the service says so in its log.
    const app = await buildApp({
      config: testConfig({
        LOG_LEVEL: 'debug',
        NATS_URL: 'nats://nuser:NATS-URL-PW-4@127.0.0.1:9',
        NATS_USER: 'nuser',
        NATS_PASS: 'NATS-PASS-5',
        NATS_TOKEN: 'NATS-TOKEN-6',
      }),
      logStream: stream,
      natsFirstConnectWaitMs: 3000,
    });
    let health = '';
    try {
      health = (await app.inject('/api/fed/health')).body;
    } finally {
      await app.close();
    }
    expect(log).toContain('NATS unreachable');
    let startError = '';
    try {
      await buildApp({
        config: testConfig({ LOG_LEVEL: 'debug', DATABASE_URL: 'postgres://pguser:PG-PW-7@127.0.0.1:9/x' }),
        logStream: stream,
      });
    } catch (err) {
      startError = `${(err as Error).message} ${String((err as Error).stack)}`;
    }
    expect(startError).not.toBe('');
    for (const secret of ['NATS-URL-PW-4', 'NATS-PASS-5', 'NATS-TOKEN-6', 'PG-PW-7']) {
      expect(log, secret).not.toContain(secret);
      expect(health, secret).not.toContain(secret);
      expect(startError, secret).not.toContain(secret);
    }
  });
});

describe('webhook secrets never reach the log or a response', () => {
  it('keeps a notifier secret and a Slack-style URL path out of every line while deliveries fail', async () => {
    const stream = new PassThrough();
    let log = '';
    stream.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    const app = await buildApp({
      config: testConfig({
        LOG_LEVEL: 'debug',
        FED_WEBHOOK_ALLOW_PRIVATE: 'true',
        FED_WEBHOOK_RETRY_MAX_S: '0.1',
      }),
      logStream: stream,
    });
    const bodies: string[] = [];
    try {
      // Port 9: nothing listens, so every attempt fails and is logged.
      const created = await app.inject({
        method: 'POST',
        url: '/api/fed/notifiers',
        payload: {
          url: 'http://127.0.0.1:9/services/T0/B0/HOOK-PATH-8',
          secret: 'WEBHOOK-SECRET-9-0123456789',
        },
      });
      bodies.push(created.body);
      expect(created.statusCode).toBe(201);
      await app.inject({
        method: 'POST',
        url: '/api/fed/heartbeats',
        payload: {
          project_slug: 'hooked',
          hub_url: 'http://x.local',
          mesh_namespace: 'hub.hooked',
          timestamp: new Date().toISOString(),
        },
      });
      const deadline = Date.now() + 10_000;
      while (!log.includes('notification attempt failed') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      bodies.push(
        (await app.inject('/api/fed/notifiers')).body,
        (await app.inject('/api/fed/notifications')).body,
      );
    } finally {
      await app.close();
    }
    expect(log).toContain('notification attempt failed');
    for (const text of [log, ...bodies]) {
      expect(text).not.toContain('WEBHOOK-SECRET-9');
      expect(text).not.toContain('HOOK-PATH-8');
    }
  });
});
