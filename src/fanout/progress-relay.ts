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
 * `fed.fanout.>` without a queue group and feeds what it receives to its clients. The origin shows its
 * own events to its clients as it publishes them: its connection is `noEcho` (src/nats.ts), so they
 * never come back and no client sees one twice.
 */
export class FanoutProgressRelay {
  readonly #nats: Pick<NatsManager, 'onConnect' | 'connection'>;
  readonly #feed: EventFeed;
  readonly #log: FastifyBaseLogger;
  readonly #bad: RateLimitedLog;
  readonly #rejected: Counter<'reason'>;
  #subscription: Subscription | undefined;
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

  /** Shows one progress event to this instance's clients and publishes it for the other replicas. */
  publish(progress: FanoutProgress): void {
    this.#show(progress);
    const nc = this.#nats.connection;
    if (!nc || nc.isClosed()) return;
    try {
      nc.publish(fanoutSubject(progress.id), JSON.stringify(progress));
    } catch (err) {
      this.#bad.warn('publish', { err, run: progress.id }, 'could not publish fan-out progress');
    }
  }

  #show(event: FeedEvents['fanout']): void {
    try {
      this.#feed.emit('fanout', event);
    } catch (listenerErr) {
      this.#bad.warn('listener', { err: listenerErr }, 'fan-out progress listener failed');
    }
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
        this.#show(event);
      },
    });
    this.#log.debug({ subject: FANOUT_WILDCARD }, 'relaying fan-out progress');
  }

  stop(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
  }
}
