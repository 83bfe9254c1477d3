import {
  Background,
  Controls,
  type Edge,
  MiniMap,
  type Node,
  type NodeHandle,
  Position,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  useStore,
} from '@xyflow/react';
import { type FormEvent, type ReactNode, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  GROUP_BYS,
  type GraphGroup,
  type GroupBy,
  PROJECT_STATUSES,
  type Problem,
  type ProjectStatus,
} from './api.ts';
import { AuditControl } from './audit-control.tsx';
import { BundleEdge, type BundleEdgeType } from './bundle-edge.tsx';
import { formatTime } from './format.ts';
import { GroupNode, type GroupNodeType, groupLabel, StubNode, type StubNodeType } from './group-node.tsx';
import { KindEdge, type KindEdgeType } from './kind-edge.tsx';
import {
  GROUP_HEIGHT,
  GROUP_WIDTH,
  type LayoutItem,
  type Link,
  NODE_HEIGHT,
  NODE_WIDTH,
  STUB_HEIGHT,
  STUB_WIDTH,
  type Position as XY,
} from './layout.ts';
import { ProblemsList } from './problems-list.tsx';
import { NowContext, ProjectNode, type ProjectNodeType } from './project-node.tsx';
import { ProjectPanel } from './project-panel.tsx';
import { CULL_MIN_NODES, useCulling } from './use-culling.ts';
import { type Federation, type GroupChoice, type ProjectView, useFederation } from './use-federation.ts';
import { useLayout } from './use-layout.ts';

// Not 'group': React Flow styles its own built-in group node under that name.
const nodeTypes = { project: ProjectNode, cluster: GroupNode, stub: StubNode };
const edgeTypes = { kind: KindEdge, bundle: BundleEdge };
type AnyNode = ProjectNodeType | GroupNodeType | StubNodeType;
type AnyEdge = KindEdgeType | BundleEdgeType;

/** Handles are declared, not measured: with thousands of cards, measuring each would cost a layout pass. */
const handles = (w: number, h: number): NodeHandle[] => [
  { type: 'target', position: Position.Left, x: 0, y: h / 2, width: 1, height: 1 },
  { type: 'source', position: Position.Right, x: w - 1, y: h / 2, width: 1, height: 1 },
];
const CARD_HANDLES = handles(NODE_WIDTH, NODE_HEIGHT);
const GROUP_HANDLES = handles(GROUP_WIDTH, GROUP_HEIGHT);
const STUB_HANDLES = handles(STUB_WIDTH, STUB_HEIGHT);
/** Kept in step with the .edge-kind-* strokes in styles.css. */
const EDGE_COLORS: Record<string, string> = {
  api: '#2f5bd3',
  queue: '#7b3fc4',
  event: '#0f8a8a',
  'shared-schema': '#a86400',
  library: '#6b7686',
  default: '#8a96a8',
};
/** Past this many nodes the mini-map (an SVG rect per node) costs more than it helps. */
const MINIMAP_MAX_NODES = 2_000;
/** The first view shows this many cards at a readable zoom rather than every card as a speck. */
const FIRST_VIEW_NODES = 24;
const READABLE_ZOOM = 0.7;
const NOW_TICK_MS = 5_000;
const STUB_PREFIX = 'group:';

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

function groupMatches(g: GraphGroup, groupBy: GroupBy, f: Filters): boolean {
  if (!PROJECT_STATUSES.some((s) => f.statuses.has(s) && g.status_counts[s] > 0)) return false;
  if (f.search && !groupLabel(g.key, groupBy).toLowerCase().includes(f.search.toLowerCase())) return false;
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

const markerId = (kind: string) => `fed-arrow-${kind in EDGE_COLORS ? kind : 'default'}`;

/**
 * The arrowheads, one <marker> per edge kind (React Flow's closed arrow), drawn once. Edges name them
 * by id: React Flow would otherwise derive a marker id from a marker object for each of 20,000 edges
 * whenever the edge list changes.
 */
function EdgeMarkers() {
  return (
    <svg className="edge-markers" aria-hidden="true" width="0" height="0">
      <defs>
        {Object.entries(EDGE_COLORS).map(([kind, color]) => (
          <marker
            key={kind}
            id={markerId(kind)}
            className="react-flow__arrowhead"
            markerWidth="18"
            markerHeight="18"
            viewBox="-10 -10 20 20"
            // Sized in pixels, not in stroke widths, so a strong (wide) edge does not get a huge arrow.
            markerUnits="userSpaceOnUse"
            orient="auto-start-reverse"
            refX="0"
            refY="0"
          >
            <polyline
              style={{ stroke: color, fill: color, strokeWidth: 1 }}
              strokeLinecap="round"
              strokeLinejoin="round"
              points="-5,-4 0,0 -5,4 -5,-4"
            />
          </marker>
        ))}
      </defs>
    </svg>
  );
}

/** The URL says what is shown (?group_by=…&group=…), so a view can be linked and the Back button works. */
function readUrl(): { choice: GroupChoice; group: string | undefined } {
  const params = new URLSearchParams(window.location.search);
  const raw = params.get('group_by');
  const choice: GroupChoice =
    raw === 'none' || (GROUP_BYS as readonly string[]).includes(raw ?? '') ? (raw as GroupChoice) : 'auto';
  const group = params.get('group');
  return { choice, group: group === null || choice === 'auto' || choice === 'none' ? undefined : group };
}

function writeUrl(choice: GroupChoice, group: string | undefined, push: boolean): void {
  const params = new URLSearchParams(window.location.search);
  if (choice === 'auto') params.delete('group_by');
  else params.set('group_by', choice);
  if (group === undefined) params.delete('group');
  else params.set('group', group);
  const search = params.toString();
  const url = `${window.location.pathname}${search ? `?${search}` : ''}`;
  if (push) window.history.pushState(null, '', url);
  else window.history.replaceState(null, '', url);
}

interface FlowProps {
  fed: Federation;
  filters: Filters;
  selected: string | undefined;
  focus: { slug: string; nonce: number } | undefined;
  onSelect: (slug: string | undefined) => void;
  onOpenGroup: (key: string) => void;
}

/** The box around the few nodes nearest the layout's top-left corner: the first, readable view. */
function firstViewBounds(positions: Map<string, XY>, sizes: Map<string, LayoutItem>) {
  const all = [...positions];
  const first =
    all.length <= FIRST_VIEW_NODES
      ? all
      : all.sort(([, a], [, b]) => a.x + a.y - (b.x + b.y)).slice(0, FIRST_VIEW_NODES);
  let [x0, y0, x1, y1] = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, -Infinity, -Infinity];
  for (const [id, p] of first) {
    const size = sizes.get(id);
    x0 = Math.min(x0, p.x);
    y0 = Math.min(y0, p.y);
    x1 = Math.max(x1, p.x + (size?.width ?? NODE_WIDTH));
    y1 = Math.max(y1, p.y + (size?.height ?? NODE_HEIGHT));
  }
  return { x: x0, y: y0, width: Math.max(1, x1 - x0), height: Math.max(1, y1 - y0) };
}

const PAD = 40;

function Flow({ fed, filters, selected, focus, onSelect, onOpenGroup }: FlowProps) {
  const { setCenter, setViewport } = useReactFlow();
  const paneWidth = useStore((st) => st.width);
  const paneHeight = useStore((st) => st.height);
  const groupBy = fed.groupBy ?? 'tag';
  const mode = fed.mode;

  // What to lay out: cards, groups, or the cards of one group plus one stub per other group it links to.
  const { items, links, key } = useMemo(() => {
    const items: LayoutItem[] = [];
    const links: Link[] = [];
    if (mode === 'groups') {
      for (const g of fed.groups) items.push({ id: g.key, width: GROUP_WIDTH, height: GROUP_HEIGHT });
      for (const e of fed.groupEdges) links.push({ from: e.from, to: e.to });
    } else {
      for (const slug of fed.slugs) items.push({ id: slug, width: NODE_WIDTH, height: NODE_HEIGHT });
      for (const e of fed.edges) links.push({ from: e.from, to: e.to });
      const stubs = new Set<string>();
      for (const x of fed.external) {
        const stub = `${STUB_PREFIX}${x.group}`;
        if (!stubs.has(stub)) items.push({ id: stub, width: STUB_WIDTH, height: STUB_HEIGHT });
        stubs.add(stub);
        links.push(x.direction === 'out' ? { from: x.project, to: stub } : { from: stub, to: x.project });
      }
    }
    const key = `${mode}|${items.map((i) => i.id).join(',')}|${links.map((l) => `${l.from}>${l.to}`).join(',')}`;
    return { items, links, key };
  }, [mode, fed.groups, fed.groupEdges, fed.slugs, fed.edges, fed.external]);
  const layout = useLayout(items, links, key);
  const positions = layout.positions;

  // Node objects are reused while nothing about them changed, so React Flow and React skip them.
  const nodeCache = useRef(new Map<string, AnyNode>());
  const {
    nodes: filteredNodes,
    visible,
    byId,
  } = useMemo(() => {
    const cache = nodeCache.current;
    const next = new Map<string, AnyNode>();
    const visible = new Set<string>();
    const nodes: AnyNode[] = [];
    if (mode === 'groups') {
      for (const g of fed.groups) {
        const position = positions.get(g.key) ?? { x: 0, y: 0 };
        const shown = groupMatches(g, groupBy, filters);
        if (shown) visible.add(g.key);
        const label = groupLabel(g.key, groupBy);
        const old = cache.get(g.key) as GroupNodeType | undefined;
        const node: GroupNodeType =
          old && old.data.group === g && old.data.groupBy === groupBy && old.position === position
            ? old
            : {
                id: g.key,
                type: 'cluster',
                position,
                data: { group: g, groupBy },
                width: GROUP_WIDTH,
                height: GROUP_HEIGHT,
                measured: { width: GROUP_WIDTH, height: GROUP_HEIGHT },
                handles: GROUP_HANDLES,
                draggable: false,
                connectable: false,
                ariaLabel: `Group ${label}: ${g.count} projects, ${g.status_counts.online} online, ${g.status_counts.degraded} degraded, ${g.status_counts.offline} offline. Enter opens it.`,
                domAttributes: { 'data-group': g.key } as Record<string, string>,
              };
        next.set(g.key, node);
        if (shown) nodes.push(node);
      }
    } else {
      for (const p of fed.projects) {
        const position = positions.get(p.slug) ?? { x: 0, y: 0 };
        const shown = matches(p, filters);
        if (shown) visible.add(p.slug);
        const isSelected = p.slug === selected;
        const old = cache.get(p.slug) as ProjectNodeType | undefined;
        const node: ProjectNodeType =
          old && old.data.project === p && old.position === position && old.selected === isSelected
            ? old
            : {
                id: p.slug,
                type: 'project',
                position,
                data: { project: p },
                width: NODE_WIDTH,
                height: NODE_HEIGHT,
                measured: { width: NODE_WIDTH, height: NODE_HEIGHT },
                handles: CARD_HANDLES,
                selected: isSelected,
                draggable: false,
                connectable: false,
                ariaLabel: `${p.name} (${p.slug}), ${p.status}`,
                domAttributes: { 'data-slug': p.slug, 'data-status': p.status } as Record<string, string>,
              };
        next.set(p.slug, node);
        if (shown) nodes.push(node);
      }
      const counts = new Map(fed.groups.map((g) => [g.key, g.status_counts]));
      for (const item of items) {
        if (!item.id.startsWith(STUB_PREFIX)) continue;
        const group = item.id.slice(STUB_PREFIX.length);
        const position = positions.get(item.id) ?? { x: 0, y: 0 };
        visible.add(item.id);
        const old = cache.get(item.id) as StubNodeType | undefined;
        const node: StubNodeType =
          old && old.position === position && old.data.counts === counts.get(group)
            ? old
            : {
                id: item.id,
                type: 'stub',
                position,
                data: { group, groupBy, counts: counts.get(group) },
                width: STUB_WIDTH,
                height: STUB_HEIGHT,
                measured: { width: STUB_WIDTH, height: STUB_HEIGHT },
                handles: STUB_HANDLES,
                draggable: false,
                connectable: false,
                ariaLabel: `Other group ${groupLabel(group, groupBy)}. Enter opens it.`,
                domAttributes: { 'data-stub': group } as Record<string, string>,
              };
        next.set(item.id, node);
        nodes.push(node);
      }
    }
    nodeCache.current = next;
    return { nodes, visible, byId: next };
  }, [mode, fed.groups, fed.projects, positions, filters, selected, groupBy, items]);

  // Large views are culled to what is near the viewport, in the culling worker: the node objects in
  // item order, and which of them the filters leave (a new mask only when that changed).
  const cullOn = items.length > CULL_MIN_NODES;
  const lastMask = useRef(new Uint8Array(0));
  const { all, shownMask } = useMemo(() => {
    if (!cullOn) return { all: [] as AnyNode[], shownMask: lastMask.current };
    const all = items.map((i) => byId.get(i.id) as AnyNode);
    const mask = new Uint8Array(items.length);
    items.forEach((item, i) => {
      mask[i] = visible.has(item.id) ? 1 : 0;
    });
    const old = lastMask.current;
    const same = old.length === mask.length && old.every((v, i) => v === mask[i]);
    if (!same) lastMask.current = mask;
    return { all, shownMask: lastMask.current };
  }, [cullOn, items, byId, visible]);

  // Every edge object, built once per structure (not per filter or status change) and kept across
  // rebuilds when unchanged. Arrowheads are named markers drawn once (<EdgeMarkers>), not objects that
  // React Flow would turn into ids edge by edge.
  const edgeObjects = useRef(new Map<string, AnyEdge>());
  const baseEdges = useMemo<AnyEdge[]>(() => {
    const cache = edgeObjects.current;
    const next = new Map<string, AnyEdge>();
    const out: AnyEdge[] = [];
    const keep = (edge: AnyEdge, same: (old: AnyEdge) => boolean) => {
      const old = cache.get(edge.id);
      const chosen = old && same(old) ? old : edge;
      next.set(chosen.id, chosen);
      out.push(chosen);
    };
    if (mode === 'groups') {
      for (const e of fed.groupEdges) {
        const data = { count: e.count, kinds: e.kinds };
        keep(
          {
            id: `bundle-${e.from}>${e.to}`,
            type: 'bundle',
            source: e.from,
            target: e.to,
            data,
            markerEnd: markerId('default'),
            focusable: false,
            ariaLabel: `${e.count} edges from ${groupLabel(e.from, groupBy)} to ${groupLabel(e.to, groupBy)}`,
          },
          (old) =>
            old.source === e.from &&
            old.target === e.to &&
            old.ariaLabel?.startsWith(`${e.count} edges from ${groupLabel(e.from, groupBy)} `) === true &&
            (old as BundleEdgeType).data?.kinds.join() === e.kinds.join(),
        );
      }
    } else {
      const known = new Set(fed.slugs);
      for (const e of fed.edges) {
        if (!known.has(e.from) || !known.has(e.to)) continue;
        keep(
          {
            id: `edge-${e.id}`,
            type: 'kind',
            source: e.from,
            target: e.to,
            data: { kind: e.kind, strength: e.strength },
            className: `edge-kind-${e.kind}`,
            style: { strokeWidth: edgeWidth(e.strength) },
            markerEnd: markerId(e.kind),
            focusable: false,
            ariaLabel: `${e.from} ${e.kind} ${e.to}`,
            domAttributes: { 'data-kind': e.kind } as Record<string, string>,
          },
          (old) => {
            const d = (old as KindEdgeType).data;
            return (
              old.source === e.from && old.target === e.to && d?.kind === e.kind && d.strength === e.strength
            );
          },
        );
      }
      for (const x of fed.external) {
        const stub = `${STUB_PREFIX}${x.group}`;
        const [source, target] = x.direction === 'out' ? [x.project, stub] : [stub, x.project];
        const ariaLabel = `${x.count} edges between ${x.project} and group ${groupLabel(x.group, groupBy)}`;
        keep(
          {
            id: `ext-${source}>${target}`,
            type: 'bundle',
            source,
            target,
            data: { count: x.count, kinds: x.kinds },
            markerEnd: markerId('default'),
            focusable: false,
            className: 'edge-external',
            ariaLabel,
          },
          (old) =>
            old.ariaLabel === ariaLabel && (old as BundleEdgeType).data?.kinds.join() === x.kinds.join(),
        );
      }
    }
    edgeObjects.current = next;
    return out;
  }, [mode, fed.groupEdges, fed.edges, fed.slugs, fed.external, groupBy]);

  // React Flow is handed only what the filters leave, not every element marked hidden: its own work
  // (lookups, visibility tests, DOM) then follows what is shown. The list is rebuilt only when a node's
  // visibility flipped, so a status change (no flip) hands React Flow the same edges array.
  const edgeState = useRef<{ base: AnyEdge[]; visible: ReadonlySet<string>; edges: AnyEdge[] } | undefined>(
    undefined,
  );
  const filteredEdges = useMemo<AnyEdge[]>(() => {
    if (cullOn) return [];
    const st = edgeState.current;
    if (st && st.base === baseEdges && st.visible.size === visible.size) {
      let same = true;
      for (const id of visible) {
        if (!st.visible.has(id)) {
          same = false;
          break;
        }
      }
      if (same) {
        edgeState.current = { ...st, visible };
        return st.edges;
      }
    }
    const out = baseEdges.filter((e) => visible.has(e.source) && visible.has(e.target));
    edgeState.current = { base: baseEdges, visible, edges: out };
    return out;
  }, [cullOn, baseEdges, visible]);

  const culled = useCulling({ enabled: cullOn, items, positions, edges: baseEdges, shown: shownMask });
  const nodes = useMemo<AnyNode[]>(() => {
    if (!cullOn) return filteredNodes;
    if (!culled) return [];
    return Array.from(culled.nodes, (i) => all[i] as AnyNode);
  }, [cullOn, filteredNodes, culled, all]);
  const edges = useMemo<AnyEdge[]>(() => {
    if (!cullOn) return filteredEdges;
    if (!culled) return [];
    return Array.from(culled.edges, (j) => baseEdges[j] as AnyEdge);
  }, [cullOn, filteredEdges, culled, baseEdges]);

  // The first view: a readable zoom on the top-left of the layout, refitted once the worker's layout
  // arrives unless the operator has moved the view in the meantime.
  const moved = useRef(false);
  const fittedFor = useRef<string>('');
  useEffect(() => {
    const stage = `${key}|${layout.engine}`;
    if (positions.size === 0 || paneWidth === 0 || fittedFor.current === stage) return;
    const fresh = !fittedFor.current.startsWith(`${key}|`);
    fittedFor.current = stage;
    if (fresh) moved.current = false;
    if (moved.current) return;
    // Computed from our own positions: React Flow may not have taken the new nodes in yet.
    const sizes = new Map(items.map((i) => [i.id, i]));
    const box = firstViewBounds(positions, sizes);
    const zoom = Math.min(
      1.1,
      Math.max(
        mode === 'groups' ? 0.5 : READABLE_ZOOM,
        Math.min((paneWidth - 2 * PAD) / box.width, (paneHeight - 2 * PAD) / box.height),
      ),
    );
    void setViewport({ x: PAD - box.x * zoom, y: PAD + 40 - box.y * zoom, zoom }, { duration: 0 });
  }, [key, layout.engine, positions, setViewport, items, paneWidth, paneHeight, mode]);

  // Bring what the filters left into view (bounded so thousands of cards are never all on screen).
  const filterKey = `${[...filters.statuses].sort().join()}|${filters.tag}|${filters.search}`;
  const firstFilter = useRef(filterKey);
  // biome-ignore lint/correctness/useExhaustiveDependencies: only a filter change should move the camera
  useEffect(() => {
    if (firstFilter.current === filterKey) return;
    firstFilter.current = filterKey;
    if (visible.size === 0) return;
    // From our own positions: a culled view does not hand React Flow the nodes to fit.
    const sizes = new Map(items.map((i) => [i.id, i]));
    const first = new Map<string, XY>();
    for (const id of visible) {
      const p = positions.get(id);
      if (p) first.set(id, p);
      if (first.size === FIRST_VIEW_NODES) break;
    }
    if (first.size === 0 || paneWidth === 0) return;
    const box = firstViewBounds(first, sizes);
    const zoom = Math.max(
      0.05,
      Math.min(1.2, Math.min(paneWidth / (box.width * 1.2), paneHeight / (box.height * 1.2))),
    );
    void setViewport(
      {
        x: paneWidth / 2 - (box.x + box.width / 2) * zoom,
        y: paneHeight / 2 - (box.y + box.height / 2) * zoom,
        zoom,
      },
      { duration: 0 },
    );
  }, [filterKey]);

  // Focus a project picked in the problems list, once it is on the canvas.
  const focused = useRef(0);
  useEffect(() => {
    if (!focus || focused.current === focus.nonce) return;
    const p = positions.get(focus.slug);
    if (!p || layout.pending) return;
    focused.current = focus.nonce;
    moved.current = true;
    void setCenter(p.x + NODE_WIDTH / 2, p.y + NODE_HEIGHT / 2, { zoom: 1, duration: 0 });
  }, [focus, positions, layout.pending, setCenter]);

  const activate = useCallback(
    (id: string) => {
      if (mode === 'groups') onOpenGroup(id);
      else if (id.startsWith(STUB_PREFIX)) onOpenGroup(id.slice(STUB_PREFIX.length));
      else onSelect(id);
    },
    [mode, onOpenGroup, onSelect],
  );

  // By the size of the whole view, not of what the filters leave: a filter must not mount a mini-map
  // of a thousand rects in the same task.
  const many = items.length > MINIMAP_MAX_NODES;
  return (
    <ReactFlow<Node, Edge>
      nodes={nodes as Node[]}
      edges={edges as Edge[]}
      nodeTypes={nodeTypes}
      edgeTypes={edgeTypes}
      onNodeClick={(_e, node) => activate(node.id)}
      // Selection stays ours; this only catches keyboard selection (Tab to a card, then Enter).
      onNodesChange={(changes) => {
        for (const c of changes) if (c.type === 'select' && c.selected) activate(c.id);
      }}
      onPaneClick={() => onSelect(undefined)}
      onMoveStart={(event) => {
        // Only a person moves the view with an event; fitView and setCenter come without one.
        if (event) moved.current = true;
      }}
      onlyRenderVisibleElements
      nodesDraggable={false}
      nodesConnectable={false}
      elementsSelectable
      minZoom={0.05}
      maxZoom={2}
      proOptions={{ hideAttribution: false }}
      data-layout={layout.pending ? 'pending' : layout.engine}
    >
      <EdgeMarkers />
      <Background gap={24} />
      <Controls showInteractive={false} />
      {!many && (
        <MiniMap
          pannable
          zoomable
          nodeClassName={(n) =>
            n.type === 'project' ? `minimap-${(n as ProjectNodeType).data.project.status}` : 'minimap-group'
          }
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

const CHOICE_LABEL: Record<GroupChoice, string> = {
  auto: 'automatic',
  none: 'none (every project)',
  tag: 'tag',
  namespace: 'namespace',
  status: 'status',
};

export function EcosystemView() {
  const initial = useMemo(readUrl, []);
  const [choice, setChoice] = useState<GroupChoice>(initial.choice);
  const [openGroup, setOpenGroup] = useState<string | undefined>(initial.group);
  const fed = useFederation(choice, openGroup);
  const [statuses, setStatuses] = useState<ReadonlySet<ProjectStatus>>(new Set(PROJECT_STATUSES));
  const [tag, setTag] = useState('');
  const [search, setSearch] = useState('');
  const [selectedSlug, setSelectedSlug] = useState<string>();
  const [focus, setFocus] = useState<{ slug: string; nonce: number }>();
  const filters = useMemo<Filters>(() => ({ statuses, tag, search: search.trim() }), [statuses, tag, search]);

  useEffect(() => {
    const onPop = () => {
      const url = readUrl();
      setChoice(url.choice);
      setOpenGroup(url.group);
    };
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);

  const groupBy = fed.groupBy;
  const open = useCallback(
    (key: string | undefined) => {
      // An automatic choice that shows groups is made explicit, so the URL names the group's grouping.
      const by: GroupChoice = choice === 'auto' || choice === 'none' ? (groupBy ?? 'tag') : choice;
      setChoice(by);
      setOpenGroup(key);
      setSelectedSlug(undefined);
      writeUrl(by, key, true);
    },
    [choice, groupBy],
  );
  const changeChoice = (next: GroupChoice) => {
    setChoice(next);
    setOpenGroup(undefined);
    setSelectedSlug(undefined);
    writeUrl(next, undefined, true);
  };

  // In cards and group views the page holds the projects it shows; elsewhere the live counts come from
  // the server's answer moved by SSE transitions.
  const counts = useMemo(() => {
    if (fed.mode === 'cards' && fed.loaded) {
      const c: Record<ProjectStatus, number> = { online: 0, degraded: 0, offline: 0 };
      for (const p of fed.projects) c[p.status] = (c[p.status] ?? 0) + 1;
      return c;
    }
    return fed.counts ?? { online: 0, degraded: 0, offline: 0 };
  }, [fed.mode, fed.loaded, fed.projects, fed.counts]);
  const total = counts.online + counts.degraded + counts.offline;
  // Names and tags come with fetches, not with live updates: computed once per fetch that changed them.
  const allTags = useMemo(() => [...new Set(fed.fetched.flatMap((p) => p.tags))].sort(), [fed.fetched]);
  const names = useMemo(() => new Map(fed.fetched.map((p) => [p.slug, p.name])), [fed.fetched]);
  const selected = selectedSlug ? fed.projects.find((p) => p.slug === selectedSlug) : undefined;
  const inGroups = fed.mode === 'groups';
  const shown = useMemo(
    () =>
      inGroups
        ? fed.groups.filter((g) => groupMatches(g, groupBy ?? 'tag', filters)).length
        : fed.projects.filter((p) => matches(p, filters)).length,
    [inGroups, fed.groups, fed.projects, filters, groupBy],
  );
  const shownOf = inGroups ? fed.groups.length : fed.projects.length;

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') setSelectedSlug(undefined);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  // A problem picked in the list: select and centre it, opening its group first when needed.
  const latest = useRef({ fed, groupBy, open });
  latest.current = { fed, groupBy, open };
  const pickProblem = useCallback((p: Problem) => {
    const { fed, groupBy, open } = latest.current;
    const nonce = Date.now();
    setFocus({ slug: p.slug, nonce });
    if (fed.mode !== 'cards' && groupBy && !fed.projects.some((x) => x.slug === p.slug)) {
      open(p.groups[groupBy]);
    }
    setSelectedSlug(p.slug);
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
  const hasContent = inGroups ? fed.groups.length > 0 : fed.projects.length > 0 || fed.external.length > 0;
  const openLabel = fed.openGroup !== undefined && groupBy ? groupLabel(fed.openGroup, groupBy) : undefined;

  return (
    <NowProvider>
      <div className="app">
        <header className="topbar">
          <h1>Ecosystem</h1>
          <span className="summary" data-testid="summary" data-total={total} data-online={counts.online}>
            {total.toLocaleString('en')} project{total === 1 ? '' : 's'}
            {PROJECT_STATUSES.map((s) => (
              <span key={s} className={`summary-${s}`}>
                {' '}
                · {counts[s].toLocaleString('en')} {s}
              </span>
            ))}
          </span>
          <span className={`live live-${fed.live}`} title="Server-Sent Events from /api/fed/events">
            <span aria-hidden="true">●</span> {LIVE_LABEL[fed.live]}
          </span>
          <label className="field">
            Group by
            <select
              aria-label="Group by"
              value={choice}
              onChange={(e) => changeChoice(e.target.value as GroupChoice)}
            >
              {(['auto', 'none', ...GROUP_BYS] as GroupChoice[]).map((c) => (
                <option key={c} value={c}>
                  {CHOICE_LABEL[c]}
                </option>
              ))}
            </select>
          </label>
          <span className="spacer" />
          <AuditControl onFanout={fed.onFanout} />
        </header>

        <div className="toolbar" role="toolbar" aria-label="Filters">
          <fieldset className="status-filter">
            <legend className="visually-hidden">Status</legend>
            {PROJECT_STATUSES.map((s) => (
              <label key={s} className={`chip chip-${s}${statuses.has(s) ? ' on' : ''}`}>
                <input type="checkbox" checked={statuses.has(s)} onChange={() => toggleStatus(s)} />
                {s} ({counts[s].toLocaleString('en')})
              </label>
            ))}
          </fieldset>
          {!inGroups && (
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
          )}
          <label className="field">
            Find
            <input
              type="search"
              placeholder={inGroups ? 'group name' : 'name or slug'}
              aria-label={inGroups ? 'Find a group' : 'Find a project'}
              value={search}
              onChange={(e) => setSearch(e.target.value)}
            />
          </label>
          <span className="muted small" data-testid="shown">
            {shown.toLocaleString('en')} of {shownOf.toLocaleString('en')} {inGroups ? 'groups' : 'cards'}{' '}
            shown
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

        <div className="body">
          {fed.loaded && (
            <ProblemsList
              problems={fed.problems}
              counts={fed.counts}
              selected={selectedSlug}
              onPick={pickProblem}
            />
          )}
          <main className="main">
            {fed.mode !== 'cards' && fed.loaded && groupBy && (
              <nav className="breadcrumb" aria-label="Where you are">
                {openLabel === undefined ? (
                  <span>
                    {fed.groups.length.toLocaleString('en')} groups by {groupBy}
                    {fed.tooLarge ? ' (too many projects to draw each one)' : ''}
                  </span>
                ) : (
                  <>
                    <button type="button" className="secondary" onClick={() => open(undefined)}>
                      ← All groups
                    </button>
                    <span>
                      {groupBy} <strong data-testid="open-group">{openLabel}</strong>:{' '}
                      {fed.projects.length.toLocaleString('en')} projects
                    </span>
                  </>
                )}
              </nav>
            )}
            {!fed.loaded && !fed.error && <div className="placeholder">Loading the ecosystem…</div>}
            {fed.loaded && !hasContent && total === 0 && (
              <div className="placeholder" data-testid="empty-state">
                <h2>No projects yet</h2>
                <p>
                  Projects appear here when they publish a heartbeat on <code>hub.presence.&lt;slug&gt;</code>
                  , are listed in <code>projects.yaml</code>, or are registered with{' '}
                  <code>POST /api/fed/projects</code>.
                </p>
              </div>
            )}
            {fed.loaded && !hasContent && total > 0 && (
              <div className="placeholder">This group has no projects (any more).</div>
            )}
            {fed.loaded && hasContent && (
              <div className="canvas">
                {shown === 0 && (
                  <div className="overlay">
                    Nothing matches these filters.{' '}
                    <button type="button" className="secondary" onClick={resetFilters}>
                      Show all
                    </button>
                  </div>
                )}
                <ReactFlowProvider>
                  <Flow
                    fed={fed}
                    filters={filters}
                    selected={selected?.slug}
                    focus={focus}
                    onSelect={setSelectedSlug}
                    onOpenGroup={(key) => open(key)}
                  />
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
      </div>
    </NowProvider>
  );
}
