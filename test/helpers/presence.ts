import type { App } from '../../src/app.ts';
import type { Heartbeat } from '../../src/protocol/index.ts';

/** A valid heartbeat payload for `slug`. */
export const heartbeatPayload = (slug: string, extra: Partial<Heartbeat> & Record<string, unknown> = {}) => ({
  project_slug: slug,
  hub_url: `http://${slug}.local:8000`,
  mesh_namespace: `hub.${slug}`,
  timestamp: new Date().toISOString(),
  version: '1.0.0',
  ...extra,
});

/** The value of one series in Prometheus text, 0 when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

export async function metricsText(app: App): Promise<string> {
  return (await app.inject('/metrics')).body;
}

export interface ProjectView {
  slug: string;
  status: string;
  last_heartbeat_at: string | null;
  version: string | null;
}

export async function findProject(app: App, slug: string): Promise<ProjectView | undefined> {
  const res = await app.inject(`/api/fed/projects/${slug}`);
  return res.statusCode === 200 ? (res.json() as ProjectView) : undefined;
}

export interface SseEvent {
  event: string;
  data: unknown;
}

/** Reads a Server-Sent Events stream over real HTTP and keeps every event it sees. */
export async function openEventStream(url: string) {
  const abort = new AbortController();
  const res = await fetch(url, { signal: abort.signal });
  if (!res.ok || !res.body) throw new Error(`SSE request failed with ${res.status}`);
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const done = (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trim());
          }
          if (data.length > 0) events.push({ event, data: JSON.parse(data.join('\n')) });
          end = buffer.indexOf('\n\n');
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    headers: res.headers,
    events,
    comments,
    /** The `event: status` data seen so far. */
    statuses: () =>
      events
        .filter((e) => e.event === 'status')
        .map((e) => e.data as { slug: string; from: string; to: string; at: string; reason: string }),
    async close() {
      abort.abort();
      await done;
    },
  };
}
