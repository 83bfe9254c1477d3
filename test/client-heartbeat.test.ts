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
import { SHARED_NATS_URL, startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
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
    }
    // stop() sends one last heartbeat saying the project is leaving, right after the last regular one.
    await waitFor(() => received.at(-1)?.hb.state === 'leaving', { what: 'the leaving heartbeat' });
    sub.unsubscribe();
    const leaving = received.pop();
    expect(received.every((r) => r.hb.state === undefined)).toBe(true);
    expect(leaving?.hb).toMatchObject({ project_slug: slug, state: 'leaving', version: '1.2.3' });
    for (const { hb: payload } of [...received, ...(leaving ? [leaving] : [])]) {
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

  it('beat() rejects with a clear message when NATS is unreachable', async () => {
    const hb = new FederationHeartbeat({
      slug: uniqueSlug('hb'),
      natsUrl: 'nats://127.0.0.1:1',
      env: {},
      connectionOptions: { timeout: 1000 },
    });
    await expect(hb.beat()).rejects.toThrow(/cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
    await hb.stop();
  });
});

describe('FederationHeartbeat started before NATS', () => {
  let server: TestNatsServer;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server.destroy();
  });

  function quietPublisher(slug: string) {
    const warnings: string[] = [];
    const infos: string[] = [];
    const hb = new FederationHeartbeat({
      slug,
      intervalS: 0.2,
      natsUrl: server.url,
      env: {},
      logger: { warn: (m) => warnings.push(m), info: (m) => infos.push(m) },
    });
    return { hb, warnings, infos };
  }

  it('start() resolves while NATS is down, keeps trying, and beats once NATS is up', async () => {
    await server.stop();
    const slug = uniqueSlug('hb');
    const { hb, warnings, infos } = quietPublisher(slug);
    try {
      await hb.start();
      expect(hb.running).toBe(true);
      expect(hb.stats.failed).toBeGreaterThanOrEqual(1);
      expect(hb.stats.lastError).toMatch(/cannot reach NATS at nats:\/\/127\.0\.0\.1:/);
      expect(warnings[0]).toMatch(/cannot connect, retrying/);
      await waitFor(() => hb.stats.failed >= 3, { what: 'connect retries during the outage' });
      // Rate-limited: one warning for the whole outage so far.
      expect(warnings).toHaveLength(1);

      await server.start();
      const sub = await connect({ servers: server.url });
      try {
        const { received } = collect(sub, slug);
        await sub.flush();
        await waitFor(() => received.length >= 2, { what: 'heartbeats after NATS came up' });
        expect(Value.Errors(HeartbeatSchema, received[0]?.hb)).toEqual([]);
        expect(received[0]?.hb.project_slug).toBe(slug);
        expect(infos.some((m) => /connected to NATS/.test(m))).toBe(true);
      } finally {
        await sub.drain();
      }
    } finally {
      await hb.stop();
    }
  });

  it('stop() during the outage cancels the pending connect attempts', async () => {
    await server.stop();
    const stopped = quietPublisher(uniqueSlug('hb'));
    // A second publisher on the same schedule shows how many attempts the stopped one would have made.
    const witness = quietPublisher(uniqueSlug('hb'));
    await stopped.hb.start();
    await witness.hb.start();
    try {
      await waitFor(() => stopped.hb.stats.failed >= 2, { what: 'connect retries' });
      await stopped.hb.stop();
      expect(stopped.hb.running).toBe(false);
      const failed = stopped.hb.stats.failed;
      const witnessFailed = witness.hb.stats.failed;
      await waitFor(() => witness.hb.stats.failed >= witnessFailed + 5, { what: 'the witness retrying' });
      expect(stopped.hb.stats.failed).toBe(failed);

      // Nor does a late attempt connect and beat once NATS is back.
      await server.start();
      const sub = await connect({ servers: server.url });
      try {
        const stoppedSeen = collect(sub, stopped.hb.slug).received;
        const witnessSeen = collect(sub, witness.hb.slug).received;
        await sub.flush();
        await waitFor(() => witnessSeen.length >= 5, { what: 'the witness beating' });
        expect(stoppedSeen).toEqual([]);
        expect(stopped.hb.stats.published).toBe(0);
        expect(stopped.hb.stats.failed).toBe(failed);
      } finally {
        await sub.drain();
      }
    } finally {
      await witness.hb.stop();
    }
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

  it('--once fails fast with exit 1 when NATS is unreachable', async () => {
    const res = await runCli([
      'heartbeat',
      '--once',
      '--slug',
      uniqueSlug('cli'),
      '--nats-url',
      'nats://127.0.0.1:1',
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
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
