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

export type KindEdgeType = Edge<{ kind: string; strength: number | null }, 'kind'>;

// Labels are unreadable when zoomed far out, and each one costs a DOM node: skip them there.
const labelsShown = (s: ReactFlowState) => s.transform[2] >= 0.45;

/** An integration edge: a curve as wide as its strength, labelled with its kind in HTML (no SVG measuring). */
function KindEdgeView(props: EdgeProps<KindEdgeType>) {
  const [path, labelX, labelY] = getBezierPath(props);
  const showLabel = useStore(labelsShown);
  return (
    <>
      <BaseEdge
        id={props.id}
        path={path}
        style={props.style}
        markerEnd={props.markerEnd}
        interactionWidth={0}
      />
      {showLabel && props.data && (
        <EdgeLabelRenderer>
          <div
            className={`edge-label edge-label-${props.data.kind}`}
            style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` }}
          >
            {props.data.kind}
          </div>
        </EdgeLabelRenderer>
      )}
    </>
  );
}

export const KindEdge = memo(KindEdgeView);
