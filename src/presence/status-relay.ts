import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import { Compile } from 'typebox/compile';
import type { Transition } from '../catalog/catalog-service.ts';
import type { Clock } from '../clock.ts';
import type { EventFeed } from '../events.ts';
import type { NatsManager } from '../nats.ts';
import { STATUS_WILDCARD, type StatusEvent, StatusEventSchema, statusSubject } from '../protocol/index.ts';
import { RateLimitedLog } from '../rate-limited-log.ts';

const validator = Compile(StatusEventSchema);
const decoder = new TextDecoder();

export function toStatusEvent(t: Transition): StatusEvent {
  return { slug: t.slug, from: t.from, to: t.to, at: t.at.toISOString(), reason: t.reason };
}

/**
 * Publishes the transitions this instance claimed on `fed.status.<slug>` (once each), and feeds every
 * transition any replica published to this instance's SSE clients. Every replica subscribes without a
 * queue group; our own transitions are shown at once and, the connection being `noEcho`
 * (src/nats.ts), never come back: none is shown twice and none waits on NATS.
 */
export class StatusRelay {
  readonly #nats: Pick<NatsManager, 'onConnect' | 'connection'>;
  readonly #feed: EventFeed;
  readonly #log: FastifyBaseLogger;
  readonly #bad: RateLimitedLog;
  #subscription: Subscription | undefined;
  #started = false;

  constructor(deps: {
    nats: Pick<NatsManager, 'onConnect' | 'connection'>;
    feed: EventFeed;
    log: FastifyBaseLogger;
    clock: Clock;
  }) {
    this.#nats = deps.nats;
    this.#feed = deps.feed;
    this.#log = deps.log;
    this.#bad = new RateLimitedLog(deps.log, deps.clock);
  }

  start(): void {
    if (this.#started) throw new Error('StatusRelay already started');
    this.#started = true;
    this.#nats.onConnect((nc) => this.#subscribe(nc));
  }

  /** Shows the transitions to local clients and publishes each once on NATS. */
  publish(transitions: Transition[]): void {
    const nc = this.#nats.connection;
    for (const t of transitions) {
      const event = toStatusEvent(t);
      this.#feed.emit('status', event);
      if (!nc || nc.isClosed()) continue;
      try {
        nc.publish(statusSubject(event.slug), JSON.stringify(event));
      } catch (err) {
        this.#bad.warn('publish', { err, slug: event.slug }, 'could not publish a status transition');
      }
    }
  }

  #subscribe(nc: NatsConnection): void {
    this.#subscription = nc.subscribe(STATUS_WILDCARD, {
      callback: (err, msg) => {
        if (err) return;
        let event: unknown;
        try {
          event = JSON.parse(decoder.decode(msg.data));
        } catch {
          event = undefined;
        }
        if (!validator.Check(event)) {
          this.#bad.warn('invalid', { subject: msg.subject }, 'ignored a malformed status event');
          return;
        }
        this.#feed.emit('status', event);
      },
    });
    this.#log.debug({ subject: STATUS_WILDCARD }, 'relaying status transitions');
  }

  stop(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
  }
}
