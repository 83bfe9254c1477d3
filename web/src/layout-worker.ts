/// <reference lib="webworker" />
/**
 * The layout worker: positions are computed here, off the page's thread, so a graph of 10,000 cards
 * never freezes the page. ELK's layered layout for graphs it handles in about a second, our own
 * one-pass layered layout beyond.
 */
import ELK from 'elkjs/lib/elk.bundled.js';
import {
  ELK_LAYERED_OPTIONS,
  ELK_MAX_EDGES,
  ELK_MAX_NODES,
  type LayoutItem,
  type Link,
  layeredLayout,
  layoutGraph,
  type Position,
} from './layout.ts';

export interface LayoutRequest {
  id: number;
  items: LayoutItem[];
  links: Link[];
}

export interface LayoutResponse {
  id: number;
  /** Flat [x0, y0, x1, y1, …] in the order of the request's items: cheap to copy across threads. */
  positions: Float64Array;
  engine: 'elk' | 'layered';
  ms: number;
}

const elk = new ELK();

async function elkLayout(
  items: readonly LayoutItem[],
  links: readonly Link[],
): Promise<Map<string, Position>> {
  const graph = await elk.layout({
    id: 'root',
    layoutOptions: ELK_LAYERED_OPTIONS,
    children: items.map((i) => ({ id: i.id, width: i.width, height: i.height })),
    edges: links.map((l, i) => ({ id: `e${i}`, sources: [l.from], targets: [l.to] })),
  });
  const positions = new Map<string, Position>();
  for (const c of graph.children ?? []) positions.set(c.id, { x: c.x ?? 0, y: c.y ?? 0 });
  return positions;
}

const scope = self as unknown as DedicatedWorkerGlobalScope;

scope.onmessage = async (e: MessageEvent<LayoutRequest>) => {
  const { id, items, links } = e.data;
  const t0 = performance.now();
  const useElk = items.length <= ELK_MAX_NODES && links.length <= ELK_MAX_EDGES;
  let positions: Map<string, Position>;
  try {
    positions = await layoutGraph(items, links, useElk ? elkLayout : layeredLayout);
  } catch {
    // ELK refusing a graph must not leave the page without positions.
    positions = await layoutGraph(items, links, layeredLayout);
  }
  const flat = new Float64Array(items.length * 2);
  items.forEach((item, i) => {
    const p = positions.get(item.id) ?? { x: 0, y: 0 };
    flat[i * 2] = p.x;
    flat[i * 2 + 1] = p.y;
  });
  const response: LayoutResponse = {
    id,
    positions: flat,
    engine: useElk ? 'elk' : 'layered',
    ms: Math.round(performance.now() - t0),
  };
  scope.postMessage(response, [flat.buffer]);
};
