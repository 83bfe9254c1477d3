import { useEffect, useRef, useState } from 'react';
import { gridLayout, type LayoutItem, type Link, type Position } from './layout.ts';
import type { LayoutRequest, LayoutResponse } from './layout-worker.ts';

let worker: Worker | undefined;
let nextId = 1;
const waiting = new Map<number, (r: LayoutResponse) => void>();

function layoutWorker(): Worker {
  if (!worker) {
    worker = new Worker(new URL('./layout-worker.ts', import.meta.url), { type: 'module' });
    worker.onmessage = (e: MessageEvent<LayoutResponse>) => {
      const done = waiting.get(e.data.id);
      waiting.delete(e.data.id);
      done?.(e.data);
    };
  }
  return worker;
}

export interface LayoutState {
  positions: Map<string, Position>;
  /** True while the worker computes the real layout; the grid placement is shown meanwhile. */
  pending: boolean;
  engine: LayoutResponse['engine'] | 'grid';
}

/** Published for the benchmark and tests: when the last layout came back, and what it cost. */
declare global {
  interface Window {
    __layout?: { done: number; ms: number; engine: string; nodes: number };
  }
}

/**
 * Positions for `items`, recomputed in the layout worker whenever `key` (the set of nodes and links)
 * changes — never for a status change. Until the worker answers, the nodes stand in a grid, so the
 * page shows what it has at once.
 */
export function useLayout(items: readonly LayoutItem[], links: readonly Link[], key: string): LayoutState {
  const [state, setState] = useState<LayoutState>(() => ({
    positions: gridLayout(items),
    pending: items.length > 0,
    engine: 'grid',
  }));
  const current = useRef(key);

  // biome-ignore lint/correctness/useExhaustiveDependencies: the key stands for items and links
  useEffect(() => {
    current.current = key;
    if (items.length === 0) {
      setState({ positions: new Map(), pending: false, engine: 'grid' });
      return;
    }
    // Keep the positions of nodes already placed; only new ones start in the grid.
    setState((s) => {
      const grid = gridLayout(items);
      const positions = new Map<string, Position>();
      for (const item of items) {
        positions.set(item.id, s.positions.get(item.id) ?? grid.get(item.id) ?? { x: 0, y: 0 });
      }
      return { positions, pending: true, engine: s.engine };
    });
    const id = nextId++;
    const request: LayoutRequest = { id, items: items.slice(), links: links.slice() };
    waiting.set(id, (response) => {
      if (current.current !== key) return;
      const positions = new Map<string, Position>();
      items.forEach((item, i) => {
        positions.set(item.id, {
          x: response.positions[i * 2] ?? 0,
          y: response.positions[i * 2 + 1] ?? 0,
        });
      });
      window.__layout = {
        done: performance.now(),
        ms: response.ms,
        engine: response.engine,
        nodes: items.length,
      };
      setState({ positions, pending: false, engine: response.engine });
    });
    layoutWorker().postMessage(request);
    return () => {
      waiting.delete(id);
    };
  }, [key]);

  return state;
}
