import { readFileSync } from 'node:fs';
import {
  type Authenticator,
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';

/** How long `start()` waits for the first connection before serving without NATS (it keeps trying). */
export const DEFAULT_FIRST_CONNECT_WAIT_MS = 2000;
export const DEFAULT_RECONNECT_WAIT_MS = 500;

type ConnectListener = (nc: NatsConnection) => void | Promise<void>;

export type NatsState = 'disabled' | 'connecting' | 'connected' | 'disconnected' | 'closed';

/**
 * Owns the one NATS connection of an instance. The service serves HTTP whether or not NATS is up:
 * it keeps trying in the background, tells listeners when a connection exists, and tracks whether it
 * is connected now so that presence can stop flipping projects offline while it hears nothing.
 */
export class NatsManager {
  readonly #config: Pick<Config, 'natsUrl' | 'natsCreds' | 'natsUser' | 'natsPass' | 'natsToken'>;
  readonly #log: FastifyBaseLogger;
  readonly #clock: Clock;
  readonly #listeners: ConnectListener[] = [];
  #nc: NatsConnection | undefined;
  #state: NatsState;
  #since: Date;
  #lastError: string | undefined;
  #connectedOnce = false;
  #stopped = false;
  #loop: Promise<void> | undefined;

  constructor(config: NatsManager['config'], log: FastifyBaseLogger, clock: Clock) {
    this.#config = config;
    this.#log = log;
    this.#clock = clock;
    this.#state = config.natsUrl ? 'connecting' : 'disabled';
    this.#since = clock.now();
  }

  private get config() {
    return this.#config;
  }

  get enabled(): boolean {
    return this.#config.natsUrl !== undefined;
  }
  get connection(): NatsConnection | undefined {
    return this.#nc;
  }
  get state(): NatsState {
    return this.#state;
  }
  /** When the current state began (for "disconnected since"). */
  get since(): Date {
    return this.#since;
  }
  get lastError(): string | undefined {
    return this.#lastError;
  }
  get connected(): boolean {
    return this.#state === 'connected';
  }
  /** Whether a connection has existed since start (the offline guard pauses only after one has). */
  get connectedOnce(): boolean {
    return this.#connectedOnce;
  }

  /** Runs `listener` with the connection once it exists (now, if it already does). */
  onConnect(listener: ConnectListener): void {
    this.#listeners.push(listener);
    if (this.#nc) void this.#notify(listener, this.#nc);
  }

  async start(firstConnectWaitMs = DEFAULT_FIRST_CONNECT_WAIT_MS): Promise<void> {
    if (!this.enabled) return;
    if (this.#loop) throw new Error('NatsManager already started');
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((r) => {
      firstAttempt = r;
    });
    this.#loop = this.#connectLoop(firstAttempt);
    await Promise.race([attempted, new Promise((r) => setTimeout(r, firstConnectWaitMs).unref())]);
  }

  #options(): ConnectionOptions {
    const c = this.#config;
    const authenticator: Authenticator[] = [];
    if (c.natsCreds) authenticator.push(credsAuthenticator(readFileSync(c.natsCreds)));
    if (c.natsUser) authenticator.push(usernamePasswordAuthenticator(c.natsUser, c.natsPass));
    if (c.natsToken) authenticator.push(tokenAuthenticator(c.natsToken));
    return {
      servers: (c.natsUrl ?? '').split(',').map((s) => s.trim()),
      name: 'federation',
      // The relays show this instance's own transitions and fan-out progress to its clients as they
      // publish them: receiving them back (a million at once when a fleet registers) would only be
      // parsed and dropped. Nothing else this connection publishes is meant for itself.
      noEcho: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: DEFAULT_RECONNECT_WAIT_MS,
      pingInterval: 10_000,
      ...(authenticator.length ? { authenticator } : {}),
    };
  }

  async #connectLoop(firstAttempt: () => void): Promise<void> {
    while (!this.#stopped) {
      try {
        const nc = await connect(this.#options());
        if (this.#stopped) {
          await nc.close();
          return;
        }
        this.#nc = nc;
        this.#connectedOnce = true;
        this.#setState('connected');
        this.#log.info({ server: nc.getServer() }, 'connected to NATS');
        firstAttempt();
        void this.#watch(nc);
        // A copy: a listener added while these run is notified by onConnect itself, not twice.
        for (const l of [...this.#listeners]) await this.#notify(l, nc);
        await nc.closed();
        if (this.#stopped) return;
        this.#nc = undefined;
        this.#setState('disconnected');
      } catch (err) {
        this.#lastError = (err as Error).message;
        if (this.#state !== 'disconnected') {
          this.#log.warn({ err: this.#lastError }, 'NATS unreachable; serving without it and retrying');
        }
        this.#setState('disconnected');
        firstAttempt();
        await new Promise((r) => setTimeout(r, DEFAULT_RECONNECT_WAIT_MS * 2).unref());
      }
    }
  }

  async #watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.#setState('disconnected');
        this.#log.warn('NATS disconnected; reconnecting');
      } else if (s.type === 'reconnect') {
        this.#setState('connected');
        this.#log.info('NATS reconnected');
      } else if (s.type === 'error') {
        this.#lastError = String(s.error);
      }
    }
  }

  #setState(state: NatsState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#since = this.#clock.now();
  }

  async #notify(listener: ConnectListener, nc: NatsConnection): Promise<void> {
    try {
      await listener(nc);
    } catch (err) {
      this.#log.error({ err }, 'NATS connect listener failed');
    }
  }

  /** Drains the connection: subscriptions finish what they hold, then it closes. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const nc = this.#nc;
    if (nc && !nc.isClosed()) {
      await nc.drain().catch(() => nc.close());
    }
    this.#setState('closed');
  }
}
