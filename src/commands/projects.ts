import { parseArgs } from 'node:util';
import type { Command } from './types.ts';

interface ProjectRow {
  slug: string;
  name: string;
  status: string;
  version: string | null;
  last_heartbeat_at: string | null;
  tags: string[];
  hub_url: string;
}

function age(iso: string | null, now: number): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

const STATUSES = ['online', 'offline', 'degraded'];

export function formatTable(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Reads the API the way any client would; nothing here touches the database. */
export async function apiGet(url: string, token: string | undefined): Promise<Response> {
  return fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
}

export const projectsCommand: Command = {
  summary: 'list projects from a running service as a table',
  usage: `federation projects [--status online|offline|degraded] [--tag T] [--url URL] [--json]

  --url     the service (default http://127.0.0.1:8001, or FEDERATION_URL)
  --token   bearer token when FED_READ_TOKEN is set (default FEDERATION_TOKEN)`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        status: { type: 'string' },
        tag: { type: 'string' },
        url: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
      },
    });
    if (values.status !== undefined && !STATUSES.includes(values.status)) {
      console.error(
        `federation projects: --status ${JSON.stringify(values.status)} is invalid: expected ${STATUSES.join(', ')}`,
      );
      return 2;
    }
    const base = (values.url ?? process.env.FEDERATION_URL ?? 'http://127.0.0.1:8001').replace(/\/$/, '');
    const token = values.token ?? process.env.FEDERATION_TOKEN;
    const all: ProjectRow[] = [];
    let cursor: string | null = null;
    do {
      const qs = new URLSearchParams({ limit: '1000' });
      if (values.status) qs.set('status', values.status);
      if (values.tag) qs.set('tag', values.tag);
      if (cursor) qs.set('cursor', cursor);
      let res: Response;
      try {
        res = await apiGet(`${base}/api/fed/projects?${qs}`, token);
      } catch (err) {
        const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
        console.error(`federation projects: cannot reach ${base}: ${cause}`);
        return 1;
      }
      if (!res.ok) {
        const body = (await res.json().catch(() => ({}))) as { message?: string };
        console.error(`federation projects: ${res.status} ${body.message ?? res.statusText}`);
        return 1;
      }
      all.push(...((await res.json()) as ProjectRow[]));
      cursor = res.headers.get('x-next-cursor');
    } while (cursor);
    if (values.json) {
      console.log(JSON.stringify(all, null, 2));
      return 0;
    }
    const now = Date.now();
    const rows = [['SLUG', 'STATUS', 'LAST HEARTBEAT', 'VERSION', 'NAME', 'TAGS', 'HUB URL']];
    for (const p of all) {
      rows.push([
        p.slug,
        p.status,
        age(p.last_heartbeat_at, now),
        p.version ?? '-',
        p.name,
        p.tags.join(','),
        p.hub_url,
      ]);
    }
    console.log(formatTable(rows));
    const counts = all.reduce<Record<string, number>>((acc, p) => {
      acc[p.status] = (acc[p.status] ?? 0) + 1;
      return acc;
    }, {});
    console.log(
      `\n${all.length} projects: ${
        Object.entries(counts)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ') || 'none'
      }`,
    );
    return 0;
  },
};
