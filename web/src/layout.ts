/**
 * Where the nodes go: pure functions, run in the layout worker (layout-worker.ts) so that a large
 * graph never blocks the page. Every card has a fixed size, so React Flow never measures 10,000 of them.
 */
export const NODE_WIDTH = 248;
export const NODE_HEIGHT = 136;
export const GROUP_WIDTH = 280;
export const GROUP_HEIGHT = 132;
export const STUB_WIDTH = 200;
export const STUB_HEIGHT = 64;
const GAP_X = 48;
const GAP_Y = 40;
const RANK_GAP = GAP_X * 2;
/**
 * ELK's layered layout grows much faster than linearly (on this machine 300 linked nodes take about
 * 0.7 s, 1,000 about 1.3 s). Past this size a one-pass layered layout of our own takes over: fewer
 * crossings avoided, but 10,000 nodes and 20,000 edges take a fraction of a second.
 */
export const ELK_MAX_NODES = 1_000;
export const ELK_MAX_EDGES = 2_000;

export interface Position {
  x: number;
  y: number;
}

export interface Link {
  from: string;
  to: string;
}

export interface LayoutItem {
  id: string;
  width: number;
  height: number;
}

/** Lays out the linked nodes; returns top-left corners. */
export type LinkedLayout = (
  items: readonly LayoutItem[],
  links: readonly Link[],
) => Map<string, Position> | Promise<Map<string, Position>>;

/** Drops links to unknown nodes, self links and duplicates; returns them and the linked items in input order. */
export function usableLinks(
  items: readonly LayoutItem[],
  edges: readonly Link[],
): { links: Link[]; linked: LayoutItem[]; loose: LayoutItem[] } {
  const known = new Set(items.map((i) => i.id));
  const links: Link[] = [];
  const linkedIds = new Set<string>();
  const seen = new Set<string>();
  for (const e of edges) {
    const key = `${e.from}\u0000${e.to}`;
    if (!known.has(e.from) || !known.has(e.to) || e.from === e.to || seen.has(key)) continue;
    seen.add(key);
    links.push({ from: e.from, to: e.to });
    linkedIds.add(e.from);
    linkedIds.add(e.to);
  }
  return {
    links,
    linked: items.filter((i) => linkedIds.has(i.id)),
    loose: items.filter((i) => !linkedIds.has(i.id)),
  };
}

/**
 * Connected nodes are laid out in ranks from left to right along their edges (by `linkedLayout`);
 * nodes without any edge go to a grid below them (in one rank they would make a row thousands of
 * cards long).
 */
export async function layoutGraph(
  items: readonly LayoutItem[],
  edges: readonly Link[],
  linkedLayout: LinkedLayout,
): Promise<Map<string, Position>> {
  const { links, linked, loose } = usableLinks(items, edges);
  const positions = linked.length > 0 ? await linkedLayout(linked, links) : new Map<string, Position>();
  let bottom = 0;
  for (const item of linked) {
    const p = positions.get(item.id);
    if (p) bottom = Math.max(bottom, p.y + item.height + GAP_Y * 3);
  }
  for (const [id, p] of gridLayout(loose)) positions.set(id, { x: p.x, y: bottom + p.y });
  return positions;
}

/** About twice as wide as tall, for a landscape screen: columns² · W / (n · H) = 2. */
export function gridLayout(items: readonly LayoutItem[]): Map<string, Position> {
  let w = 1;
  let h = 1;
  for (const i of items) {
    w = Math.max(w, i.width);
    h = Math.max(h, i.height);
  }
  const columns = Math.max(1, Math.ceil(Math.sqrt((items.length * 2 * h) / w)));
  const positions = new Map<string, Position>();
  items.forEach((item, i) => {
    positions.set(item.id, {
      x: (i % columns) * (w + GAP_X),
      y: Math.floor(i / columns) * (h + GAP_Y),
    });
  });
  return positions;
}

/** The options ELK's layered algorithm gets: left to right, with the spacing the cards need. */
export const ELK_LAYERED_OPTIONS: Record<string, string> = {
  'elk.algorithm': 'layered',
  'elk.direction': 'RIGHT',
  'elk.spacing.nodeNode': String(GAP_Y),
  'elk.layered.spacing.nodeNodeBetweenLayers': String(RANK_GAP),
  'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
  'elk.separateConnectedComponents': 'true',
  'elk.spacing.componentComponent': String(GAP_X * 2),
};

/** Longest-path ranks over the graph with its cycles broken, one barycentre pass, long ranks wrapped. */
export function layeredLayout(items: readonly LayoutItem[], links: readonly Link[]): Map<string, Position> {
  const slugs = items.map((i) => i.id);
  let cellW = 0;
  let cellH = 0;
  for (const i of items) {
    cellW = Math.max(cellW, i.width);
    cellH = Math.max(cellH, i.height);
  }
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
        x: (column + Math.floor(i / perColumn)) * (cellW + RANK_GAP),
        y: (i % perColumn) * (cellH + GAP_Y),
      });
    });
    column += Math.ceil(nodes.length / perColumn);
  }
  return positions;
}
