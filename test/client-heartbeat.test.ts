import { type ChildProcess, spawn } from 'node:child_process';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { Value } from 'typebox/value';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_JITTER_RATIO,
  FederationHeartbeat,
  HeartbeatConfigError,
  jitteredDelayMs,
} from '../src/client/index.ts';
import { type Heartbeat, HeartbeatSchema, presenceSubject } from '../src/protocol/index.ts';
import { uniqueSlug } from './helpers/app.ts';
import { SHARED_NATS_URL } from './helpers/nats-server.ts';
import { waitFor } from './helpers/wait.ts';

interface Received {
  hb: Heartbeat;
  at: number;
}

/** Collects every heartbeat published on one slug's subject. */
function collect(nc: NatsConnection, slug: string): { received: Received[]; sub: Subscription } {
  const received: Received[] = [];
  const sub = nc.subscribe(presenceSubject(slug));
  void (async () => {
    for await (const m of sub) received.push({ hb: m.json<Heartbeat>(), at: Date.now() });
  })();
  return { received, sub };
}

let nc: NatsConnection;
beforeAll(async () => {
  nc = await connect({ servers: SHARED_NATS_URL });
});
afterAll(async () => {
  await nc.drain();
});

describe('jitteredDelayMs', () => {
  it('stays within ±jitter of the interval at the extremes and spreads between them', () => {
    expect(jitteredDelayMs(30, 0.1, () => 0)).toBe(27_000);
    expect(jitteredDelayMs(30, 0.1, () => 0.999999)).toBeCloseTo(33_000, 0);
    expect(jitteredDelayMs(30, 0.1, () => 0.5)).toBe(30_000);
    const delays = Array.from({ length: 2000 }, () => jitteredDelayMs(30));
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(30_000 * (1 - DEFAULT_JITTER_RATIO));
      expect(d).toBeLessThanOrEqual(30_000 * (1 + DEFAULT_JITTER_RATIO));
    }
    // A fleet restarted together must not beat in lockstep: the delays really differ.
    expect(new Set(delays.map((d) => Math.round(d / 100))).size).toBeGreaterThan(40);
  });

  it('with no jitter is exactly the interval', () => {
    expect(jitteredDelayMs(0.2, 0, Math.random)).toBe(200);
  });
});

describe('FederationHeartbeat configuration', () => {
  it('takes its defaults from the environment', () => {
    const hb = new FederationHeartbeat({
      env: { PROJECT_SLUG: 'from-env', HUB_URL: 'https://hub.example', HEARTBEAT_INTERVAL: '12' },
    });
    expect(hb.slug).toBe('from-env');
    expect(hb.meshNamespace).toBe('hub.from-env');
    expect(hb.intervalS).toBe(12);
    expect(hb.heartbeat().hub_url).toBe('https://hub.example');
  });

  it('falls back to the seed defaults', () => {
    const hb = new FederationHeartbeat({ env: {} });
    expect(hb.slug).toBe('commandcenter');
    expect(hb.hubUrl).toBe('http://localhost:8000');
    expect(hb.intervalS).toBe(30);
    expect(hb.natsUrl).toBe('nats://127.0.0.1:4222');
  });

  it.each([
    ['PROJECT_SLUG', { PROJECT_SLUG: 'Not_A_Slug' }],
    ['PROJECT_SLUG', { PROJECT_SLUG: 'x'.repeat(51) }],
    ['HUB_URL', { HUB_URL: 'ftp://nope' }],
    ['HEARTBEAT_INTERVAL', { HEARTBEAT_INTERVAL: 'soon' }],
    ['HEARTBEAT_INTERVAL', { HEARTBEAT_INTERVAL: '0' }],
    ['HEARTBEAT_INTERVAL', { HEARTBEAT_INTERVAL: '-5' }],
    ['NATS_URL', { NATS_URL: 'localhost:4222' }],
  ])('a bad %s throws naming the variable', (name, env) => {
    let caught: unknown;
    try {
      new FederationHeartbeat({ env });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(HeartbeatConfigError);
    expect((caught as Error).message).toMatch(new RegExp(`^${name}=.* is invalid: expected `));
  });

  it('an option wins over the environment, and a bad option is named as the option', () => {
    expect(new FederationHeartbeat({ slug: 'opt', env: { PROJECT_SLUG: 'env' } }).slug).toBe('opt');
    expect(() => new FederationHeartbeat({ intervalS: 0, env: {} })).toThrow(/^intervalS=0 is invalid/);
    expect(() => new FederationHeartbeat({ health: 'sick' as 'ok', env: {} })).toThrow(/^health=/);
  });
});

describe('FederationHeartbeat over NATS', () => {
  it('publishes at start, then again after the interval, with a valid payload', async () => {
    const slug = uniqueSlug('hb');
    const { received, sub } = collect(nc, slug);
    await nc.flush();
    const hb = new FederationHeartbeat({
      connection: nc,
      slug: slug,
      hubUrl: 'http://127.0.0.1:9000',
      intervalS: 0.2,
      version: '1.2.3',
      name: 'Heartbeat Test',
      tags: ['ts', 'test'],
      integrations: [{ to: 'other-project', kind: 'api', strength: 0.5 }],
      env: {},
    });
    const started = Date.now();
    await hb.start();
    try {
      await waitFor(() => received.length >= 1, { what: 'first heartbeat' });
      // The first one does not wait for the interval.
      expect((received[0]?.at ?? 0) - started).toBeLessThan(150);
      await waitFor(() => received.length >= 3, { what: 'heartbeats after the interval' });
    } finally {
      await hb.stop();
      sub.unsubscribe();
    }
    for (const { hb: payload } of received) {
      expect(Value.Errors(HeartbeatSchema, payload)).toEqual([]);
      expect(Date.parse(payload.timestamp)).not.toBeNaN();
      expect(payload.timestamp).toMatch(/Z$/);
    }
    expect(received[0]?.hb).toMatchObject({
      project_slug: slug,
      hub_url: 'http://127.0.0.1:9000',
      mesh_namespace: `hub.${slug}`,
      version: '1.2.3',
      name: 'Heartbeat Test',
      tags: ['ts', 'test'],
      interval_s: 0.2,
      integrations: [{ to: 'other-project', kind: 'api', strength: 0.5 }],
    });
    // Gaps follow the jittered interval (0.18–0.22 s), with slack for a busy 2-core machine.
    const gaps = received.slice(1).map((r, i) => r.at - (received[i]?.at ?? 0));
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(170);
      expect(g).toBeLessThan(1000);
    }
    expect(hb.stats.failed).toBe(0);
  });

  it('setHealth changes what the next heartbeats report', async () => {
    const slug = uniqueSlug('hb');
    const { received, sub } = collect(nc, slug);
    await nc.flush();
    const hb = new FederationHeartbeat({ connection: nc, slug: slug, intervalS: 0.1, env: {} });
    await hb.start();
    try {
      await waitFor(() => received.length >= 1);
      expect(received[0]?.hb.health).toBeUndefined();
      hb.setHealth('degraded');
      await waitFor(() => received.at(-1)?.hb.health === 'degraded', { what: 'a degraded heartbeat' });
      hb.setHealth('ok');
      await waitFor(() => received.at(-1)?.hb.health === 'ok', { what: 'an ok heartbeat' });
    } finally {
      await hb.stop();
      sub.unsubscribe();
    }
  });

  it('stop() stops publishing and a second start is refused', async () => {
    const slug = uniqueSlug('hb');
    const { received, sub } = collect(nc, slug);
    await nc.flush();
    const hb = new FederationHeartbeat({ connection: nc, slug: slug, intervalS: 0.05, env: {} });
    await hb.start();
    await expect(hb.start()).rejects.toThrow(/already running/);
    await waitFor(() => received.length >= 2);
    await hb.stop();
    expect(hb.running).toBe(false);
    await nc.flush();
    const count = received.length;
    // Wait for several intervals' worth of messages from a second, live publisher on the same
    // connection: if the stopped one were still beating, its messages would have arrived too.
    const marker = uniqueSlug('hb');
    const probe = collect(nc, marker);
    await nc.flush();
    const live = new FederationHeartbeat({ connection: nc, slug: marker, intervalS: 0.05, env: {} });
    await live.start();
    await waitFor(() => probe.received.length >= 5, { what: 'the live publisher' });
    await live.stop();
    await nc.flush();
    expect(received.length).toBe(count);
    // It does not close a connection it did not open.
    expect(nc.isClosed()).toBe(false);
    sub.unsubscribe();
    probe.sub.unsubscribe();
  });

  it('opens, and on stop drains, a connection of its own', async () => {
    const slug = uniqueSlug('hb');
    const { received, sub } = collect(nc, slug);
    await nc.flush();
    const hb = new FederationHeartbeat({
      slug: slug,
      intervalS: 0.1,
      env: { NATS_URL: SHARED_NATS_URL },
    });
    await hb.start();
    await waitFor(() => received.length >= 2);
    await hb.stop();
    expect(hb.stats.published).toBeGreaterThanOrEqual(2);
    sub.unsubscribe();
  });

  it('start() rejects with a clear message when NATS is unreachable', async () => {
    const hb = new FederationHeartbeat({
      slug: uniqueSlug('hb'),
      natsUrl: 'nats://127.0.0.1:1',
      env: {},
      connectionOptions: { timeout: 1000 },
    });
    await expect(hb.start()).rejects.toThrow(/cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
    expect(hb.running).toBe(false);
  });
});

/** Runs `federation <args>` as a child process and returns its exit code and output. */
function runCli(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child: ChildProcess = spawn(process.execPath, ['bin/federation.js', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => {
      stdout += d;
    });
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('federation heartbeat (CLI)', () => {
  it('--once publishes one valid heartbeat and exits 0', async () => {
    const slug = uniqueSlug('cli');
    const { received, sub } = collect(nc, slug);
    await nc.flush();
    const res = await runCli(
      [
        'heartbeat',
        '--once',
        '--slug',
        slug,
        '--version',
        '2.0.0',
        '--tag',
        'a',
        '--tag',
        'b',
        '--health',
        'degraded',
      ],
      { NATS_URL: SHARED_NATS_URL },
    );
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    await waitFor(() => received.length >= 1);
    sub.unsubscribe();
    expect(received).toHaveLength(1);
    const hb = received[0]?.hb;
    expect(Value.Errors(HeartbeatSchema, hb)).toEqual([]);
    expect(hb).toMatchObject({
      project_slug: slug,
      mesh_namespace: `hub.${slug}`,
      hub_url: 'http://localhost:8000',
      version: '2.0.0',
      tags: ['a', 'b'],
      health: 'degraded',
      interval_s: 30,
    });
  });

  it('a bad slug exits non-zero naming the flag', async () => {
    const res = await runCli(['heartbeat', '--once', '--slug', 'Bad Slug!'], { NATS_URL: SHARED_NATS_URL });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(
      /--slug "Bad Slug!" is invalid: expected lowercase letters, digits and dashes/,
    );
  });

  it('a bad HEARTBEAT_INTERVAL exits non-zero naming the variable', async () => {
    const res = await runCli(['heartbeat', '--once', '--slug', 'fine'], {
      NATS_URL: SHARED_NATS_URL,
      HEARTBEAT_INTERVAL: 'often',
    });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/HEARTBEAT_INTERVAL="often" is invalid/);
  });
});
