import { useCallback, useEffect, useRef, useState } from 'react';
import {
  ApiError,
  api,
  type ExternalEdge,
  type FanoutRun,
  type GraphEdge,
  type GraphGroup,
  type GraphNode,
  type GroupBy,
  type GroupEdge,
  type MetricsEvent,
  PROJECT_STATUSES,
  type Problem,
  type StatusCounts,
  type StatusEvent,
  tokens,
} from './api.ts';

/** The SSE feed is the live path; this re-fetch only repairs what a dropped event would leave stale. */
export const REFRESH_INTERVAL_MS = 30_000;
const RETRY_AFTER_ERROR_MS = 5_000;
const EVENTS_RECONNECT_MS = 10_000;
/** Events are applied in batches, so a burst of thousands of transitions is a few renders, not thousands. */
const EVENT_FLUSH_MS = 150;
/** Above this many projects the page shows groups instead of cards (unless told otherwise). */
export const GROUP_THRESHOLD = 500;
/** The problems list shows this many; the header counts say how many there are in all. */
export const PROBLEMS_LIMIT = 100;
/** After status events, the problems list (names, reasons) and group bars are re-read at most this often. */
const PROBLEMS_REFETCH_MS = 1_500;
const GROUPS_REFETCH_MS = 3_000;

export type GroupChoice = 'auto' | 'none' | GroupBy;

export interface ProjectView extends GraphNode {
  /** Client clock (ms) at which the last heartbeat arrived, from the server's heartbeat age: no clock skew. */
  beatAt: number | null;
}

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'unavailable';

/** What the canvas shows: every project as a card, the groups, or one group opened. */
export type ViewMode = 'cards' | 'groups' | 'group';

export interface Federation {
  mode: ViewMode;
  /** The grouping in force (also while a group is open); undefined for cards. */
  groupBy: GroupBy | undefined;
  /** Set when the server refused the whole graph and the page fell back to groups. */
  tooLarge: boolean;
  openGroup: string | undefined;
  projects: ProjectView[];
  /**
   * The slugs of `projects`, in order: the structure of the view. A new array only when the set of
   * projects changes (a fetch), never for a status or metrics change, so what depends on the structure
   * alone (layout, tags, edges) is not recomputed for each live update.
   */
  slugs: readonly string[];
  /** `projects` as last fetched (names, tags): a new array only when a fetch brought a change. */
  fetched: ProjectView[];
  edges: GraphEdge[];
  external: ExternalEdge[];
  groups: GraphGroup[];
  groupEdges: GroupEdge[];
  counts: StatusCounts | undefined;
  problems: Problem[];
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
  let next: ProjectView[] | undefined;
  for (const patch of patches) {
    const i = index.get(patchSlug(patch));
    if (i === undefined) continue;
    next ??= projects.slice();
    const current = next[i] as ProjectView;
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
  return next ?? projects;
}

const beatClose = (a: number | null, b: number | null) =>
  a === b || (a !== null && b !== null && Math.abs(a - b) < 2_000);

function sameProject(a: ProjectView, b: ProjectView): boolean {
  return (
    a.slug === b.slug &&
    a.status === b.status &&
    a.name === b.name &&
    a.version === b.version &&
    a.status_changed_at === b.status_changed_at &&
    a.last_heartbeat_at === b.last_heartbeat_at &&
    a.hub_url === b.hub_url &&
    a.mesh_namespace === b.mesh_namespace &&
    beatClose(a.beatAt, b.beatAt) &&
    a.tags.join('\u0000') === b.tags.join('\u0000') &&
    JSON.stringify(a.metrics ?? null) === JSON.stringify(b.metrics ?? null)
  );
}

/**
 * A re-fetch answers mostly what the page already shows: keeps the objects (and the array) of what
 * did not change, so React and React Flow redo only the cards that did.
 */
export function mergeProjects(old: ProjectView[], fresh: ProjectView[]): ProjectView[] {
  const bySlug = new Map(old.map((p) => [p.slug, p]));
  let same = old.length === fresh.length;
  const out = fresh.map((p, i) => {
    const o = bySlug.get(p.slug);
    if (o && sameProject(o, p)) {
      if (old[i] !== o) same = false;
      return o;
    }
    same = false;
    return p;
  });
  return same ? old : out;
}

function sameEdge(a: GraphEdge, b: GraphEdge): boolean {
  return (
    a.id === b.id && a.from === b.from && a.to === b.to && a.kind === b.kind && a.strength === b.strength
  );
}

/** Keeps the previous edges array when a re-fetch answers the same edges (the usual case). */
export function mergeList<T>(old: T[], fresh: T[], same: (a: T, b: T) => boolean): T[] {
  if (old.length !== fresh.length) return fresh;
  for (let i = 0; i < old.length; i++) if (!same(old[i] as T, fresh[i] as T)) return fresh;
  return old;
}

const sameExternal = (a: ExternalEdge, b: ExternalEdge) =>
  a.project === b.project &&
  a.group === b.group &&
  a.direction === b.direction &&
  a.count === b.count &&
  a.kinds.join() === b.kinds.join();

const sameSlugs = (old: readonly string[], projects: ProjectView[]): readonly string[] =>
  old.length === projects.length && projects.every((p, i) => p.slug === old[i])
    ? old
    : projects.map((p) => p.slug);

/** Moves each changed project to the top (or off the list), as the server would order it. */
function applyToProblems(list: Problem[], events: StatusEvent[], names: (slug: string) => string): Problem[] {
  let next = list;
  for (const e of events) {
    const old = next.find((p) => p.slug === e.slug);
    next = next.filter((p) => p.slug !== e.slug);
    if (e.to === 'online') continue;
    next = [
      {
        slug: e.slug,
        name: old?.name ?? names(e.slug),
        status: e.to,
        since: e.at,
        reason: e.reason,
        last_heartbeat_at: old?.last_heartbeat_at ?? null,
        groups: old?.groups ?? { tag: '', namespace: '', status: e.to },
      },
      ...next,
    ];
  }
  return next.slice(0, PROBLEMS_LIMIT);
}

function applyToCounts(counts: StatusCounts | undefined, events: StatusEvent[]): StatusCounts | undefined {
  if (!counts) return counts;
  const next = { ...counts };
  for (const e of events) {
    if (e.from === e.to) continue;
    next[e.from] = Math.max(0, next[e.from] - 1);
    next[e.to] += 1;
  }
  return next;
}

/** With groups by status, a transition moves one project from one group to another: no re-read needed. */
function applyToStatusGroups(groups: GraphGroup[], events: StatusEvent[]): GraphGroup[] {
  const byKey = new Map(groups.map((g) => [g.key, { ...g, status_counts: { ...g.status_counts } }]));
  for (const e of events) {
    const from = byKey.get(e.from);
    if (from && from.count > 0) {
      from.count -= 1;
      from.status_counts[e.from] = Math.max(0, from.status_counts[e.from] - 1);
    }
    const to = byKey.get(e.to) ?? {
      key: e.to,
      count: 0,
      status_counts: { online: 0, degraded: 0, offline: 0 },
      internal_edges: 0,
    };
    to.count += 1;
    to.status_counts[e.to] += 1;
    byKey.set(e.to, to);
  }
  return [...byKey.values()].filter((g) => g.count > 0).sort((a, b) => b.count - a.count);
}

function parse<T>(e: MessageEvent): T | undefined {
  try {
    return JSON.parse(e.data as string) as T;
  } catch {
    return undefined;
  }
}

const sum = (c: StatusCounts) => PROJECT_STATUSES.reduce((n, s) => n + (c[s] ?? 0), 0);

/**
 * The ecosystem as the page shows it. First the problems list with the live counts (one small
 * request); from their total the page decides between cards (one GET /api/fed/graph) and groups
 * (GET /api/fed/graph?group_by=…, never every project); then SSE patches keep it live, with a
 * periodic re-fetch as a fallback.
 */
export function useFederation(choice: GroupChoice, openGroup: string | undefined): Federation {
  const [mode, setMode] = useState<ViewMode>('cards');
  const [groupBy, setGroupBy] = useState<GroupBy>();
  const [tooLarge, setTooLarge] = useState(false);
  const [projects, setProjects] = useState<ProjectView[]>([]);
  const [slugs, setSlugs] = useState<readonly string[]>([]);
  const [fetched, setFetched] = useState<ProjectView[]>([]);
  const [edges, setEdges] = useState<GraphEdge[]>([]);
  const [external, setExternal] = useState<ExternalEdge[]>([]);
  const [groups, setGroups] = useState<GraphGroup[]>([]);
  const [groupEdges, setGroupEdges] = useState<GroupEdge[]>([]);
  const [counts, setCounts] = useState<StatusCounts>();
  const [problems, setProblems] = useState<Problem[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [fetchedAt, setFetchedAt] = useState<number>();
  const [error, setError] = useState<ApiError>();
  const [needsReadToken, setNeedsReadToken] = useState(false);
  const [live, setLive] = useState<LiveState>('connecting');
  const [tokenVersion, setTokenVersion] = useState(0);

  const inFlight = useRef<AbortController | undefined>(undefined);
  const retryTimer = useRef<number | undefined>(undefined);
  const knownSlugs = useRef(new Set<string>());
  const names = useRef(new Map<string, string>());
  const shown = useRef<{ mode: ViewMode; groupBy: GroupBy | undefined }>({
    mode: 'cards',
    groupBy: undefined,
  });
  // Events that arrive while a fetch is in flight may be newer than its snapshot: re-applied after it.
  const sinceFetch = useRef<Patch[] | null>(null);
  const fanoutListeners = useRef(new Set<(run: Partial<FanoutRun> & { id: string }) => void>());
  const choiceRef = useRef({ choice, openGroup });
  choiceRef.current = { choice, openGroup };

  const fail = useCallback((err: unknown, controller: AbortController, retry: () => void) => {
    if (controller.signal.aborted || (err as Error).name === 'AbortError') return;
    const apiError = err instanceof ApiError ? err : new ApiError(0, String(err));
    setError(apiError);
    sinceFetch.current = null;
    if (apiError.status === 401) {
      setNeedsReadToken(true);
      return;
    }
    retryTimer.current = window.setTimeout(retry, RETRY_AFTER_ERROR_MS);
  }, []);

  const applyProblems = useCallback((p: { counts: StatusCounts; problems: Problem[] }) => {
    setCounts(p.counts);
    setProblems(p.problems);
    for (const item of p.problems) names.current.set(item.slug, item.name);
  }, []);

  const refresh = useCallback(() => {
    inFlight.current?.abort();
    window.clearTimeout(retryTimer.current);
    const controller = new AbortController();
    inFlight.current = controller;
    sinceFetch.current = [];
    const { signal } = controller;
    const { choice: wanted, openGroup: open } = choiceRef.current;
    (async () => {
      const p = await api.problems(PROBLEMS_LIMIT, signal);
      if (signal.aborted) return;
      applyProblems(p);
      const total = sum(p.counts);
      let by: GroupBy | undefined =
        wanted === 'none'
          ? undefined
          : wanted === 'auto'
            ? total > GROUP_THRESHOLD
              ? 'tag'
              : undefined
            : wanted;
      let large = false;
      const now = () => Date.now();
      if (!by) {
        try {
          const graph = await api.graph(signal);
          if (signal.aborted) return;
          const at = now();
          const fresh = (graph.nodes ?? []).map((n) => toView(n, at));
          fresh.sort((a, b) => (a.slug < b.slug ? -1 : a.slug > b.slug ? 1 : 0));
          const nodes = applyPatches(fresh, sinceFetch.current ?? []);
          knownSlugs.current = new Set(nodes.map((n) => n.slug));
          for (const n of nodes) names.current.set(n.slug, n.name);
          shown.current = { mode: 'cards', groupBy: undefined };
          setMode('cards');
          setGroupBy(undefined);
          setTooLarge(false);
          setProjects((old) => mergeProjects(old, nodes));
          setSlugs((old) => sameSlugs(old, nodes));
          setFetched((old) => mergeProjects(old, nodes));
          setEdges((old) => mergeList(old, graph.edges ?? [], sameEdge));
          setExternal([]);
          setGroups([]);
          setGroupEdges([]);
        } catch (err) {
          // The server draws the line (FED_GRAPH_MAX_NODES): past it, groups are the only view.
          if (!(err instanceof ApiError && err.status === 400)) throw err;
          by = 'tag';
          large = true;
        }
      }
      if (by) {
        const [grouped, group] = await Promise.all([
          api.grouped(by, signal),
          open === undefined ? Promise.resolve(undefined) : api.group(by, open, signal),
        ]);
        if (signal.aborted) return;
        const at = now();
        setGroupBy(by);
        setTooLarge(large);
        setGroups(grouped.groups);
        setGroupEdges(grouped.edges);
        if (group) {
          const fresh = group.nodes.map((n) => toView(n, at));
          const nodes = applyPatches(fresh, sinceFetch.current ?? []);
          knownSlugs.current = new Set(nodes.map((n) => n.slug));
          for (const n of nodes) names.current.set(n.slug, n.name);
          shown.current = { mode: 'group', groupBy: by };
          setMode('group');
          setProjects((old) => mergeProjects(old, nodes));
          setSlugs((old) => sameSlugs(old, nodes));
          setFetched((old) => mergeProjects(old, nodes));
          setEdges((old) => mergeList(old, group.edges, sameEdge));
          setExternal((old) => mergeList(old, group.external_edges, sameExternal));
        } else {
          knownSlugs.current = new Set();
          shown.current = { mode: 'groups', groupBy: by };
          setMode('groups');
          setProjects([]);
          setSlugs([]);
          setFetched([]);
          setEdges([]);
          setExternal([]);
        }
      }
      sinceFetch.current = null;
      setFetchedAt(now());
      setLoaded(true);
      setError(undefined);
      setNeedsReadToken(false);
    })().catch((err: unknown) => fail(err, controller, refresh));
  }, [applyProblems, fail]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: a new choice, group or token means fetching again
  useEffect(() => {
    refresh();
    const timer = window.setInterval(refresh, REFRESH_INTERVAL_MS);
    return () => {
      window.clearInterval(timer);
      window.clearTimeout(retryTimer.current);
      inFlight.current?.abort();
    };
  }, [refresh, tokenVersion, choice, openGroup]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: a new token means a new stream URL
  useEffect(() => {
    if (typeof EventSource === 'undefined') {
      setLive('unavailable');
      return;
    }
    let source: EventSource | undefined;
    let reconnectTimer: number | undefined;
    let flushTimer: number | undefined;
    let problemsTimer: number | undefined;
    let groupsTimer: number | undefined;
    let dropped = false;
    let closed = false;
    const queue: Patch[] = [];

    const refetchProblems = () => {
      problemsTimer = undefined;
      api.problems(PROBLEMS_LIMIT).then(applyProblems, () => {});
    };
    const refetchGroups = () => {
      groupsTimer = undefined;
      const by = shown.current.groupBy;
      if (!by) return;
      api.grouped(by).then(
        (g) => {
          if (shown.current.groupBy !== by) return;
          setGroups(g.groups);
          setGroupEdges(g.edges);
        },
        () => {},
      );
    };

    const flush = () => {
      flushTimer = undefined;
      const patches = queue.splice(0);
      if (patches.length === 0) return;
      const statuses = patches.flatMap((p) => (p.kind === 'status' ? [p.event] : []));
      if (shown.current.mode !== 'groups') setProjects((current) => applyPatches(current, patches));
      if (statuses.length > 0) {
        setCounts((c) => applyToCounts(c, statuses));
        setProblems((list) => applyToProblems(list, statuses, (s) => names.current.get(s) ?? s));
        // Names and reasons of projects the page has never seen come with the next read of the list.
        problemsTimer ??= window.setTimeout(refetchProblems, PROBLEMS_REFETCH_MS);
        if (shown.current.groupBy === 'status') setGroups((g) => applyToStatusGroups(g, statuses));
        else if (shown.current.groupBy) groupsTimer ??= window.setTimeout(refetchGroups, GROUPS_REFETCH_MS);
      }
      // A slug we have never seen is a project registered since the last fetch.
      if (shown.current.mode === 'cards' && patches.some((p) => !knownSlugs.current.has(patchSlug(p)))) {
        refresh();
      }
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
      window.clearTimeout(problemsTimer);
      window.clearTimeout(groupsTimer);
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
    mode,
    groupBy,
    tooLarge,
    openGroup: mode === 'group' ? openGroup : undefined,
    projects,
    slugs,
    fetched,
    edges,
    external,
    groups,
    groupEdges,
    counts,
    problems,
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
