import {
  Background,
  Controls,
  MarkerType,
  MiniMap,
  type NodeHandle,
  Position,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
} from '@xyflow/react';
import { type FormEvent, type ReactNode, useEffect, useMemo, useRef, useState } from 'react';
import { type GraphEdge, PROJECT_STATUSES, type ProjectStatus } from './api.ts';
import { AuditControl } from './audit-control.tsx';
import { formatTime } from './format.ts';
import { KindEdge, type KindEdgeType } from './kind-edge.tsx';
import { layoutGraph, NODE_HEIGHT, NODE_WIDTH } from './layout.ts';
import { NowContext, ProjectNode, type ProjectNodeType } from './project-node.tsx';
import { ProjectPanel } from './project-panel.tsx';
import { type Federation, type ProjectView, useFederation } from './use-federation.ts';

const nodeTypes = { project: ProjectNode };
const edgeTypes = { kind: KindEdge };
/** Handles are declared, not measured: with thousands of cards, measuring each would cost a layout pass. */
const HANDLES: NodeHandle[] = [
  { type: 'target', position: Position.Left, x: 0, y: NODE_HEIGHT / 2, width: 1, height: 1 },
  { type: 'source', position: Position.Right, x: NODE_WIDTH - 1, y: NODE_HEIGHT / 2, width: 1, height: 1 },
];
/** Kept in step with the .edge-kind-* strokes in styles.css. */
const EDGE_COLORS: Record<string, string> = {
  api: '#2f5bd3',
  queue: '#7b3fc4',
  event: '#0f8a8a',
  'shared-schema': '#a86400',
  library: '#6b7686',
  default: '#8a96a8',
};
/** Past this many projects the mini-map (an SVG rect per project) costs more than it helps. */
const MINIMAP_MAX_NODES = 2_000;
const NOW_TICK_MS = 5_000;

interface Filters {
  statuses: ReadonlySet<ProjectStatus>;
  tag: string;
  search: string;
}

function matches(p: ProjectView, f: Filters): boolean {
  if (!f.statuses.has(p.status)) return false;
  if (f.tag && !p.tags.includes(f.tag)) return false;
  if (f.search) {
    const q = f.search.toLowerCase();
    if (!p.name.toLowerCase().includes(q) && !p.slug.includes(q)) return false;
  }
  return true;
}

/** Owns the ticking clock, so a tick re-renders only the heartbeat ages on screen, not the whole view. */
function NowProvider({ children }: { children: ReactNode }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), NOW_TICK_MS);
    return () => window.clearInterval(timer);
  }, []);
  return <NowContext.Provider value={now}>{children}</NowContext.Provider>;
}

function edgeWidth(strength: number | null): number {
  const s =
    typeof strength === 'number' && Number.isFinite(strength) ? Math.min(1, Math.max(0, strength)) : 0.3;
  return 1 + s * 5;
}

/** Positions are recomputed only when the set of projects or edges changes, never for a status change. */
function useLayout(projects: ProjectView[], edges: GraphEdge[]) {
  const cache = useRef<{ key: string; positions: Map<string, { x: number; y: number }> } | undefined>(
    undefined,
  );
  const key = `${projects.map((p) => p.slug).join(',')}|${edges.map((e) => `${e.from}>${e.to}`).join(',')}`;
  if (cache.current?.key !== key) {
    cache.current = {
      key,
      positions: layoutGraph(
        projects.map((p) => p.slug),
        edges,
      ),
    };
  }
  return cache.current.positions;
}

function Flow({
  fed,
  filters,
  selected,
  onSelect,
}: {
  fed: Federation;
  filters: Filters;
  selected: string | undefined;
  onSelect: (slug: string | undefined) => void;
}) {
  const positions = useLayout(fed.projects, fed.edges);
  const { fitView } = useReactFlow();
  // Node objects are reused while nothing about them changed, so React Flow and React skip them.
  const nodeCache = useRef(new Map<string, ProjectNodeType>());

  const { nodes, visible } = useMemo(() => {
    const cache = nodeCache.current;
    const next = new Map<string, ProjectNodeType>();
    const visible = new Set<string>();
    const nodes = fed.projects.map((p) => {
      const position = positions.get(p.slug) ?? { x: 0, y: 0 };
      const hidden = !matches(p, filters);
      if (!hidden) visible.add(p.slug);
      const isSelected = p.slug === selected;
      const old = cache.get(p.slug);
      const node: ProjectNodeType =
        old &&
        old.data.project === p &&
        old.position === position &&
        old.hidden === hidden &&
        old.selected === isSelected
          ? old
          : {
              id: p.slug,
              type: 'project',
              position,
              data: { project: p },
              width: NODE_WIDTH,
              height: NODE_HEIGHT,
              measured: { width: NODE_WIDTH, height: NODE_HEIGHT },
              handles: HANDLES,
              hidden,
              selected: isSelected,
              draggable: false,
              connectable: false,
              ariaLabel: `${p.name} (${p.slug}), ${p.status}`,
              domAttributes: { 'data-slug': p.slug, 'data-status': p.status } as Record<string, string>,
            };
      next.set(p.slug, node);
      return node;
    });
    nodeCache.current = next;
    return { nodes, visible };
  }, [fed.projects, positions, filters, selected]);

  const edges = useMemo<KindEdgeType[]>(() => {
    const known = new Set(fed.projects.map((p) => p.slug));
    return fed.edges
      .filter((e) => known.has(e.from) && known.has(e.to))
      .map((e) => ({
        id: `edge-${e.id}`,
        type: 'kind' as const,
        source: e.from,
        target: e.to,
        data: { kind: e.kind, strength: e.strength },
        hidden: !visible.has(e.from) || !visible.has(e.to),
        className: `edge-kind-${e.kind}`,
        style: { strokeWidth: edgeWidth(e.strength) },
        // Sized in pixels, not in stroke widths, so a strong (wide) edge does not get a huge arrow.
        markerEnd: {
          type: MarkerType.ArrowClosed,
          width: 18,
          height: 18,
          markerUnits: 'userSpaceOnUse',
          color: EDGE_COLORS[e.kind] ?? EDGE_COLORS.default,
        },
        focusable: false,
        ariaLabel: `${e.from} ${e.kind} ${e.to}`,
        domAttributes: { 'data-kind': e.kind } as Record<string, string>,
      }));
  }, [fed.edges, fed.projects, visible]);

  // Bring what the filters left into view (bounded so thousands of cards are never all on screen).
  const filterKey = `${[...filters.statuses].sort().join()}|${filters.tag}|${filters.search}`;
  const firstFilter = useRef(filterKey);
  // biome-ignore lint/correctness/useExhaustiveDependencies: only a filter change should move the camera
  useEffect(() => {
    if (firstFilter.current === filterKey) return;
    firstFilter.current = filterKey;
    if (visible.size === 0) return;
    // Animating re-renders every card on screen each frame: only worth it for small graphs.
    void fitView({
      nodes: [...visible].slice(0, 500).map((id) => ({ id })),
      duration: fed.projects.length > 300 ? 0 : 250,
      maxZoom: 1.2,
    });
  }, [filterKey]);

  const many = fed.projects.length > MINIMAP_MAX_NODES;
  return (
    <ReactFlow<ProjectNodeType, KindEdgeType>
      nodes={nodes}
      edges={edges}
      nodeTypes={nodeTypes}
      edgeTypes={edgeTypes}
      onNodeClick={(_e, node) => onSelect(node.id)}
      // Selection stays ours; this only catches keyboard selection (Tab to a card, then Enter).
      onNodesChange={(changes) => {
        for (const c of changes) if (c.type === 'select' && c.selected) onSelect(c.id);
      }}
      onPaneClick={() => onSelect(undefined)}
      onlyRenderVisibleElements
      nodesDraggable={false}
      nodesConnectable={false}
      elementsSelectable
      fitView
      fitViewOptions={{ maxZoom: 1.2, minZoom: many ? 0.25 : 0.1 }}
      minZoom={many ? 0.2 : 0.05}
      maxZoom={2}
      proOptions={{ hideAttribution: false }}
    >
      <Background gap={24} />
      <Controls showInteractive={false} />
      {!many && (
        <MiniMap
          pannable
          zoomable
          nodeClassName={(n) => `minimap-${(n as ProjectNodeType).data.project.status}`}
          ariaLabel="Overview of the ecosystem"
        />
      )}
    </ReactFlow>
  );
}

function TokenPrompt({ onSave }: { onSave: (token: string) => void }) {
  const [value, setValue] = useState('');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (value.trim()) onSave(value.trim());
  };
  return (
    <form className="banner banner-info token-form" onSubmit={submit}>
      <span>This catalog needs a read token (FED_READ_TOKEN or the admin token).</span>
      <input
        type="password"
        autoComplete="off"
        aria-label="Read token"
        placeholder="token"
        value={value}
        onChange={(e) => setValue(e.target.value)}
      />
      <button type="submit">Use token</button>
    </form>
  );
}

const LIVE_LABEL: Record<Federation['live'], string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  unavailable: 'live updates unavailable',
};

export function EcosystemView() {
  const fed = useFederation();
  const [statuses, setStatuses] = useState<ReadonlySet<ProjectStatus>>(new Set(PROJECT_STATUSES));
  const [tag, setTag] = useState('');
  const [search, setSearch] = useState('');
  const [selectedSlug, setSelectedSlug] = useState<string>();
  const filters = useMemo<Filters>(() => ({ statuses, tag, search: search.trim() }), [statuses, tag, search]);

  const counts = useMemo(() => {
    const c: Record<ProjectStatus, number> = { online: 0, degraded: 0, offline: 0 };
    for (const p of fed.projects) c[p.status] = (c[p.status] ?? 0) + 1;
    return c;
  }, [fed.projects]);
  const allTags = useMemo(() => [...new Set(fed.projects.flatMap((p) => p.tags))].sort(), [fed.projects]);
  const names = useMemo(() => new Map(fed.projects.map((p) => [p.slug, p.name])), [fed.projects]);
  const selected = selectedSlug ? fed.projects.find((p) => p.slug === selectedSlug) : undefined;
  const shown = useMemo(
    () => fed.projects.filter((p) => matches(p, filters)).length,
    [fed.projects, filters],
  );

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') setSelectedSlug(undefined);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  const toggleStatus = (s: ProjectStatus) =>
    setStatuses((current) => {
      const next = new Set(current);
      if (next.has(s)) next.delete(s);
      else next.add(s);
      return next;
    });
  const resetFilters = () => {
    setStatuses(new Set(PROJECT_STATUSES));
    setTag('');
    setSearch('');
  };
  const unreachable = fed.error && fed.error.status !== 401;

  return (
    <NowProvider>
      <div className="app">
        <header className="topbar">
          <h1>Ecosystem</h1>
          <span className="summary" data-testid="summary">
            {fed.projects.length} project{fed.projects.length === 1 ? '' : 's'}
            {PROJECT_STATUSES.map((s) => (
              <span key={s} className={`summary-${s}`}>
                {' '}
                · {counts[s]} {s}
              </span>
            ))}
          </span>
          <span className={`live live-${fed.live}`} title="Server-Sent Events from /api/fed/events">
            <span aria-hidden="true">●</span> {LIVE_LABEL[fed.live]}
          </span>
          <span className="spacer" />
          <AuditControl onFanout={fed.onFanout} />
        </header>

        <div className="toolbar" role="toolbar" aria-label="Filters">
          <fieldset className="status-filter">
            <legend className="visually-hidden">Status</legend>
            {PROJECT_STATUSES.map((s) => (
              <label key={s} className={`chip chip-${s}${statuses.has(s) ? ' on' : ''}`}>
                <input type="checkbox" checked={statuses.has(s)} onChange={() => toggleStatus(s)} />
                {s} ({counts[s]})
              </label>
            ))}
          </fieldset>
          <label className="field">
            Tag
            <select value={tag} onChange={(e) => setTag(e.target.value)} aria-label="Tag">
              <option value="">all tags</option>
              {allTags.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </label>
          <label className="field">
            Find
            <input
              type="search"
              placeholder="name or slug"
              aria-label="Find a project"
              value={search}
              onChange={(e) => setSearch(e.target.value)}
            />
          </label>
          <span className="muted small">
            {shown} of {fed.projects.length} shown
            {fed.fetchedAt ? ` · updated ${formatTime(new Date(fed.fetchedAt).toISOString())}` : ''}
          </span>
        </div>

        {fed.needsReadToken && <TokenPrompt onSave={fed.saveReadToken} />}
        {unreachable && (
          <div className="banner banner-error" role="alert">
            <strong>
              {fed.error?.status
                ? `The Federation API answered ${fed.error.status}`
                : 'Cannot reach the Federation API'}
            </strong>
            : {fed.error?.message}.{' '}
            {fed.fetchedAt
              ? `Showing what was known at ${formatTime(new Date(fed.fetchedAt).toISOString())}; retrying.`
              : 'Retrying.'}{' '}
            <button type="button" className="secondary" onClick={fed.refresh}>
              Retry now
            </button>
          </div>
        )}

        <main className="main">
          {!fed.loaded && !fed.error && <div className="placeholder">Loading the ecosystem…</div>}
          {fed.loaded && fed.projects.length === 0 && (
            <div className="placeholder" data-testid="empty-state">
              <h2>No projects yet</h2>
              <p>
                Projects appear here when they publish a heartbeat on <code>hub.presence.&lt;slug&gt;</code>,
                are listed in <code>projects.yaml</code>, or are registered with{' '}
                <code>POST /api/fed/projects</code>.
              </p>
            </div>
          )}
          {fed.loaded && fed.projects.length > 0 && (
            <div className="canvas">
              {shown === 0 && (
                <div className="overlay">
                  No project matches these filters.{' '}
                  <button type="button" className="secondary" onClick={resetFilters}>
                    Show all
                  </button>
                </div>
              )}
              <ReactFlowProvider>
                <Flow fed={fed} filters={filters} selected={selected?.slug} onSelect={setSelectedSlug} />
              </ReactFlowProvider>
            </div>
          )}
          {selected && (
            <ProjectPanel
              project={selected}
              edges={fed.edges}
              names={names}
              onClose={() => setSelectedSlug(undefined)}
            />
          )}
        </main>
      </div>
    </NowProvider>
  );
}
