import { EventEmitter } from 'node:events';
import type { StatusEvent } from './protocol/index.ts';

/** What the change feed carries; each becomes an SSE event of the same name. */
export interface FeedEvents {
  status: StatusEvent;
  metrics: { project: string; kind: string; observed_at: string; metrics: Record<string, number | string> };
  fanout: Record<string, unknown> & { id: string };
}
export type FeedEventName = keyof FeedEvents;

/** In-process bus from the features to this instance's SSE clients. */
export class EventFeed {
  readonly #emitter = new EventEmitter();
  constructor() {
    // Every SSE client subscribes; the count is bounded by connections, not a leak.
    this.#emitter.setMaxListeners(0);
  }
  emit<K extends FeedEventName>(name: K, data: FeedEvents[K]): void {
    this.#emitter.emit(name, data);
  }
  on<K extends FeedEventName>(name: K, listener: (data: FeedEvents[K]) => void): () => void {
    this.#emitter.on(name, listener);
    return () => this.#emitter.off(name, listener);
  }
  listenerCount(name: FeedEventName): number {
    return this.#emitter.listenerCount(name);
  }
}
