import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { publishMetrics } from '../src/client/metrics.ts';
import { systemClock } from '../src/clock.ts';
import { type DatabaseHandle, openDatabase, query } from '../src/db/connection.ts';
import {
  type MetricsConsumer as Consumer,
  createMetricsCounters,
  MetricsConsumer,
  type MetricsCounters,
} from '../src/metrics/metrics-consumer.ts';
import { type MetricObservation, MetricsService } from '../src/metrics/metrics-service.ts';
import { uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { waitFor } from './helpers/wait.ts';

/** A real MetricsService whose writes can be made to fail or stall, to drive the retry paths. */
class FlakyService extends MetricsService {
  beforeInsert: ((o: MetricObservation[]) => Promise<void> | void) | undefined;
  afterInsert: ((o: MetricObservation[]) => Promise<void> | void) | undefined;
  override async insertObservations(o: MetricObservation[], at: Date): Promise<Set<string>> {
    await this.beforeInsert?.(o);
    const inserted = await super.insertObservations(o, at);
    await this.afterInsert?.(o);
    return inserted;
  }
}

const dataError = () => Object.assign(new Error('value out of range'), { code: '22003' });

describe('MetricsConsumer against real NATS (no HTTP server)', () => {
  let nats: TestNatsServer;
  let database: DatabaseHandle;
  let nc: NatsConnection;
  let service: FlakyService;
  let consumer: Consumer | undefined;
  let counters: MetricsCounters;
  let registry: Registry;
  let streamNo = 0;

  const project = async (slug: string) => {
    await query(
      database.db,
      sql`insert into projects (slug, name, hub_url, mesh_namespace) values (${slug}, ${slug}, 'http://x', ${`hub.${slug}`})`,
    );
  };
  const rows = async (slug: string) =>
    query<{ metric_type: string; value_number: number }>(
      database.db,
      sql`select metric_type, value_number from project_metrics m join projects p on p.id = m.project_id
          where p.slug = ${slug} order by metric_type`,
    );
  const count = async (name: string, labels: Record<string, string> = {}) => {
    const metric = (await registry.getSingleMetric(name)?.get())?.values ?? [];
    return metric
      .filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
      .reduce((s, v) => s + v.value, 0);
  };
  const startConsumer = async (opts: Partial<ConstructorParameters<typeof MetricsConsumer>[0]> = {}) => {
    registry = new Registry();
    counters = createMetricsCounters(registry);
    // A stream of its own per test: leftovers of one test never reach the next.
    streamNo += 1;
    const c = new MetricsConsumer({
      stream: { name: `FED_METRICS_T${streamNo}`, maxAgeDays: 1, maxBytes: 64 * 1024 * 1024 },
      service,
      clock: systemClock,
      log: pino({ level: 'silent' }),
      counters,
      retentionDays: 30,
      retryBaseMs: 50,
      retryMaxMs: 200,
      ...opts,
    });
    consumer = c;
    c.attach(nc);
    await waitFor(() => c.state === 'consuming', { what: 'consuming' });
    return c;
  };

  beforeAll(async () => {
    nats = await startNatsServer();
    nc = await connect({ servers: nats.url });
    database = await openDatabase({ databaseUrl: 'memory://', dataDir: '' });
    await database.migrate();
    service = new FlakyService({ db: database.db });
  });
  afterEach(async () => {
    await consumer?.stop();
    consumer = undefined;
    // Streams overlap in subjects, so each test removes its own before the next one creates another.
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(`FED_METRICS_T${streamNo}`).catch(() => {});
    service.beforeInsert = undefined;
    service.afterInsert = undefined;
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.destroy();
    await database?.close();
  });

  it('stores a message once when it is redelivered after a write whose ack was lost', async () => {
    await startConsumer();
    const slug = uniqueSlug('redeliver');
    await project(slug);
    let failures = 0;
    // The row is committed, then the write "fails" before the ack: the consumer naks, JetStream redelivers.
    service.afterInsert = () => {
      if (failures++ === 0) throw new Error('connection terminated unexpectedly');
    };
    await publishMetrics(nc, slug, { a: 1, b: 2 });
    await waitFor(async () => (await count('federation_metrics_duplicates_total')) === 1, {
      what: 'redelivered',
    });
    expect(await rows(slug)).toEqual([
      { metric_type: 'a', value_number: 1 },
      { metric_type: 'b', value_number: 2 },
    ]);
    expect(await count('federation_metrics_retried_total', { reason: 'database' })).toBe(1);
    expect(await count('federation_metrics_stored_total')).toBe(0);
    expect(await count('federation_metrics_received_total')).toBe(2);
  });

  it('keeps retrying while the database is down and stores everything when it is back', async () => {
    await startConsumer();
    const slug = uniqueSlug('dbdown');
    await project(slug);
    let down = true;
    service.beforeInsert = () => {
      if (down) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    };
    for (let i = 0; i < 20; i++) await publishMetrics(nc, slug, { [`m${i}`]: i });
    await waitFor(
      async () => (await count('federation_metrics_retried_total', { reason: 'database' })) >= 40,
      {
        what: 'retries while down',
      },
    );
    down = false;
    await waitFor(async () => (await rows(slug)).length === 20, { what: 'all stored after recovery' });
    expect(await count('federation_metrics_rejected_total')).toBe(0);
  });

  it('drops only the message the database refuses, and stores the rest of its batch', async () => {
    await startConsumer();
    const slug = uniqueSlug('refused');
    await project(slug);
    service.beforeInsert = (o) => {
      if (o.some((x) => x.metricType === 'poison')) throw dataError();
    };
    await Promise.all([
      publishMetrics(nc, slug, { good1: 1 }),
      publishMetrics(nc, slug, { poison: 1 }),
      publishMetrics(nc, slug, { good2: 2 }),
    ]);
    await waitFor(
      async () => (await count('federation_metrics_rejected_total', { reason: 'db_rejected' })) === 1,
    );
    await waitFor(async () => (await rows(slug)).length === 2);
    expect((await rows(slug)).map((r) => r.metric_type)).toEqual(['good1', 'good2']);
  });

  it('on stop, commits and acknowledges the batch in hand before returning', async () => {
    const c = await startConsumer();
    const slug = uniqueSlug('stop');
    await project(slug);
    let release!: () => void;
    const writing = new Promise<void>((r) => {
      service.beforeInsert = () =>
        new Promise<void>((go) => {
          r();
          release = go;
        });
    });
    await publishMetrics(nc, slug, { inflight: 1 });
    await writing;
    const stopped = c.stop();
    setTimeout(() => release(), 200);
    await stopped;
    expect(c.state).toBe('stopped');
    expect(await rows(slug)).toEqual([{ metric_type: 'inflight', value_number: 1 }]);
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const info = await (await jetstreamManager(nc)).consumers.info(`FED_METRICS_T${streamNo}`, c.durable);
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  });
});
