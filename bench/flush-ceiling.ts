/**
 * The writer's flush against its ceiling: a plain batched `UPDATE … FROM unnest(…)` of the same rows
 * and the same columns (last_heartbeat_at, reported_health, version, interval_s, updated_at) on the
 * same table, both measured here, one after the other, on the same rows. The writer also queues the
 * rows' deadlines (project_deadlines); the plain UPDATE does not, so that cost is inside the ratio.
 */
import pg from 'pg';
import type { App } from '../src/app.ts';
import type { Heartbeat } from '../src/protocol/index.ts';
import { percentile } from './bench-infra.ts';

export interface FlushCeiling {
  rows: number;
  flush_ms: number;
  raw_update_ms: number;
  /** raw_update_ms / flush_ms: 1 means the writer is as fast as the plain UPDATE. */
  flush_vs_raw_update: number;
}

/** Measures `rounds` flushes of `slugs` (already registered) through the app, and the plain UPDATE. */
export async function measureFlushCeiling(
  app: App,
  databaseUrl: string,
  slugs: readonly string[],
  rounds = 7,
): Promise<FlushCeiling> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const flushes: number[] = [];
    const raws: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const now = new Date();
      for (const slug of slugs) {
        const hb: Heartbeat = {
          project_slug: slug,
          hub_url: `http://${slug}.bench.invalid:8000`,
          mesh_namespace: `hub.${slug}`,
          timestamp: now.toISOString(),
          version: `f${r}`,
        };
        app.heartbeatWriter.enqueue(hb, now, 160);
      }
      let t0 = performance.now();
      await app.heartbeatWriter.flush();
      flushes.push(performance.now() - t0);

      const at = new Date().toISOString();
      const sorted = [...slugs].sort();
      t0 = performance.now();
      await client.query(
        `update projects p set last_heartbeat_at = h.at, reported_health = 'ok', version = h.version,
           interval_s = null, updated_at = h.at
         from unnest($1::text[], $2::timestamptz[], $3::text[]) as h(slug, at, version)
         where p.slug = h.slug`,
        [sorted, sorted.map(() => at), sorted.map(() => `raw${r}`)],
      );
      raws.push(performance.now() - t0);
    }
    const flush = percentile(flushes, 50);
    const raw = percentile(raws, 50);
    return {
      rows: slugs.length,
      flush_ms: Math.round(flush),
      raw_update_ms: Math.round(raw),
      flush_vs_raw_update: Math.round((raw / flush) * 100) / 100,
    };
  } finally {
    await client.end();
  }
}
