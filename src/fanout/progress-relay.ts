import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { FastifyBaseLogger } from 'fastify';
import type { Counter } from 'prom-client';
import type { Clock } from '../clock.ts';
import type { EventFeed, FeedEvents } from '../events.ts';
import type { NatsManager } from '../nats.ts';
import { FANOUT_WILDCARD, fanoutSubject } from '../protocol/index.ts';
import { RateLimitedLog } from '../rate-limited-log.ts';
import type { FanoutProgress } from './fanout-runner.ts';

export type RelayRejectReason = 'invalid_json' | 'invalid_event';

const decoder = new TextDecoder();

function parseProgress(data: Uint8Array): FeedEvents['fanout'] | RelayRejectReason {
  let event: unknown;
  try {
    event = JSON.parse(decoder.decode(data));
  } catch {
    return 'invalid_json';
  }
  if (
    typeof event !== 'object' ||
    event === null ||
    Array.isArray(event) ||
    typeof (event as { id?: unknown }).id !== 'string' ||
    (event as { id: string }).id === ''
  ) {
    return 'invalid_event';
  }
  return event as FeedEvents['fanout'];
}

/**
 * Carries fan-out progress to the SSE clients of every replica: the instance running a run publishes
 * each event on `fed.fanout.<run_id>`, and every instance (the origin included) subscribes to
 * `fed.fanout.>` without a queue group and feeds what it receives to its clients. The origin shows an
 * event locally only when it could not hand it to NATS, so its own clients never see one twice.
 */
export class FanoutProgressRelay {
  readonly #nats: Pick<NatsManager, 'onConnect' | 'connection'>;
  readonly #feed: EventFeed;
  readonly #log: FastifyBaseLogger;
  readonly #bad: RateLimitedLog;
  readonly #rejected: Counter<'reason'>;
  #subscription: Subscription | undefined;
  /** The connection #subscription belongs to: an event published on another one would not come back. */
  #subscribedOn: NatsConnection | undefined;
  #started = false;

  constructor(deps: {
    nats: Pick<NatsManager, 'onConnect' | 'connection'>;
    feed: EventFeed;
    log: FastifyBaseLogger;
    clock: Clock;
    rejected: Counter<'reason'>;
  }) {
    this.#nats = deps.nats;
    this.#feed = deps.feed;
    this.#log = deps.log;
    this.#rejected = deps.rejected;
    this.#bad = new RateLimitedLog(deps.log, deps.clock);
  }

  start(): void {
    if (this.#started) throw new Error('FanoutProgressRelay already started');
    this.#started = true;
    this.#nats.onConnect((nc) => this.#subscribe(nc));
  }

  /** Publishes one progress event for all replicas; shows it locally if it will not come back. */
  publish(progress: FanoutProgress): void {
    const nc = this.#nats.connection;
    let relayed = false;
    if (nc && !nc.isClosed()) {
      try {
        nc.publish(fanoutSubject(progress.id), JSON.stringify(progress));
        relayed = this.#subscription !== undefined && this.#subscribedOn === nc;
      } catch (err) {
        this.#bad.warn('publish', { err, run: progress.id }, 'could not publish fan-out progress');
      }
    }
    if (!relayed) this.#feed.emit('fanout', progress);
  }

  #subscribe(nc: NatsConnection): void {
    this.#subscription = nc.subscribe(FANOUT_WILDCARD, {
      callback: (err, msg) => {
        if (err) return;
        const event = parseProgress(msg.data);
        if (typeof event === 'string') {
          this.#rejected.inc({ reason: event });
          this.#bad.warn(
            event,
            { subject: msg.subject, reason: event },
            'ignored malformed fan-out progress',
          );
          return;
        }
        try {
          this.#feed.emit('fanout', event);
        } catch (listenerErr) {
          this.#bad.warn('listener', { err: listenerErr }, 'fan-out progress listener failed');
        }
      },
    });
    this.#subscribedOn = nc;
    this.#log.debug({ subject: FANOUT_WILDCARD }, 'relaying fan-out progress');
  }

  stop(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
    this.#subscribedOn = undefined;
  }
}
