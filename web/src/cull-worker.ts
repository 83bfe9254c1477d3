/// <reference lib="webworker" />
/**
 * The culling worker: which nodes and edges are near the viewport. With thousands of cards React Flow
 * tests every node and edge against the viewport on each change of its store, on the page's thread;
 * handed only what is near the view, its work follows the screen instead of the catalog. The
 * geometry pass over every node and edge (O(catalog)) runs here.
 */

export interface CullScene {
  type: 'scene';
  scene: number;
  /** Flat [x, y, width, height, …] per node, in the page's item order. */
  boxes: Float64Array;
  /** Flat [source index, target index, …] per edge. */
  edges: Int32Array;
}

export interface CullMask {
  type: 'mask';
  mask: number;
  /** 1 for each node the filters leave, in item order. */
  shown: Uint8Array;
}

export interface CullView {
  type: 'view';
  id: number;
  /** The area to keep, in flow coordinates (the viewport with a margin). */
  rect: { x: number; y: number; width: number; height: number };
}

export type CullRequest = CullScene | CullMask | CullView;

export interface CullResponse {
  id: number;
  scene: number;
  mask: number;
  nodes: Int32Array;
  edges: Int32Array;
}

let scene: CullScene | undefined;
let mask: CullMask | undefined;

const scope = self as unknown as DedicatedWorkerGlobalScope;

function overlaps(r: CullView['rect'], x0: number, y0: number, x1: number, y1: number): boolean {
  return x1 >= r.x && x0 <= r.x + r.width && y1 >= r.y && y0 <= r.y + r.height;
}

function cull(view: CullView): CullResponse | undefined {
  if (!scene || !mask) return undefined;
  const { boxes, edges } = scene;
  const n = boxes.length / 4;
  const shown = mask.shown;
  const r = view.rect;
  const keep = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (!shown[i]) continue;
    const x = boxes[i * 4] as number;
    const y = boxes[i * 4 + 1] as number;
    if (overlaps(r, x, y, x + (boxes[i * 4 + 2] as number), y + (boxes[i * 4 + 3] as number))) keep[i] = 1;
  }
  // An edge is kept when it may cross the area (its bounding box does), with both its nodes: React
  // Flow draws an edge only between nodes it has.
  const keptEdges: number[] = [];
  for (let j = 0; j < edges.length / 2; j++) {
    const a = edges[j * 2] as number;
    const b = edges[j * 2 + 1] as number;
    if (!shown[a] || !shown[b]) continue;
    if (!keep[a] && !keep[b]) {
      const ax = boxes[a * 4] as number;
      const ay = boxes[a * 4 + 1] as number;
      const bx = boxes[b * 4] as number;
      const by = boxes[b * 4 + 1] as number;
      const x0 = Math.min(ax, bx);
      const y0 = Math.min(ay, by);
      const x1 = Math.max(ax + (boxes[a * 4 + 2] as number), bx + (boxes[b * 4 + 2] as number));
      const y1 = Math.max(ay + (boxes[a * 4 + 3] as number), by + (boxes[b * 4 + 3] as number));
      if (!overlaps(r, x0, y0, x1, y1)) continue;
    }
    keptEdges.push(j);
  }
  for (const j of keptEdges) {
    keep[edges[j * 2] as number] = 1;
    keep[edges[j * 2 + 1] as number] = 1;
  }
  let count = 0;
  for (let i = 0; i < n; i++) count += keep[i] as number;
  const nodes = new Int32Array(count);
  let k = 0;
  for (let i = 0; i < n; i++) if (keep[i]) nodes[k++] = i;
  return { id: view.id, scene: scene.scene, mask: mask.mask, nodes, edges: Int32Array.from(keptEdges) };
}

scope.onmessage = (e: MessageEvent<CullRequest>) => {
  const m = e.data;
  if (m.type === 'scene') scene = m;
  else if (m.type === 'mask') mask = m;
  else {
    const response = cull(m);
    if (response) scope.postMessage(response, [response.nodes.buffer, response.edges.buffer]);
  }
};
