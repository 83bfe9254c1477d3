import {
  BaseEdge,
  type Edge,
  EdgeLabelRenderer,
  type EdgeProps,
  getBezierPath,
  type ReactFlowState,
  useStore,
} from '@xyflow/react';
import { memo } from 'react';

export type BundleEdgeType = Edge<{ count: number; kinds: string[] }, 'bundle'>;

const labelsShown = (s: ReactFlowState) => s.transform[2] >= 0.35;

/** Many project-to-project edges drawn as one: as wide as the log of their number, labelled with it. */
function BundleEdgeView(props: EdgeProps<BundleEdgeType>) {
  const [path, labelX, labelY] = getBezierPath(props);
  const showLabel = useStore(labelsShown);
  const count = props.data?.count ?? 1;
  const kinds = props.data?.kinds ?? [];
  return (
    <>
      <BaseEdge
        id={props.id}
        path={path}
        style={{ ...props.style, strokeWidth: Math.min(12, 1.5 + Math.log2(count) * 1.5) }}
        markerEnd={props.markerEnd}
        interactionWidth={0}
      />
      {showLabel && (
        <EdgeLabelRenderer>
          <div
            className="edge-label bundle-label"
            style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` }}
            title={`${count} edges: ${kinds.join(', ')}`}
          >
            {count.toLocaleString('en')} × {kinds.slice(0, 2).join(', ')}
            {kinds.length > 2 ? ` +${kinds.length - 2}` : ''}
          </div>
        </EdgeLabelRenderer>
      )}
    </>
  );
}

export const BundleEdge = memo(BundleEdgeView);
