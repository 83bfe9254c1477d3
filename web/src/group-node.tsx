import { Handle, type Node, type NodeProps, Position } from '@xyflow/react';
import { memo } from 'react';
import { type GraphGroup, type GroupBy, PROJECT_STATUSES, type StatusCounts } from './api.ts';

export type GroupNodeType = Node<{ group: GraphGroup; groupBy: GroupBy }, 'cluster'>;
export type StubNodeType = Node<
  { group: string; groupBy: GroupBy; counts: StatusCounts | undefined },
  'stub'
>;

const STATUS_ICON = { online: '●', degraded: '▲', offline: '■' } as const;

/** A group key as a person reads it: the untagged group has the empty key. */
export function groupLabel(key: string, groupBy: GroupBy): string {
  if (key !== '') return key;
  return groupBy === 'tag' ? 'untagged' : '(none)';
}

/** Counts per status as a bar (colour) and as words with a shape (so it reads without colour vision). */
export function StatusBar({ counts, total }: { counts: StatusCounts; total: number }) {
  return (
    <div className="status-bar-wrap">
      <div className="status-bar" aria-hidden="true">
        {PROJECT_STATUSES.map((s) =>
          counts[s] > 0 ? (
            <span key={s} className={`bar-${s}`} style={{ flexGrow: counts[s] / Math.max(1, total) }} />
          ) : null,
        )}
      </div>
      <div className="status-counts small">
        {PROJECT_STATUSES.map((s) => (
          <span key={s} className={`count-${s}`} data-status={s}>
            <span aria-hidden="true">{STATUS_ICON[s]}</span> {counts[s].toLocaleString('en')} {s}
          </span>
        ))}
      </div>
    </div>
  );
}

function GroupNodeView({ data, selected }: NodeProps<GroupNodeType>) {
  const { group, groupBy } = data;
  const label = groupLabel(group.key, groupBy);
  const problems = group.status_counts.offline + group.status_counts.degraded;
  return (
    <div
      className={`group-card${problems > 0 ? ' has-problems' : ''}${selected ? ' selected' : ''}`}
      title={`${label}: ${group.count} projects — Enter or click to open`}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <Handle type="source" position={Position.Right} isConnectable={false} />
      <div className="group-head">
        <span className="group-kind small">{groupBy}</span>
        <span className="group-name">{label}</span>
      </div>
      <div className="group-count">
        <strong>{group.count.toLocaleString('en')}</strong> project{group.count === 1 ? '' : 's'}
        {group.internal_edges > 0 && (
          <span className="muted small"> · {group.internal_edges.toLocaleString('en')} edges inside</span>
        )}
      </div>
      <StatusBar counts={group.status_counts} total={group.count} />
    </div>
  );
}

export const GroupNode = memo(GroupNodeView);

/** Another group, at the end of edges leaving the opened one; opening it moves there. */
function StubNodeView({ data }: NodeProps<StubNodeType>) {
  const label = groupLabel(data.group, data.groupBy);
  const problems = data.counts ? data.counts.offline + data.counts.degraded : 0;
  return (
    <div className="stub-card" title={`Group ${label} — Enter or click to open it`}>
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <Handle type="source" position={Position.Right} isConnectable={false} />
      <span className="group-kind small">other group</span>
      <span className="group-name">{label}</span>
      {data.counts && (
        <span className="small muted">
          {(data.counts.online + problems).toLocaleString('en')} projects
          {problems > 0 ? ` · ${problems.toLocaleString('en')} with problems` : ''}
        </span>
      )}
    </div>
  );
}

export const StubNode = memo(StubNodeView);
