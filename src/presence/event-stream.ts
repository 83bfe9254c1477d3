import type { ServerResponse } from 'node:http';
import type { EventFeed, FeedEventName } from '../events.ts';

export const SSE_KEEPALIVE_MS = 15_000;
/** A client this far behind is cut off rather than buffered without end; EventSource reconnects. */
export const SSE_MAX_BUFFERED_BYTES = 1024 * 1024;
export const SSE_RETRY_MS = 2_000;
/** Open streams per instance by default (FED_SSE_MAX_CLIENTS): each holds a socket and a buffer. */
export const DEFAULT_SSE_MAX_CLIENTS = 1000;
const FEED_EVENTS: readonly FeedEventName[] = ['status', 'metrics', 'fanout'];

/** The SSE clients of this instance: each gets every feed event as `event: <name>` with JSON data. */
export class EventStreams {
  readonly #feed: EventFeed;
  readonly #keepaliveMs: number;
  readonly #open = new Set<ServerResponse>();
  readonly maxClients: number;

  constructor(feed: EventFeed, opts: { keepaliveMs?: number; maxClients?: number } = {}) {
    this.#feed = feed;
    this.#keepaliveMs = opts.keepaliveMs ?? SSE_KEEPALIVE_MS;
    this.maxClients = opts.maxClients ?? DEFAULT_SSE_MAX_CLIENTS;
  }

  get size(): number {
    return this.#open.size;
  }

  /** False once maxClients streams are open: the route answers 503 instead of attaching. */
  get hasRoom(): boolean {
    return this.#open.size < this.maxClients;
  }

  /** Takes over a raw response and streams to it until the client leaves or the server closes. */
  attach(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${SSE_RETRY_MS}\n: connected\n\n`);
    this.#open.add(res);

    const write = (chunk: string) => {
      if (res.writableEnded || res.destroyed) return;
      if (res.writableLength > SSE_MAX_BUFFERED_BYTES) {
        res.destroy();
        return;
      }
      res.write(chunk);
    };
    const unsubscribe = FEED_EVENTS.map((name) =>
      this.#feed.on(name, (data: unknown) => write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`)),
    );
    const keepalive = setInterval(() => write(': keepalive\n\n'), this.#keepaliveMs);
    keepalive.unref();
    res.once('close', () => {
      clearInterval(keepalive);
      for (const off of unsubscribe) off();
      this.#open.delete(res);
    });
  }

  /** Ends every stream, so that the server can close. */
  closeAll(): void {
    for (const res of this.#open) res.end();
  }
}
