import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import pg from 'pg';

/**
 * The seed's heartbeat path, kept only as the benchmark's baseline: every message is parsed and
 * written with its own UPDATE, committed on its own (autocommit), one after the other.
 */
export class PerMessageWorker {
  readonly #databaseUrl: string;
  readonly #onProcessed: (count: number) => void;
  #client: pg.Client | undefined;
  #sub: Subscription | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;
  processed = 0;
  failed = 0;

  constructor(databaseUrl: string, onProcessed: (count: number) => void = () => {}) {
    this.#databaseUrl = databaseUrl;
    this.#onProcessed = onProcessed;
  }

  async start(nc: NatsConnection): Promise<void> {
    if (this.#client) throw new Error('PerMessageWorker already started');
    this.#client = new pg.Client({ connectionString: this.#databaseUrl });
    await this.#client.connect();
    this.#sub = nc.subscribe('hub.presence.*');
    const client = this.#client;
    const sub = this.#sub;
    this.#loop = (async () => {
      for await (const msg of sub) {
        if (this.#stopped) break;
        try {
          const hb = JSON.parse(msg.string()) as { project_slug: string };
          await client.query(
            "UPDATE projects SET last_heartbeat_at = now(), status = 'online' WHERE slug = $1",
            [hb.project_slug],
          );
        } catch {
          this.failed++;
        }
        this.processed++;
        this.#onProcessed(this.processed);
      }
    })();
  }

  /** Stops at once: what is still queued is dropped, not written. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#sub?.unsubscribe();
    await this.#loop;
    await this.#client?.end();
  }
}
