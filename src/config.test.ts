import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';
import { ConfigError } from './errors.ts';

describe('loadConfig', () => {
  it('gives the contract defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 8001,
      host: '127.0.0.1',
      databaseUrl: undefined,
      dataDir: './.federation',
      natsUrl: 'nats://127.0.0.1:4222',
      logLevel: 'info',
      projectsFile: 'config/projects.yaml',
      autoRegister: true,
      heartbeatIntervalS: 30,
      degradedAfterS: 45,
      offlineAfterS: 90,
      metricsRetentionDays: 30,
      heartbeatBufferMaxBytes: 268435456,
    });
    expect(c.sweepIntervalS).toBeLessThanOrEqual(0.5);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('reads NATS_URL=none as NATS disabled and memory:// as in-memory PGlite', () => {
    const c = loadConfig({ NATS_URL: 'none', DATABASE_URL: 'memory://', FED_DEGRADED_AFTER_S: '0' });
    expect(c.natsUrl).toBeUndefined();
    expect(c.databaseUrl).toBe('memory://');
    expect(c.degradedAfterS).toBe(0);
  });

  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /^PORT="abc" is invalid: expected an integer from 0 to 65535$/],
    [{ PORT: '70000' }, /^PORT=/],
    [{ FED_OFFLINE_AFTER_S: '-5' }, /^FED_OFFLINE_AFTER_S=/],
    [{ FED_DEGRADED_AFTER_S: '120' }, /^FED_DEGRADED_AFTER_S=120 is invalid: .*FED_OFFLINE_AFTER_S=90/],
    [{ FED_AUTO_REGISTER: 'maybe' }, /^FED_AUTO_REGISTER="maybe" is invalid: expected true or false$/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL="loud" is invalid/],
    [{ DATABASE_URL: 'mysql://x' }, /^DATABASE_URL is invalid/],
    [{ NATS_URL: 'http://x' }, /^NATS_URL="http:\/\/x" is invalid/],
    [{ HOST: '0.0.0.0' }, /^HOST=0.0.0.0 is not a loopback address: set FED_ADMIN_TOKEN/],
    [{ FED_SWEEP_INTERVAL_S: '0' }, /^FED_SWEEP_INTERVAL_S=/],
    [
      { FED_HEARTBEAT_BUFFER_MAX_BYTES: '1000' },
      /^FED_HEARTBEAT_BUFFER_MAX_BYTES="1000" is invalid: expected an integer from 65536 to 8589934592$/,
    ],
    [{ FED_HEARTBEAT_BUFFER_MAX_BYTES: '64MiB' }, /^FED_HEARTBEAT_BUFFER_MAX_BYTES="64MiB" is invalid/],
    [{ FED_CORS_ORIGINS: 'https://ops.example.com/path' }, /^FED_CORS_ORIGINS=.* is invalid: expected/],
    [{ FED_RATE_LIMIT_WRITES: '-1' }, /^FED_RATE_LIMIT_WRITES="-1" is invalid/],
    [{ FED_SSE_MAX_CLIENTS: '0' }, /^FED_SSE_MAX_CLIENTS="0" is invalid/],
    // The password in a bad NATS_URL is not echoed back.
    [{ NATS_URL: 'http://user:hunter2@x' }, /^NATS_URL="http:\/\/\*\*\*@x" is invalid/],
  ];
  it.each(bad)('refuses %o with one line naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    try {
      loadConfig(env);
    } catch (err) {
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('derives the default thresholds from FED_HEARTBEAT_INTERVAL_S (1.5× and 3×)', () => {
    expect(loadConfig({ FED_HEARTBEAT_INTERVAL_S: '10' })).toMatchObject({
      degradedAfterS: 15,
      offlineAfterS: 30,
    });
    expect(loadConfig({ FED_HEARTBEAT_INTERVAL_S: '10', FED_OFFLINE_AFTER_S: '60' })).toMatchObject({
      degradedAfterS: 15,
      offlineAfterS: 60,
    });
  });

  it('keeps CORS closed unless FED_CORS_ORIGINS names origins, and limits on by default', () => {
    expect(loadConfig({})).toMatchObject({
      corsOrigins: [],
      rateLimitWrites: 600,
      rateLimitAuthFailures: 20,
      rateLimitWindowS: 60,
      sseMaxClients: 1000,
    });
    expect(
      loadConfig({ FED_CORS_ORIGINS: 'https://ops.example.com, http://localhost:5173' }).corsOrigins,
    ).toEqual(['https://ops.example.com', 'http://localhost:5173']);
  });

  it('keeps webhooks off private addresses and retrying for 24 h by default; flap damping on', () => {
    expect(loadConfig({})).toMatchObject({
      webhookAllowPrivate: false,
      webhookMaxAgeS: 86_400,
      webhookTimeoutMs: 5000,
      flapChanges: 5,
      flapWindowS: 600,
      flapSettleS: 300,
    });
    expect(loadConfig({ FED_WEBHOOK_ALLOW_PRIVATE: 'true' }).webhookAllowPrivate).toBe(true);
    expect(() => loadConfig({ FED_WEBHOOK_ALLOW_PRIVATE: 'maybe' })).toThrow(/^FED_WEBHOOK_ALLOW_PRIVATE=/);
    expect(() => loadConfig({ FED_FLAP_CHANGES: '0' })).toThrow(/^FED_FLAP_CHANGES=/);
  });

  it('binds a non-loopback HOST when an admin token is set', () => {
    expect(loadConfig({ HOST: '0.0.0.0', FED_ADMIN_TOKEN: 'x' }).host).toBe('0.0.0.0');
  });
});
