import { isIP } from 'node:net';
import { ConfigError } from './errors.ts';

/** FED_HEARTBEAT_BUFFER_MAX_BYTES: a million pending heartbeats of about 250 bytes each. */
export const DEFAULT_BUFFER_MAX_BYTES = 256 * 1024 * 1024;

/** Everything the server reads from its environment, validated once and frozen. */
export interface Config {
  port: number;
  host: string;
  /** postgres://… for PostgreSQL, `memory://` for in-memory PGlite, undefined for PGlite on disk. */
  databaseUrl: string | undefined;
  dataDir: string;
  /** undefined when NATS_URL=none. */
  natsUrl: string | undefined;
  natsCreds: string | undefined;
  natsUser: string | undefined;
  natsPass: string | undefined;
  natsToken: string | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  projectsFile: string | undefined;
  adminToken: string | undefined;
  readToken: string | undefined;
  autoRegister: boolean;
  heartbeatIntervalS: number;
  /** 0 turns lateness-based "degraded" off. */
  degradedAfterS: number;
  offlineAfterS: number;
  sweepIntervalS: number;
  flushIntervalMs: number;
  heartbeatBufferMax: number;
  /** Approximate bytes of pending heartbeats beyond which new projects are refused. */
  heartbeatBufferMaxBytes: number;
  bodyLimitBytes: number;
  metricsRetentionDays: number;
  metricsStream: string;
  metricsStreamMaxAgeDays: number;
  metricsStreamMaxBytes: number;
  /** Most projects GET /api/fed/graph (or one group of it) answers with; beyond it, ask for groups. */
  graphMaxNodes: number;
  // HTTP limits and headers (src/http/security.ts).
  /** Origins allowed to call the API from a browser; empty: CORS closed. `*` allows any. */
  corsOrigins: string[];
  /** Writes per IP per rate-limit window; 0 turns the write limit off. */
  rateLimitWrites: number;
  /** Requests refused for a bad or missing token per IP per window before the IP gets 429; 0: off. */
  rateLimitAuthFailures: number;
  rateLimitWindowS: number;
  /** Open SSE streams per instance; past it GET /api/fed/events answers 503. */
  sseMaxClients: number;
  // Webhook notifications (src/notify/).
  /** Allow notifier URLs on loopback and private addresses (refused by default: SSRF). */
  webhookAllowPrivate: boolean;
  /** Each delivery attempt gives up after this long. */
  webhookTimeoutMs: number;
  /** A delivery not made this long after its transition is marked failed. */
  webhookMaxAgeS: number;
  /** The longest wait between two attempts of one delivery (backoff doubles up to it, with jitter). */
  webhookRetryMaxS: number;
  /** Deliveries in flight at once per instance. */
  webhookConcurrency: number;
  // Flap damping.
  /** A project is flapping once it changes status more than this many times in flapWindowS. */
  flapChanges: number;
  flapWindowS: number;
  /** A flapping project is stable again once its status has not changed for this long. */
  flapSettleS: number;
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function num(
  env: Env,
  name: string,
  fallback: number,
  opts: { min: number; max: number; integer?: boolean },
): number {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  const kind = opts.integer ? 'an integer' : 'a number';
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || n < opts.min || n > opts.max) {
    throw new ConfigError(
      `${name}=${JSON.stringify(raw)} is invalid: expected ${kind} from ${opts.min} to ${opts.max}`,
    );
  }
  return n;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = str(env, name);
  if (raw === undefined) return fallback;
  const v = raw.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`${name}=${JSON.stringify(raw)} is invalid: expected true or false`);
}

/** FED_CORS_ORIGINS: comma-separated origins (scheme://host[:port]) or `*`; unset means CORS is closed. */
function corsOrigins(env: Env): string[] {
  const raw = str(env, 'FED_CORS_ORIGINS');
  if (raw === undefined || raw.toLowerCase() === 'none') return [];
  const origins = raw
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  for (const o of origins) {
    if (o !== '*' && !/^https?:\/\/[^/\s?#]+$/.test(o)) {
      throw new ConfigError(
        `FED_CORS_ORIGINS=${JSON.stringify(raw)} is invalid: expected comma-separated origins like https://ops.example.com (no path), * or none`,
      );
    }
  }
  return origins;
}

/** A URL as it may appear in a message: user and password masked. */
export function maskUrlCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/\s]*@/i, '$1***@');
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export function loadConfig(env: Env = process.env): Readonly<Config> {
  const port = num(env, 'PORT', 8001, { min: 0, max: 65535, integer: true });
  const host = str(env, 'HOST') ?? '127.0.0.1';

  const databaseUrl = str(env, 'DATABASE_URL');
  if (databaseUrl !== undefined && databaseUrl !== 'memory://' && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(
      'DATABASE_URL is invalid: expected postgres://user@host:port/db, memory://, or unset for PGlite in FED_DATA_DIR',
    );
  }

  let natsUrl: string | undefined = str(env, 'NATS_URL') ?? 'nats://127.0.0.1:4222';
  if (natsUrl.toLowerCase() === 'none') natsUrl = undefined;
  else {
    for (const u of natsUrl.split(',')) {
      if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(u.trim())) {
        throw new ConfigError(
          `NATS_URL=${JSON.stringify(maskUrlCredentials(u.trim()))} is invalid: expected nats://host:port (comma-separated for a cluster) or none`,
        );
      }
    }
  }

  const logLevel = (str(env, 'LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError(
      `LOG_LEVEL=${JSON.stringify(logLevel)} is invalid: expected one of ${LOG_LEVELS.join(', ')}`,
    );
  }

  const projectsFileRaw = str(env, 'FED_PROJECTS_FILE') ?? 'config/projects.yaml';
  const projectsFile = projectsFileRaw.toLowerCase() === 'none' ? undefined : projectsFileRaw;

  const heartbeatIntervalS = num(env, 'FED_HEARTBEAT_INTERVAL_S', 30, { min: 0.1, max: 86400 });
  // The thresholds default to 1.5× and 3× the expected interval (45 s and 90 s for 30 s), the same
  // factors a project's own announced interval_s gets.
  const degradedAfterS = num(env, 'FED_DEGRADED_AFTER_S', heartbeatIntervalS * 1.5, {
    min: 0,
    max: 86400 * 7,
  });
  const offlineAfterS = num(env, 'FED_OFFLINE_AFTER_S', heartbeatIntervalS * 3, {
    min: 0.1,
    max: 86400 * 21,
  });
  if (degradedAfterS !== 0 && degradedAfterS >= offlineAfterS) {
    throw new ConfigError(
      `FED_DEGRADED_AFTER_S=${degradedAfterS} is invalid: expected 0 (off) or less than FED_OFFLINE_AFTER_S=${offlineAfterS}`,
    );
  }
  // Offline must be visible within a second of the threshold, so sweep at least twice a second by default.
  const sweepIntervalS = num(env, 'FED_SWEEP_INTERVAL_S', 0.5, { min: 0.05, max: 3600 });

  const adminToken = str(env, 'FED_ADMIN_TOKEN');
  const readToken = str(env, 'FED_READ_TOKEN');
  if (!adminToken && !isLoopback(host)) {
    throw new ConfigError(
      `HOST=${host} is not a loopback address: set FED_ADMIN_TOKEN so that writes need a token, or bind HOST=127.0.0.1`,
    );
  }

  const metricsStream = str(env, 'FED_METRICS_STREAM') ?? 'FED_METRICS';
  if (!/^[A-Za-z0-9_-]+$/.test(metricsStream)) {
    throw new ConfigError(
      `FED_METRICS_STREAM=${JSON.stringify(metricsStream)} is invalid: expected letters, digits, _ or -`,
    );
  }

  const config: Config = {
    port,
    host,
    databaseUrl,
    dataDir: str(env, 'FED_DATA_DIR') ?? './.federation',
    natsUrl,
    natsCreds: str(env, 'NATS_CREDS'),
    natsUser: str(env, 'NATS_USER'),
    natsPass: str(env, 'NATS_PASS'),
    natsToken: str(env, 'NATS_TOKEN'),
    logLevel: logLevel as Config['logLevel'],
    projectsFile,
    adminToken,
    readToken,
    autoRegister: bool(env, 'FED_AUTO_REGISTER', true),
    heartbeatIntervalS,
    degradedAfterS,
    offlineAfterS,
    sweepIntervalS,
    flushIntervalMs: num(env, 'FED_FLUSH_INTERVAL_MS', 50, { min: 1, max: 10000, integer: true }),
    // Bounded in bytes by default, sized for a whole fleet of a million projects: the bound protects
    // memory while the database is down, it must not shed a fleet starting at once while it is up.
    heartbeatBufferMax: num(env, 'FED_HEARTBEAT_BUFFER_MAX', 10_000_000, {
      min: 1,
      max: 10_000_000,
      integer: true,
    }),
    heartbeatBufferMaxBytes: num(env, 'FED_HEARTBEAT_BUFFER_MAX_BYTES', DEFAULT_BUFFER_MAX_BYTES, {
      min: 64 * 1024,
      max: 8 * 1024 ** 3,
      integer: true,
    }),
    bodyLimitBytes: num(env, 'FED_BODY_LIMIT_BYTES', 1024 * 1024, {
      min: 1024,
      max: 100 * 1024 * 1024,
      integer: true,
    }),
    metricsRetentionDays: num(env, 'FED_METRICS_RETENTION_DAYS', 30, { min: 1, max: 3650, integer: true }),
    metricsStream,
    metricsStreamMaxAgeDays: num(env, 'FED_METRICS_STREAM_MAX_AGE_DAYS', 7, {
      min: 1,
      max: 365,
      integer: true,
    }),
    metricsStreamMaxBytes: num(env, 'FED_METRICS_STREAM_MAX_BYTES', 1024 * 1024 * 1024, {
      min: 1024 * 1024,
      max: 1024 ** 4,
      integer: true,
    }),
    graphMaxNodes: num(env, 'FED_GRAPH_MAX_NODES', 10_000, { min: 1, max: 1_000_000, integer: true }),
    corsOrigins: corsOrigins(env),
    rateLimitWrites: num(env, 'FED_RATE_LIMIT_WRITES', 600, { min: 0, max: 10_000_000, integer: true }),
    rateLimitAuthFailures: num(env, 'FED_RATE_LIMIT_AUTH_FAILURES', 20, {
      min: 0,
      max: 1_000_000,
      integer: true,
    }),
    rateLimitWindowS: num(env, 'FED_RATE_LIMIT_WINDOW_S', 60, { min: 1, max: 86400, integer: true }),
    sseMaxClients: num(env, 'FED_SSE_MAX_CLIENTS', 1000, { min: 1, max: 1_000_000, integer: true }),
    webhookAllowPrivate: bool(env, 'FED_WEBHOOK_ALLOW_PRIVATE', false),
    webhookTimeoutMs: num(env, 'FED_WEBHOOK_TIMEOUT_MS', 5000, { min: 100, max: 120_000, integer: true }),
    // As long as Alertmanager and GitHub keep trying: a receiver down over a weekend night still gets it.
    webhookMaxAgeS: num(env, 'FED_WEBHOOK_MAX_AGE_S', 86_400, { min: 1, max: 86_400 * 30 }),
    webhookRetryMaxS: num(env, 'FED_WEBHOOK_RETRY_MAX_S', 300, { min: 0.1, max: 86_400 }),
    webhookConcurrency: num(env, 'FED_WEBHOOK_CONCURRENCY', 16, { min: 1, max: 1000, integer: true }),
    // In the spirit of Nagios's flap detection (a state change in over ~25 % of 20 checks) for a 30 s
    // heartbeat: more than 5 changes in 10 minutes; stable again after 5 quiet minutes (10 heartbeats,
    // like Consul's success_before_passing counting good checks before passing).
    flapChanges: num(env, 'FED_FLAP_CHANGES', 5, { min: 1, max: 10_000, integer: true }),
    flapWindowS: num(env, 'FED_FLAP_WINDOW_S', 600, { min: 1, max: 86_400 * 7 }),
    flapSettleS: num(env, 'FED_FLAP_SETTLE_S', 300, { min: 0.1, max: 86_400 * 7 }),
  };
  return Object.freeze(config);
}

/** A config for tests and tools: defaults, an in-memory database, no NATS, overridden by `env`. */
export function testConfig(env: Env = {}): Readonly<Config> {
  return loadConfig({
    DATABASE_URL: 'memory://',
    NATS_URL: 'none',
    FED_PROJECTS_FILE: 'none',
    LOG_LEVEL: 'silent',
    ...env,
  });
}
