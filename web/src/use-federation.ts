import { useCallback, useEffect, useRef, useState } from 'react';
import {
  ApiError,
  api,
  type FanoutRun,
  type GraphEdge,
  type GraphNode,
  type MetricsEvent,
  type StatusEvent,
  tokens,
} from './api.ts';

/** The SSE feed is the live path; this re-fetch only repairs what a dropped event would leave stale. */
export const REFRESH_INTERVAL_MS = 30_000;
const RETRY_AFTER_ERROR_MS = 5_000;
const EVENTS_RECONNECT_MS = 10_000;
/** Events are applied in batches, so a burst of thousands of transitions is a few renders, not thousands. */
const EVENT_FLUSH_MS = 150;

export interface ProjectView extends GraphNode {
  /** Client clock (ms) at which the last heartbeat arrived, from the server's heartbeat age: no clock skew. */
  beatAt: number | null;
}

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'unavailable';

export interface Federation {
  projects: ProjectView[];
  edges: GraphEdge[];
  loaded: boolean;
  fetchedAt: number | undefined;
  error: ApiError | undefined;
  needsReadToken: boolean;
  live: LiveState;
  refresh: () => void;
  saveReadToken: (token: string) => void;
  /** Fan-out progress pushed over SSE; returns the unsubscribe function. */
  onFanout: (listener: (run: Partial<FanoutRun> & { id: string }) => void) => () => void;
}

type Patch =
  | { kind: 'status'; event: StatusEvent; receivedAt: number }
  | { kind: 'metrics'; event: MetricsEvent; receivedAt: number };

function toView(node: GraphNode, fetchedAt: number): ProjectView {
  let beatAt: number | null = null;
  if (typeof node.heartbeat_age_s === 'number') beatAt = fetchedAt - node.heartbeat_age_s * 1000;
  else if (node.last_heartbeat_at) beatAt = Date.parse(node.last_heartbeat_at);
  return { ...node, tags: node.tags ?? [], beatAt };
}

const patchSlug = (patch: Patch): string =>
  patch.kind === 'status' ? patch.event.slug : patch.event.project;

function applyPatches(projects: ProjectView[], patches: Patch[]): ProjectView[] {
  const index = new Map<string, number>();
  projects.forEach((p, i) => {
    index.set(p.slug, i);
  });
  const next = projects.slice();
  for (const patch of patches) {
    const i = index.get(patchSlug(patch));
    const current = i === undefined ? undefined : next[i];
    if (i === undefined || !current) continue;
    if (patch.kind === 'status') {
      const { from, to, at } = patch.event;
      // Coming back from offline takes a fresh heartbeat (the status rule), so its age is about zero.
      const beatAt = from === 'offline' && to !== 'offline' ? patch.receivedAt : current.beatAt;
      next[i] = { ...current, status: to, status_changed_at: at, beatAt };
    } else {
      const metrics = { ...(current.metrics ?? {}) };
      for (const [name, value] of Object.entries(patch.event.metrics)) {
        metrics[name] = { value, observed_at: patch.event.observed_at };
      }
      next[i] = { ...current, metrics };
    }
  }
  return next;
}

function parse<T>(e: MessageEvent): T | undefined {
  try {
    return JSON.parse(e.data as string) as T;
  } catch {
    return undefined;
  }
}

/** The whole ecosystem: one GET /api/fed/graph, then SSE patches, with a periodic re-fetch as a fallback. */
export function useFederation(): Federation {
  const [projects, setProjects] = useState<ProjectView[]>([]);
  const [edges, setEdges] = useState<GraphEdge[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [fetchedAt, setFetchedAt] = useState<number>();
  const [error, setError] = useState<ApiError>();
  const [needsReadToken, setNeedsReadToken] = useState(false);
  const [live, setLive] = useState<LiveState>('connecting');
  const [tokenVersion, setTokenVersion] = useState(0);

  const inFlight = useRef<AbortController | undefined>(undefined);
  const retryTimer = useRef<number | undefined>(undefined);
  const knownSlugs = useRef(new Set<string>());
  // Events that arrive while a fetch is in flight may be newer than its snapshot: re-applied after it.
  const sinceFetch = useRef<Patch[] | null>(null);
  const fanoutListeners = useRef(new Set<(run: Partial<FanoutRun> & { id: string }) => void>());

  const refresh = useCallback(() => {
    inFlight.current?.abort();
    window.clearTimeout(retryTimer.current);
    const controller = new AbortController();
    inFlight.current = controller;
    sinceFetch.current = [];
    api.graph(controller.signal).then(
      (graph) => {
        if (controller.signal.aborted) return;
        const now = Date.now();
        const fresh = (graph.nodes ?? []).map((n) => toView(n, now));
        fresh.sort((a, b) => (a.slug < b.slug ? -1 : a.slug > b.slug ? 1 : 0));
        const nodes = applyPatches(fresh, sinceFetch.current ?? []);
        sinceFetch.current = null;
        knownSlugs.current = new Set(nodes.map((n) => n.slug));
        setProjects(nodes);
        setEdges(graph.edges ?? []);
        setFetchedAt(now);
        setLoaded(true);
        setError(undefined);
        setNeedsReadToken(false);
      },
      (err: unknown) => {
        if (controller.signal.aborted) return;
        const apiError = err instanceof ApiError ? err : new ApiError(0, String(err));
        setError(apiError);
        if (apiError.status === 401) {
          setNeedsReadToken(true);
          return;
        }
        sinceFetch.current = null;
        retryTimer.current = window.setTimeout(refresh, RETRY_AFTER_ERROR_MS);
      },
    );
  }, []);

  // biome-ignore lint/correctness/useExhaustiveDependencies: a new token means fetching again
  useEffect(() => {
    refresh();
    const timer = window.setInterval(refresh, REFRESH_INTERVAL_MS);
    return () => {
      window.clearInterval(timer);
      window.clearTimeout(retryTimer.current);
      inFlight.current?.abort();
    };
  }, [refresh, tokenVersion]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: a new token means a new stream URL
  useEffect(() => {
    if (typeof EventSource === 'undefined') {
      setLive('unavailable');
      return;
    }
    let source: EventSource | undefined;
    let reconnectTimer: number | undefined;
    let flushTimer: number | undefined;
    let dropped = false;
    let closed = false;
    const queue: Patch[] = [];

    const flush = () => {
      flushTimer = undefined;
      const patches = queue.splice(0);
      if (patches.length === 0) return;
      setProjects((current) => applyPatches(current, patches));
      // A slug we have never seen is a project registered since the last fetch.
      if (patches.some((p) => !knownSlugs.current.has(patchSlug(p)))) refresh();
    };
    const enqueue = (patch: Patch) => {
      queue.push(patch);
      sinceFetch.current?.push(patch);
      flushTimer ??= window.setTimeout(flush, EVENT_FLUSH_MS);
    };

    const connect = () => {
      setLive(dropped ? 'reconnecting' : 'connecting');
      const es = new EventSource(api.eventsUrl());
      source = es;
      es.addEventListener('open', () => {
        setLive('live');
        // Whatever happened while the stream was down is only in the graph.
        if (dropped) refresh();
        dropped = false;
      });
      es.addEventListener('error', () => {
        dropped = true;
        if (es.readyState === EventSource.CLOSED) {
          // The browser gave up (e.g. the endpoint answered 4xx/5xx): try again later ourselves.
          setLive('unavailable');
          if (!closed) reconnectTimer = window.setTimeout(connect, EVENTS_RECONNECT_MS);
        } else {
          setLive('reconnecting');
        }
      });
      es.addEventListener('status', (e) => {
        const event = parse<StatusEvent>(e);
        if (event?.slug && event.to) enqueue({ kind: 'status', event, receivedAt: Date.now() });
      });
      es.addEventListener('metrics', (e) => {
        const event = parse<MetricsEvent>(e);
        if (event?.project && event.metrics) enqueue({ kind: 'metrics', event, receivedAt: Date.now() });
      });
      es.addEventListener('fanout', (e) => {
        const run = parse<Partial<FanoutRun> & { id: string }>(e);
        if (run?.id) for (const listener of fanoutListeners.current) listener(run);
      });
    };
    connect();
    return () => {
      closed = true;
      source?.close();
      window.clearTimeout(reconnectTimer);
      window.clearTimeout(flushTimer);
    };
  }, [refresh, tokenVersion]);

  const saveReadToken = useCallback((token: string) => {
    tokens.setRead(token);
    setTokenVersion((v) => v + 1);
  }, []);

  const onFanout = useCallback((listener: (run: Partial<FanoutRun> & { id: string }) => void) => {
    fanoutListeners.current.add(listener);
    return () => {
      fanoutListeners.current.delete(listener);
    };
  }, []);

  return {
    projects,
    edges,
    loaded,
    fetchedAt,
    error,
    needsReadToken,
    live,
    refresh,
    saveReadToken,
    onFanout,
  };
}
