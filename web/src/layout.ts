import dagre from '@dagrejs/dagre';

/** Every project card has this size, so React Flow never has to measure 10,000 of them. */
export const NODE_WIDTH = 248;
export const NODE_HEIGHT = 136;
const GAP_X = 48;
const GAP_Y = 40;
const RANK_GAP = GAP_X * 2;
/**
 * Dagre's crossing minimisation grows much faster than linearly (on this machine: 1,000 linked nodes
 * take about 2 s, 10,000 about 30 s, all on the UI thread). Past this size a one-pass layered layout
 * takes over: fewer crossings avoided, but it never freezes the page.
 */
export const DAGRE_MAX_NODES = 300;
export const DAGRE_MAX_EDGES = 600;

export interface Position {
  x: number;
  y: number;
}

interface Link {
  from: string;
  to: string;
}

/**
 * Connected projects are laid out in ranks from left to right along their edges; projects without
 * any edge go to a grid below them (in one rank they would make a row thousands of cards long).
 */
export function layoutGraph(slugs: readonly string[], edges: readonly Link[]): Map<string, Position> {
  const known = new Set(slugs);
  const links: Link[] = [];
  const linked = new Set<string>();
  const seen = new Set<string>();
  for (const e of edges) {
    const key = `${e.from}\u0000${e.to}`;
    if (!known.has(e.from) || !known.has(e.to) || e.from === e.to || seen.has(key)) continue;
    seen.add(key);
    links.push(e);
    linked.add(e.from);
    linked.add(e.to);
  }
  // Keep the caller's order (by slug) so a refresh lays out the same graph the same way.
  const linkedSlugs = slugs.filter((s) => linked.has(s));

  const positions =
    linkedSlugs.length <= DAGRE_MAX_NODES && links.length <= DAGRE_MAX_EDGES
      ? dagreLayout(linkedSlugs, links)
      : layeredLayout(linkedSlugs, links);

  let bottom = 0;
  for (const p of positions.values()) bottom = Math.max(bottom, p.y + NODE_HEIGHT + GAP_Y * 3);

  const loose = slugs.filter((s) => !linked.has(s));
  // About twice as wide as tall, for a landscape screen: columns² · W / (n · H) = 2.
  const columns = Math.max(1, Math.ceil(Math.sqrt((loose.length * 2 * NODE_HEIGHT) / NODE_WIDTH)));
  loose.forEach((slug, i) => {
    positions.set(slug, {
      x: (i % columns) * (NODE_WIDTH + GAP_X),
      y: bottom + Math.floor(i / columns) * (NODE_HEIGHT + GAP_Y),
    });
  });
  return positions;
}

function dagreLayout(slugs: readonly string[], links: readonly Link[]): Map<string, Position> {
  const positions = new Map<string, Position>();
  if (slugs.length === 0) return positions;
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: GAP_Y, ranksep: RANK_GAP, marginx: 0, marginy: 0 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const slug of slugs) g.setNode(slug, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const l of links) g.setEdge(l.from, l.to);
  dagre.layout(g);
  for (const slug of slugs) {
    const n = g.node(slug);
    // dagre gives centres; React Flow wants top-left corners.
    positions.set(slug, { x: n.x - NODE_WIDTH / 2, y: n.y - NODE_HEIGHT / 2 });
  }
  return positions;
}

/** Longest-path ranks over the graph with its cycles broken, one barycentre pass, long ranks wrapped. */
export function layeredLayout(slugs: readonly string[], links: readonly Link[]): Map<string, Position> {
  const out = new Map<string, string[]>();
  const incoming = new Map<string, string[]>();
  for (const s of slugs) {
    out.set(s, []);
    incoming.set(s, []);
  }
  for (const l of links) out.get(l.from)?.push(l.to);

  // Drop edges that close a cycle (iterative DFS, so a long chain cannot overflow the stack).
  const state = new Map<string, 1 | 2>();
  const dag = new Map<string, string[]>();
  for (const root of slugs) {
    if (state.has(root)) continue;
    const stack: Array<[string, number]> = [[root, 0]];
    state.set(root, 1);
    dag.set(root, []);
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as [string, number];
      const [node, i] = top;
      const next = out.get(node)?.[i];
      if (next === undefined) {
        state.set(node, 2);
        stack.pop();
        continue;
      }
      top[1] = i + 1;
      const s = state.get(next);
      if (s === 1) continue;
      dag.get(node)?.push(next);
      incoming.get(next)?.push(node);
      if (s === undefined) {
        state.set(next, 1);
        dag.set(next, []);
        stack.push([next, 0]);
      }
    }
  }

  // Kahn's order gives every node a rank one past its deepest predecessor.
  const rank = new Map<string, number>();
  const pending = new Map<string, number>();
  const queue: string[] = [];
  for (const s of slugs) {
    pending.set(s, incoming.get(s)?.length ?? 0);
    if (pending.get(s) === 0) queue.push(s);
  }
  const ranks: string[][] = [];
  for (let head = 0; head < queue.length; head++) {
    const node = queue[head] as string;
    const r = rank.get(node) ?? 0;
    rank.set(node, r);
    const row = ranks[r] ?? [];
    row.push(node);
    ranks[r] = row;
    for (const next of dag.get(node) ?? []) {
      rank.set(next, Math.max(rank.get(next) ?? 0, r + 1));
      const left = (pending.get(next) ?? 1) - 1;
      pending.set(next, left);
      if (left === 0) queue.push(next);
    }
  }

  // One barycentre pass: each node moves near the average slot of what points at it.
  const slot = new Map<string, number>();
  for (const [r, nodes] of ranks.entries()) {
    if (r > 0) {
      const weight = new Map<string, number>();
      for (const n of nodes) {
        const preds = incoming.get(n) ?? [];
        let sum = 0;
        for (const p of preds) sum += slot.get(p) ?? 0;
        weight.set(n, preds.length ? sum / preds.length : 0);
      }
      nodes.sort((a, b) => (weight.get(a) ?? 0) - (weight.get(b) ?? 0));
    }
    nodes.forEach((n, i) => {
      slot.set(n, i);
    });
  }

  const perColumn = Math.max(25, Math.ceil(Math.sqrt(slugs.length)));
  const positions = new Map<string, Position>();
  let column = 0;
  for (const nodes of ranks) {
    nodes.forEach((n, i) => {
      positions.set(n, {
        x: (column + Math.floor(i / perColumn)) * (NODE_WIDTH + RANK_GAP),
        y: (i % perColumn) * (NODE_HEIGHT + GAP_Y),
      });
    });
    column += Math.ceil(nodes.length / perColumn);
  }
  return positions;
}
