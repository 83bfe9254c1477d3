import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import type { NatsManager } from '../nats.ts';
import { PRESENCE_WILDCARD } from '../protocol/index.ts';
import type { HeartbeatIntake } from './heartbeat-intake.ts';

/** Replicas share heartbeats through this queue group: each heartbeat is handled by one of them. */
export const PRESENCE_QUEUE_GROUP = 'federation';
export const DRAIN_TIMEOUT_MS = 2_000;

/**
 * Subscribes to `hub.presence.*` in the `federation` queue group whenever NATS connects (nats.js
 * resubscribes by itself after a reconnect) and passes every message to the intake.
 */
export class HeartbeatWorker {
  readonly #nats: Pick<NatsManager, 'onConnect'>;
  readonly #intake: HeartbeatIntake;
  readonly #log: FastifyBaseLogger;
  #subscription: Subscription | undefined;
  #started = false;
  #stopped = false;

  constructor(deps: {
    nats: Pick<NatsManager, 'onConnect'>;
    intake: HeartbeatIntake;
    log: FastifyBaseLogger;
  }) {
    this.#nats = deps.nats;
    this.#intake = deps.intake;
    this.#log = deps.log;
  }

  get subscribed(): boolean {
    return this.#subscription !== undefined && !this.#subscription.isClosed();
  }

  start(): void {
    if (this.#started) throw new Error('HeartbeatWorker already started');
    this.#started = true;
    this.#nats.onConnect((nc) => this.#subscribe(nc));
  }

  #subscribe(nc: NatsConnection): void {
    if (this.#stopped) return;
    this.#subscription = nc.subscribe(PRESENCE_WILDCARD, {
      queue: PRESENCE_QUEUE_GROUP,
      callback: (err, msg) => {
        if (err) {
          this.#log.warn({ err }, 'heartbeat subscription error');
          return;
        }
        this.#intake.fromNats(msg.subject, msg.data);
      },
    });
    this.#log.info({ subject: PRESENCE_WILDCARD, queue: PRESENCE_QUEUE_GROUP }, 'listening for heartbeats');
  }

  /** Stops intake: what the subscription already holds is still handled (drain). */
  async stop(): Promise<void> {
    this.#stopped = true;
    const sub = this.#subscription;
    this.#subscription = undefined;
    if (!sub || sub.isClosed()) return;
    // Draining waits for the server; while NATS is down that could hold shutdown forever.
    const drained = sub.drain().then(
      () => true,
      () => false,
    );
    const timeout = new Promise<false>((r) => setTimeout(() => r(false), DRAIN_TIMEOUT_MS).unref());
    if (!(await Promise.race([drained, timeout]))) sub.unsubscribe();
  }
}
