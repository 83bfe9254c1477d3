/** The Federation API as the view sees it: HTTP and SSE only, shapes from the contract in DESIGN.md. */

export const PROJECT_STATUSES = ['online', 'degraded', 'offline'] as const;
export type ProjectStatus = (typeof PROJECT_STATUSES)[number];

export type MetricEntry = number | string | { value: number | string; observed_at?: string };

export interface GraphNode {
  id: number;
  slug: string;
  name: string;
  hub_url: string;
  mesh_namespace: string;
  status: ProjectStatus;
  tags: string[];
  last_heartbeat_at: string | null;
  created_at: string;
  updated_at: string;
  version: string | null;
  health?: string | null;
  allow_fanout?: string[];
  source?: string;
  configured?: boolean;
  status_changed_at?: string | null;
  /** A maintenance window in force: its transitions are stored but not notified. */
  maintenance?: { until: string; reason: string | null } | null;
  /** Changing status too often: notified once, until it settles. */
  flapping?: boolean;
  metrics?: Record<string, MetricEntry> | null;
  heartbeat_age_s?: number | null;
}

export interface GraphEdge {
  id: string | number;
  from: string;
  to: string;
  kind: string;
  strength: number | null;
  source: string;
  details: unknown;
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export const GROUP_BYS = ['tag', 'namespace', 'status'] as const;
export type GroupBy = (typeof GROUP_BYS)[number];
export type StatusCounts = Record<ProjectStatus, number>;

export interface GraphGroup {
  key: string;
  count: number;
  status_counts: StatusCounts;
  internal_edges: number;
}

export interface GroupEdge {
  from: string;
  to: string;
  count: number;
  kinds: string[];
}

export interface GroupedGraph {
  group_by: GroupBy;
  groups: GraphGroup[];
  edges: GroupEdge[];
}

export interface ExternalEdge {
  project: string;
  group: string;
  direction: 'out' | 'in';
  count: number;
  kinds: string[];
}

export interface GroupGraph extends Graph {
  group_by: GroupBy;
  group: string;
  external_edges: ExternalEdge[];
}

export interface Problem {
  slug: string;
  name: string;
  status: 'offline' | 'degraded';
  since: string;
  reason: string;
  last_heartbeat_at: string | null;
  groups: Record<GroupBy, string>;
}

export interface Problems {
  counts: StatusCounts;
  problems: Problem[];
}

export interface StatusEvent {
  slug: string;
  from: ProjectStatus;
  to: ProjectStatus;
  at: string;
  reason: string;
}

export interface MetricsEvent {
  project: string;
  kind?: string;
  observed_at: string;
  metrics: Record<string, number | string>;
}

export const FANOUT_OUTCOMES = ['ok', 'error', 'timeout', 'not_allowed', 'offline'] as const;
export type FanoutOutcome = (typeof FANOUT_OUTCOMES)[number];

export interface FanoutRun {
  id: string;
  action: string;
  status: 'running' | 'done';
  counts: Record<FanoutOutcome, number>;
  results?: Array<{ slug: string; outcome: FanoutOutcome; error?: string; duration_ms?: number }>;
}

export interface History {
  slug: string;
  transitions: Array<{ from: ProjectStatus; to: ProjectStatus; at: string; reason: string }>;
  uptime: Record<string, number | null>;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string | undefined;
  constructor(status: number, message: string, code?: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

const READ_TOKEN_KEY = 'federation.readToken';
const ADMIN_TOKEN_KEY = 'federation.adminToken';

function storage(): Storage | undefined {
  try {
    return window.sessionStorage;
  } catch {
    return undefined;
  }
}

/** Tokens live in sessionStorage: they survive a reload but not the browser tab. */
export const tokens = {
  read: (): string | undefined => storage()?.getItem(READ_TOKEN_KEY) ?? tokens.admin(),
  admin: (): string | undefined => storage()?.getItem(ADMIN_TOKEN_KEY) ?? undefined,
  setRead(token: string): void {
    storage()?.setItem(READ_TOKEN_KEY, token);
  },
  setAdmin(token: string): void {
    storage()?.setItem(ADMIN_TOKEN_KEY, token);
  },
};

async function request<T>(
  path: string,
  init: { method?: string; body?: unknown; token?: string | undefined; signal?: AbortSignal } = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  if (init.body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method: init.method ?? 'GET',
      headers,
      body: init.body === undefined ? null : JSON.stringify(init.body),
      signal: init.signal ?? null,
    });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'the server did not answer');
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const err = body as { error?: string; message?: string } | undefined;
    throw new ApiError(res.status, err?.message ?? `${res.status} ${res.statusText}`, err?.error);
  }
  return body as T;
}

const q = encodeURIComponent;

export const api = {
  graph: (signal?: AbortSignal) => request<Graph>('/api/fed/graph', { token: tokens.read(), signal }),
  grouped: (groupBy: GroupBy, signal?: AbortSignal) =>
    request<GroupedGraph>(`/api/fed/graph?group_by=${q(groupBy)}`, { token: tokens.read(), signal }),
  group: (groupBy: GroupBy, key: string, signal?: AbortSignal) =>
    request<GroupGraph>(`/api/fed/graph?group_by=${q(groupBy)}&group=${q(key)}`, {
      token: tokens.read(),
      signal,
    }),
  problems: (limit: number, signal?: AbortSignal) =>
    request<Problems>(`/api/fed/problems?limit=${limit}`, { token: tokens.read(), signal }),
  history: (slug: string, signal?: AbortSignal) =>
    request<History>(`/api/fed/projects/${encodeURIComponent(slug)}/history`, {
      token: tokens.read(),
      signal,
    }),
  startAudit: () =>
    request<FanoutRun>('/api/fed/actions', {
      method: 'POST',
      body: { action: 'audit', targets: { status: 'online' } },
      token: tokens.admin(),
    }),
  run: (id: string) =>
    request<FanoutRun>(`/api/fed/actions/${encodeURIComponent(id)}`, { token: tokens.read() }),
  /** EventSource cannot send headers, so the read token rides in the query string. */
  eventsUrl: (): string => {
    // Only the read token may travel in a URL (EventSource cannot send headers): URLs end up in
    // logs and history, and the admin token must never be there.
    const token = storage()?.getItem(READ_TOKEN_KEY) ?? undefined;
    return token ? `/api/fed/events?access_token=${encodeURIComponent(token)}` : '/api/fed/events';
  },
};

/** Accepts both a bare value and the `{value, observed_at}` shape of GET /api/fed/metrics. */
export function metricValue(entry: MetricEntry): { value: number | string; observedAt?: string } {
  if (typeof entry === 'object' && entry !== null) {
    return entry.observed_at ? { value: entry.value, observedAt: entry.observed_at } : { value: entry.value };
  }
  return { value: entry };
}
