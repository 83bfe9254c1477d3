/**
 * The ceiling of `npm run bench -- --view`: the same nodes and edges in React Flow with no app logic
 * (no layout worker, no live feed, no cards): a grid, default nodes, onlyRenderVisibleElements.
 * The bench drives it through window.__bare.
 */
import '@xyflow/react/dist/style.css';
import { type Edge, type Node, ReactFlow } from '@xyflow/react';
import { useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';

type Item = { id: string; label: string };
declare global {
  interface Window {
    __bare?: { setLabels(ids: string[], suffix: string): void; filter(q: string): void; shown: number };
  }
}

const params = new URLSearchParams(window.location.search);
const url = params.get('graph') ?? '/api/fed/graph';

function Bare() {
  const [nodes, setNodes] = useState<Node[]>([]);
  const [edges, setEdges] = useState<Edge[]>([]);
  useEffect(() => {
    void fetch(url)
      .then((r) => r.json())
      .then(
        (g: {
          nodes?: Array<{ slug: string; name: string }>;
          groups?: Array<{ key: string }>;
          edges: Array<{ from: string; to: string }>;
        }) => {
          const items: Item[] = g.nodes
            ? g.nodes.map((n) => ({ id: n.slug, label: n.name }))
            : (g.groups ?? []).map((x) => ({ id: x.key, label: x.key }));
          const columns = Math.ceil(Math.sqrt(items.length * 2));
          setNodes(
            items.map((it, i) => ({
              id: it.id,
              position: { x: (i % columns) * 200, y: Math.floor(i / columns) * 80 },
              data: { label: it.label },
              width: 160,
              height: 40,
            })),
          );
          setEdges(g.edges.map((e, i) => ({ id: `e${i}`, source: e.from, target: e.to })));
        },
      );
  }, []);
  useEffect(() => {
    window.__bare = {
      shown: nodes.filter((n) => !n.hidden).length,
      setLabels: (ids, suffix) => {
        const set = new Set(ids);
        setNodes((ns) =>
          ns.map((n) => (set.has(n.id) ? { ...n, data: { label: `${n.data.label} ${suffix}` } } : n)),
        );
      },
      filter: (q) => setNodes((ns) => ns.map((n) => ({ ...n, hidden: !String(n.data.label).includes(q) }))),
    };
  }, [nodes]);
  return (
    <div style={{ height: '100%' }}>
      <ReactFlow
        nodes={nodes}
        edges={edges}
        onlyRenderVisibleElements
        defaultViewport={{ x: 0, y: 0, zoom: 0.8 }}
      />
    </div>
  );
}

const root = document.getElementById('root');
if (root) createRoot(root).render(<Bare />);
