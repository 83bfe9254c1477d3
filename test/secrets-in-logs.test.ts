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
