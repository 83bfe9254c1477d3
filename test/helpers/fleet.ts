import { sql } from 'drizzle-orm';
import type { App } from '../../src/app.ts';
import { query } from '../../src/db/connection.ts';

export interface FleetShape {
  projects: number;
  edges: number;
  /** Every n-th project has never beaten (offline); default 10. */
  offlineEvery?: number;
  /** Every n-th project reports degraded; default 25. */
  degradedEvery?: number;
  /** Teams (first tag); default 12. */
  teams?: number;
  prefix?: string;
}

/**
 * A large catalog written straight into the database in a few statements (registering 100,000
 * projects through the API would take minutes): projects in teams (first tag) and regions (namespace
 * prefix), stored statuses equal to the rule's so no sweep floods the feed, and edges mostly inside a
 * team. Slugs are `<prefix>-000000`…, names "Project <team> <i>".
 */
export async function seedFleet(app: App, shape: FleetShape): Promise<{ slugs: (i: number) => string }> {
  const prefix = shape.prefix ?? 'p';
  const offlineEvery = shape.offlineEvery ?? 10;
  const degradedEvery = shape.degradedEvery ?? 25;
  const teams = shape.teams ?? 12;
  const now = app.clock.now().toISOString();
  await query(
    app.db,
    sql`insert into projects (slug, name, hub_url, mesh_namespace, tags, status, last_heartbeat_at,
                              reported_health, version, source, created_at, updated_at, status_changed_at)
        select ${prefix} || '-' || lpad(i::text, 6, '0'),
               'Project team-' || (i % ${teams}) || ' ' || i,
               'http://127.0.0.1:9/' || i,
               (array['eu', 'us', 'ap'])[1 + i % 3] || '.' || ${prefix} || i,
               jsonb_build_array('team-' || (i % ${teams}), 'seeded'),
               case when i % ${offlineEvery} = 0 then 'offline' when i % ${degradedEvery} = 0 then 'degraded' else 'online' end,
               case when i % ${offlineEvery} = 0 then null else ${now}::timestamptz end,
               case when i % ${degradedEvery} = 0 then 'degraded' else 'ok' end,
               '1.0.' || (i % 7), 'api', ${now}::timestamptz, ${now}::timestamptz,
               ${now}::timestamptz - make_interval(secs => i)
        from generate_series(0, ${shape.projects - 1}) as i`,
  );
  if (shape.edges > 0) {
    // Edge j goes from project j mod n to a project of the same team nearby, one in five to another team.
    await query(
      app.db,
      sql`with ids as (select id, row_number() over (order by slug) - 1 as i from projects where slug like ${`${prefix}-%`}),
          pairs as (
            select distinct on (f.id, t.id) f.id as from_id, t.id as to_id, j
            from generate_series(0, ${shape.edges * 2}) as j
            join ids f on f.i = j % ${shape.projects}
            join ids t on t.i = case when j % 5 = 0 then (j * 7 + 13) % ${shape.projects}
                                     else ((j % ${shape.projects}) + ${teams} * (1 + j % 4)) % ${shape.projects} end
            where f.id <> t.id
          )
          insert into integration_edges (from_project_id, to_project_id, kind, strength, source, created_at, last_seen_at)
          select from_id, to_id, (array['api', 'queue', 'event', 'library', 'shared-schema'])[1 + j % 5], 0.5, 'api',
                 ${now}::timestamptz, ${now}::timestamptz
          from pairs order by j limit ${shape.edges}
          on conflict do nothing`,
    );
  }
  return { slugs: (i: number) => `${prefix}-${String(i).padStart(6, '0')}` };
}
