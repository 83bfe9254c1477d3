import { useStoreApi } from '@xyflow/react';
import { useCallback, useEffect, useRef, useState } from 'react';
import type { CullRequest, CullResponse } from './cull-worker.ts';
import type { LayoutItem, Position } from './layout.ts';

/** Past this many nodes the page hands React Flow only what is near the view (see cull-worker.ts). */
export const CULL_MIN_NODES = 2_000;
/** Kept around the viewport on each side, as a share of its size: panning that far needs no new set. */
const MARGIN = 0.5;

let worker: Worker | undefined;
let onAnswer: ((r: CullResponse) => void) | undefined;

function cullWorker(): Worker {
  if (!worker) {
    worker = new Worker(new URL('./cull-worker.ts', import.meta.url), { type: 'module' });
    worker.onmessage = (e: MessageEvent<CullResponse>) => onAnswer?.(e.data);
  }
  return worker;
}

const post = (m: CullRequest, transfer: Transferable[] = []) => cullWorker().postMessage(m, transfer);

export interface Culled {
  /** The items and edges the indices refer to: a result for other ones is not used. */
  items: readonly LayoutItem[];
  edgeList: readonly unknown[];
  nodes: Int32Array;
  edges: Int32Array;
}

const sameIndices = (a: Int32Array, b: Int32Array) => a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * The nodes (indices into `items`) and edges (indices into `edges`) near the viewport among those the
 * filters leave (`shown`), computed in the culling worker whenever the view, the layout or the filters
 * change. Undefined while disabled or before the first answer.
 */
export function useCulling(opts: {
  enabled: boolean;
  items: readonly LayoutItem[];
  positions: Map<string, Position>;
  edges: ReadonlyArray<{ source: string; target: string }>;
  shown: Uint8Array;
}): Culled | undefined {
  const { enabled, items, positions, edges, shown } = opts;
  const store = useStoreApi();
  const [culled, setCulled] = useState<Culled>();
  const state = useRef({ scene: 0, mask: 0, view: 0, inFlight: false, dirty: false, items, edges });

  const requestView = useCallback(() => {
    const st = state.current;
    if (st.scene === 0 || st.mask === 0) return;
    if (st.inFlight) {
      st.dirty = true;
      return;
    }
    const { transform, width, height } = store.getState();
    const [tx, ty, zoom] = transform;
    if (width === 0 || height === 0) return;
    const w = width / zoom;
    const h = height / zoom;
    st.inFlight = true;
    st.dirty = false;
    post({
      type: 'view',
      id: ++st.view,
      rect: {
        x: -tx / zoom - w * MARGIN,
        y: -ty / zoom - h * MARGIN,
        width: w * (1 + 2 * MARGIN),
        height: h * (1 + 2 * MARGIN),
      },
    });
  }, [store]);

  useEffect(() => {
    if (!enabled) return;
    // An answer lost while disabled (no listener) must not leave a request marked in flight forever.
    state.current.inFlight = false;
    onAnswer = (r) => {
      const st = state.current;
      st.inFlight = false;
      if (r.scene === st.scene && r.mask === st.mask) {
        setCulled((old) =>
          old &&
          old.items === st.items &&
          old.edgeList === st.edges &&
          sameIndices(old.nodes, r.nodes) &&
          sameIndices(old.edges, r.edges)
            ? old
            : { items: st.items, edgeList: st.edges, nodes: r.nodes, edges: r.edges },
        );
      } else {
        st.dirty = true;
      }
      if (st.dirty) requestView();
    };
    // The view moved (by a person, fitView or setViewport) or the pane was resized.
    const unsubscribe = store.subscribe((s, prev) => {
      if (s.transform !== prev.transform || s.width !== prev.width || s.height !== prev.height) requestView();
    });
    return () => {
      unsubscribe();
      onAnswer = undefined;
    };
  }, [enabled, store, requestView]);

  // A new layout or new structure: the worker gets the boxes and the edges as flat arrays.
  useEffect(() => {
    if (!enabled) return;
    const index = new Map<string, number>();
    const boxes = new Float64Array(items.length * 4);
    items.forEach((item, i) => {
      index.set(item.id, i);
      const p = positions.get(item.id);
      boxes[i * 4] = p?.x ?? 0;
      boxes[i * 4 + 1] = p?.y ?? 0;
      boxes[i * 4 + 2] = item.width;
      boxes[i * 4 + 3] = item.height;
    });
    const flat = new Int32Array(edges.length * 2);
    edges.forEach((e, j) => {
      flat[j * 2] = index.get(e.source) ?? 0;
      flat[j * 2 + 1] = index.get(e.target) ?? 0;
    });
    const st = state.current;
    st.scene++;
    st.items = items;
    st.edges = edges;
    post({ type: 'scene', scene: st.scene, boxes, edges: flat }, [boxes.buffer, flat.buffer]);
    requestView();
  }, [enabled, items, positions, edges, requestView]);

  useEffect(() => {
    if (!enabled) return;
    const st = state.current;
    st.mask++;
    post({ type: 'mask', mask: st.mask, shown: shown.slice() });
    requestView();
  }, [enabled, shown, requestView]);

  return enabled && culled && culled.items === items && culled.edgeList === edges ? culled : undefined;
}
