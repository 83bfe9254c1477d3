import { type ConnectionOptions, connect, type NatsConnection } from '@nats-io/transport-node';
import {
  EDGE_KINDS,
  type Heartbeat,
  MAX_HEARTBEAT_BYTES,
  MAX_INTERVAL_S,
  MIN_INTERVAL_S,
  presenceSubject,
  SLUG_MAX_LENGTH,
  SLUG_PATTERN,
} from '../protocol/wire.ts';
import { projectConnectionOptions } from './connection.ts';

export const DEFAULT_PROJECT_SLUG = 'commandcenter';
export const DEFAULT_HUB_URL = 'http://localhost:8000';
export const DEFAULT_HEARTBEAT_INTERVAL_S = 30;
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';
export const DEFAULT_VERSION = 'unknown';
/** ±10 % spread around the interval, so a fleet restarted together drifts apart instead of beating in lockstep. */
export const DEFAULT_JITTER_RATIO = 0.1;
export const MIN_HEARTBEAT_INTERVAL_S = MIN_INTERVAL_S;
export const MAX_HEARTBEAT_INTERVAL_S = MAX_INTERVAL_S;
/** A failing publisher logs at most once per this period (with the count of failures since). */
export const PUBLISH_ERROR_LOG_PERIOD_MS = 60_000;
/** While NATS cannot be reached at start, the publisher tries again this often (or every interval, if shorter). */
export const CONNECT_RETRY_S = 5;
/** How long stop() waits for the server to take the leaving heartbeat before closing anyway. */
export const LEAVE_FLUSH_TIMEOUT_MS = 2_000;

export type ReportedHealth = 'ok' | 'degraded';
export type HeartbeatIntegration = NonNullable<Heartbeat['integrations']>[number];

/** Enough of a logger (console, pino) for the publisher's rare messages. */
export interface HeartbeatLogger {
  warn(msg: string): void;
  info?(msg: string): void;
}

export interface FederationHeartbeatOptions {
  /** Default: PROJECT_SLUG, else "commandcenter". */
  slug?: string;
  /** Default: HUB_URL, else http://localhost:8000. */
  hubUrl?: string;
  /** Default: `hub.<slug>`. */
  meshNamespace?: string;
  /** Seconds between heartbeats. Default: HEARTBEAT_INTERVAL, else 30. */
  intervalS?: number;
  /** Used when the publisher opens its own connection. Default: NATS_URL, else nats://127.0.0.1:4222. */
  natsUrl?: string;
  /** An existing connection to publish on; the publisher then never closes it. */
  connection?: NatsConnection;
  /** Extra options for the connection the publisher opens itself (auth, TLS, name …). */
  connectionOptions?: Partial<ConnectionOptions>;
  version?: string;
  name?: string;
  tags?: string[];
  health?: ReportedHealth;
  integrations?: HeartbeatIntegration[];
  /** Fraction of the interval each delay may move either way. Default 0.1. */
  jitter?: number;
  /** Where the defaults come from; defaults to process.env. */
  env?: Record<string, string | undefined>;
  logger?: HeartbeatLogger;
}

export interface HeartbeatStats {
  published: number;
  failed: number;
  lastPublishedAt: Date | undefined;
  lastError: string | undefined;
}

/** A bad option or environment value; `field` is the variable or option name. */
export class HeartbeatConfigError extends Error {
  readonly field: string;
  readonly value: unknown;
  readonly expected: string;
  constructor(field: string, value: unknown, expected: string) {
    super(`${field}=${JSON.stringify(value)} is invalid: expected ${expected}`);
    this.name = 'HeartbeatConfigError';
    this.field = field;
    this.value = value;
    this.expected = expected;
  }
}

const SLUG_RE = new RegExp(SLUG_PATTERN);
const MESH_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const NATS_URL_RE = /^(nats|tls|ws|wss):\/\/\S+$/;

/**
 * The delay before the next heartbeat: the interval moved by up to `jitter` of itself either way.
 * `random` returns [0, 1) like Math.random.
 */
export function jitteredDelayMs(
  intervalS: number,
  jitter = DEFAULT_JITTER_RATIO,
  random: () => number = Math.random,
): number {
  const spread = Math.min(Math.max(jitter, 0), 1);
  return intervalS * 1000 * (1 + spread * (2 * random() - 1));
}

interface Resolved {
  slug: string;
  hubUrl: string;
  meshNamespace: string;
  intervalS: number;
  natsUrl: string;
  version: string;
  name: string | undefined;
  tags: string[] | undefined;
  health: ReportedHealth | undefined;
  integrations: HeartbeatIntegration[] | undefined;
  jitter: number;
}

function envValue(env: Record<string, string | undefined>, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/** Options win over the environment; every value is checked once here, and an error names its source. */
export function resolveHeartbeatOptions(opts: FederationHeartbeatOptions = {}): Resolved {
  const env = opts.env ?? process.env;
  const pick = <T>(option: T | undefined, optionName: string, envName: string) =>
    option !== undefined
      ? { value: option as T | string, field: optionName }
      : { value: envValue(env, envName), field: envName };

  const slugSource = pick(opts.slug, 'slug', 'PROJECT_SLUG');
  const slug = slugSource.value ?? DEFAULT_PROJECT_SLUG;
  if (typeof slug !== 'string' || !SLUG_RE.test(slug) || slug.length > SLUG_MAX_LENGTH) {
    throw new HeartbeatConfigError(
      slugSource.field,
      slug,
      `lowercase letters, digits and dashes, at most ${SLUG_MAX_LENGTH} characters`,
    );
  }

  const hub = pick(opts.hubUrl, 'hubUrl', 'HUB_URL');
  const hubUrl = hub.value ?? DEFAULT_HUB_URL;
  if (typeof hubUrl !== 'string' || !/^https?:\/\/\S+$/.test(hubUrl) || hubUrl.length > 500) {
    throw new HeartbeatConfigError(hub.field, hubUrl, 'an http:// or https:// URL of at most 500 characters');
  }

  const meshNamespace = opts.meshNamespace ?? `hub.${slug}`;
  if (!MESH_RE.test(meshNamespace) || meshNamespace.length > 100) {
    throw new HeartbeatConfigError('meshNamespace', meshNamespace, 'dot-separated NATS subject tokens');
  }

  const interval = pick(opts.intervalS, 'intervalS', 'HEARTBEAT_INTERVAL');
  const intervalS = interval.value === undefined ? DEFAULT_HEARTBEAT_INTERVAL_S : Number(interval.value);
  if (
    !Number.isFinite(intervalS) ||
    intervalS < MIN_HEARTBEAT_INTERVAL_S ||
    intervalS > MAX_HEARTBEAT_INTERVAL_S ||
    (typeof interval.value === 'string' && !/^\s*\d+(\.\d+)?\s*$/.test(interval.value))
  ) {
    throw new HeartbeatConfigError(
      interval.field,
      interval.value,
      `a number of seconds from ${MIN_HEARTBEAT_INTERVAL_S} to ${MAX_HEARTBEAT_INTERVAL_S}`,
    );
  }

  const nats = pick(opts.natsUrl, 'natsUrl', 'NATS_URL');
  const natsUrl = nats.value ?? DEFAULT_NATS_URL;
  if (typeof natsUrl !== 'string' || !natsUrl.split(',').every((u) => NATS_URL_RE.test(u.trim()))) {
    throw new HeartbeatConfigError(nats.field, natsUrl, 'nats://host:port (comma-separated for a cluster)');
  }

  const version = opts.version ?? DEFAULT_VERSION;
  if (typeof version !== 'string' || version.length === 0 || version.length > 100) {
    throw new HeartbeatConfigError('version', version, 'a string of 1 to 100 characters');
  }
  if (opts.name !== undefined && (opts.name.length === 0 || opts.name.length > 200)) {
    throw new HeartbeatConfigError('name', opts.name, 'a string of 1 to 200 characters');
  }
  if (
    opts.tags !== undefined &&
    (opts.tags.length > 50 || opts.tags.some((t) => typeof t !== 'string' || t.length > 100))
  ) {
    throw new HeartbeatConfigError('tags', opts.tags, 'at most 50 strings of at most 100 characters');
  }
  if (opts.health !== undefined) assertHealth(opts.health, 'health');
  for (const i of opts.integrations ?? []) {
    if (
      !SLUG_RE.test(i.to) ||
      !(EDGE_KINDS as readonly string[]).includes(i.kind) ||
      (i.strength !== undefined && !(i.strength >= 0 && i.strength <= 1))
    ) {
      throw new HeartbeatConfigError(
        'integrations',
        i,
        `{to: <slug>, kind: ${EDGE_KINDS.join('|')}, strength?: 0..1}`,
      );
    }
  }
  const jitter = opts.jitter ?? DEFAULT_JITTER_RATIO;
  if (!(jitter >= 0 && jitter <= 0.5)) {
    throw new HeartbeatConfigError('jitter', jitter, 'a fraction from 0 to 0.5');
  }

  return {
    slug,
    hubUrl,
    meshNamespace,
    intervalS,
    natsUrl,
    version,
    name: opts.name,
    tags: opts.tags,
    health: opts.health,
    integrations: opts.integrations,
    jitter,
  };
}

function assertHealth(value: unknown, field: string): asserts value is ReportedHealth {
  if (value !== 'ok' && value !== 'degraded') throw new HeartbeatConfigError(field, value, 'ok or degraded');
}

const consoleLogger: HeartbeatLogger = { warn: (m) => console.warn(m), info: (m) => console.info(m) };

/**
 * Publishes this project's heartbeat on `hub.presence.<slug>`: once at start, then every interval
 * with jitter. Publishing never throws out of the loop: while NATS is away nats.js buffers and
 * reconnects, and failures are counted and logged at a bounded rate. A publisher that opens its own
 * connection also survives NATS being down at start: it keeps trying to connect in the background
 * and begins beating once connected, so a backend may start before NATS does.
 */
export class FederationHeartbeat {
  readonly slug: string;
  readonly hubUrl: string;
  readonly meshNamespace: string;
  readonly intervalS: number;
  readonly natsUrl: string;
  readonly subject: string;
  readonly #opts: Resolved;
  readonly #connectionOptions: Partial<ConnectionOptions>;
  readonly #env: Record<string, string | undefined>;
  readonly #log: HeartbeatLogger;
  #health: ReportedHealth | undefined;
  #nc: NatsConnection | undefined;
  readonly #ownsConnection: boolean;
  #state: 'idle' | 'running' | 'stopped' = 'idle';
  #timer: NodeJS.Timeout | undefined;
  #connecting: Promise<NatsConnection> | undefined;
  #stats: HeartbeatStats = { published: 0, failed: 0, lastPublishedAt: undefined, lastError: undefined };
  #lastErrorLogAt = Number.NEGATIVE_INFINITY;
  #failedSinceLog = 0;

  constructor(opts: FederationHeartbeatOptions = {}) {
    this.#opts = resolveHeartbeatOptions(opts);
    this.slug = this.#opts.slug;
    this.hubUrl = this.#opts.hubUrl;
    this.meshNamespace = this.#opts.meshNamespace;
    this.intervalS = this.#opts.intervalS;
    this.natsUrl = this.#opts.natsUrl;
    this.subject = presenceSubject(this.slug);
    this.#health = this.#opts.health;
    this.#nc = opts.connection;
    this.#ownsConnection = opts.connection === undefined;
    this.#connectionOptions = opts.connectionOptions ?? {};
    this.#env = opts.env ?? process.env;
    this.#log = opts.logger ?? consoleLogger;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  get health(): ReportedHealth | undefined {
    return this.#health;
  }

  get stats(): Readonly<HeartbeatStats> {
    return { ...this.#stats };
  }

  /** Changes the health the next heartbeats report; `undefined` stops reporting it. */
  setHealth(health: ReportedHealth | undefined): void {
    if (health !== undefined) assertHealth(health, 'health');
    this.#health = health;
  }

  /** The payload of a heartbeat sent at `now`, exactly as it goes on the wire. */
  heartbeat(now: Date = new Date()): Heartbeat {
    const o = this.#opts;
    const hb: Heartbeat = {
      project_slug: o.slug,
      hub_url: o.hubUrl,
      mesh_namespace: o.meshNamespace,
      timestamp: now.toISOString(),
      version: o.version,
      interval_s: o.intervalS,
    };
    if (o.name !== undefined) hb.name = o.name;
    if (o.tags !== undefined) hb.tags = o.tags;
    if (this.#health !== undefined) hb.health = this.#health;
    if (o.integrations !== undefined) hb.integrations = o.integrations;
    return hb;
  }

  /** The last heartbeat `stop()` sends: the usual payload with `"state": "leaving"`. */
  leavingHeartbeat(now: Date = new Date()): Heartbeat {
    return { ...this.heartbeat(now), state: 'leaving' };
  }

  /**
   * Connects (when it owns the connection), publishes the first heartbeat and schedules the rest.
   * When it owns the connection and NATS cannot be reached, it still resolves: the failure is
   * counted and logged, and it keeps trying in the background (every CONNECT_RETRY_S, or every
   * interval if shorter), beating as soon as it is connected. With an injected connection a failed
   * first heartbeat rejects, as the caller owns that connection's fate.
   */
  async start(): Promise<void> {
    if (this.#state !== 'idle') {
      throw new Error(`FederationHeartbeat for ${this.slug} was already ${this.#state}; create a new one`);
    }
    this.#state = 'running';
    if (this.#ownsConnection) {
      await this.#connectAndBeat();
      return;
    }
    try {
      await this.beat();
    } catch (err) {
      this.#state = 'idle';
      throw err;
    }
    if (this.#state === 'running') this.#schedule();
  }

  /**
   * Publishes one heartbeat now and waits until the server has it. Opens the connection if needed;
   * rejects when NATS cannot be reached (the loop, unlike this, only counts failures).
   */
  async beat(): Promise<Heartbeat> {
    const nc = await this.#connection();
    const hb = this.heartbeat();
    nc.publish(this.subject, JSON.stringify(hb));
    await nc.flush();
    this.#stats.published++;
    this.#stats.lastPublishedAt = new Date();
    return hb;
  }

  /**
   * Stops publishing and any pending connect attempt, and tells the service this project is leaving
   * (one last heartbeat with `"state": "leaving"`): it is recorded offline at once with reason
   * `shutdown`, instead of after the offline threshold of silence, and notifiers treat it as a planned
   * stop. `{ leave: false }` stops without it (the service then sees silence, as after a crash).
   * Drains the connection if the publisher opened it. Safe to call twice. A connect attempt already in
   * flight is not waited for (it may take up to the connect timeout); it closes its connection as
   * soon as it arrives.
   */
  async stop(opts: { leave?: boolean } = {}): Promise<void> {
    const wasRunning = this.#state === 'running';
    this.#state = 'stopped';
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const nc = this.#nc;
    if (wasRunning && (opts.leave ?? true) && nc && !nc.isClosed()) {
      try {
        nc.publish(this.subject, JSON.stringify(this.leavingHeartbeat()));
        await Promise.race([nc.flush(), new Promise((r) => setTimeout(r, LEAVE_FLUSH_TIMEOUT_MS).unref())]);
      } catch (err) {
        this.#recordFailure('leaving heartbeat failed', err);
      }
    }
    if (this.#ownsConnection && nc && !nc.isClosed()) {
      await nc.drain().catch(() => nc.close());
    }
  }

  async #connection(): Promise<NatsConnection> {
    if (this.#nc) return this.#nc;
    // One attempt at a time: beat() and the background retry share it.
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<NatsConnection> {
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: this.natsUrl.split(',').map((s) => s.trim()),
        name: `federation-heartbeat:${this.slug}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
        // Credentials from NATS_CREDS, NATS_USER/NATS_PASS or NATS_TOKEN (as the service reads them).
        ...projectConnectionOptions(this.slug, this.#env),
        ...this.#connectionOptions,
      });
    } catch (err) {
      // The URL may carry user:password; the message may be logged.
      const where = this.natsUrl.replace(/\/\/[^@/\s]*@/g, '//***@');
      throw new Error(`cannot reach NATS at ${where}: ${(err as Error).message}`, { cause: err });
    }
    if (this.#state === 'stopped') {
      // stop() ran while this attempt was in flight: nothing may outlive it.
      await nc.close().catch(() => {});
      throw new Error(`FederationHeartbeat for ${this.slug} was stopped while connecting`);
    }
    this.#nc = nc;
    return nc;
  }

  /** One connect attempt of start(): on success beats now and on schedule, else tries again later. */
  async #connectAndBeat(): Promise<void> {
    try {
      await this.#connection();
    } catch (err) {
      if (this.#state !== 'running') return;
      this.#recordFailure('cannot connect, retrying', err);
      const retryS = Math.min(this.intervalS, CONNECT_RETRY_S);
      this.#timer = setTimeout(
        () => {
          this.#timer = undefined;
          if (this.#state === 'running') void this.#connectAndBeat();
        },
        jitteredDelayMs(retryS, this.#opts.jitter),
      );
      return;
    }
    if (this.#state !== 'running') return;
    if (this.#stats.failed > 0) this.#log.info?.(`federation heartbeat ${this.subject}: connected to NATS`);
    this.#publishQuietly();
    this.#schedule();
  }

  #schedule(): void {
    const delay = jitteredDelayMs(this.intervalS, this.#opts.jitter);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#state !== 'running') return;
      this.#publishQuietly();
      this.#schedule();
    }, delay);
  }

  #publishQuietly(): void {
    const nc = this.#nc;
    try {
      if (!nc) throw new Error('no NATS connection');
      const data = JSON.stringify(this.heartbeat());
      if (data.length > MAX_HEARTBEAT_BYTES)
        throw new Error(`heartbeat is larger than ${MAX_HEARTBEAT_BYTES} bytes`);
      // While disconnected nats.js buffers this and sends it on reconnect; it throws only once closed.
      nc.publish(this.subject, data);
      this.#stats.published++;
      this.#stats.lastPublishedAt = new Date();
    } catch (err) {
      this.#recordFailure('publish failed', err);
    }
  }

  #recordFailure(what: string, err: unknown): void {
    this.#stats.failed++;
    this.#stats.lastError = (err as Error).message;
    this.#failedSinceLog++;
    const now = Date.now();
    if (now - this.#lastErrorLogAt >= PUBLISH_ERROR_LOG_PERIOD_MS) {
      this.#log.warn(
        `federation heartbeat ${this.subject}: ${what} (${this.#failedSinceLog} since last report): ${this.#stats.lastError}`,
      );
      this.#lastErrorLogAt = now;
      this.#failedSinceLog = 0;
    }
  }
}
