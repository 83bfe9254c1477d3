import { Handle, type Node, type NodeProps, Position, useStore } from '@xyflow/react';
import { createContext, memo, useContext } from 'react';
import type { ProjectStatus } from './api.ts';
import { formatAge, formatTime, keyMetrics } from './format.ts';
import type { ProjectView } from './use-federation.ts';

export type ProjectNodeType = Node<{ project: ProjectView }, 'project'>;

/** The current time, ticking a few times a minute: only the cards on screen re-render with it. */
export const NowContext = createContext(Date.now());

const STATUS_ICON: Record<ProjectStatus, string> = { online: '●', degraded: '▲', offline: '■' };

/** Colour plus a shape and a word, so the status reads without colour vision too. */
export function StatusBadge({ status }: { status: ProjectStatus }) {
  return (
    <span className={`status status-${status}`} data-status={status}>
      <span aria-hidden="true" className="status-icon">
        {STATUS_ICON[status]}
      </span>
      {status}
    </span>
  );
}

/** Maintenance and flapping, in words (not colour alone): why a change on this card pages no one. */
export function NoticeBadges({ project }: { project: Pick<ProjectView, 'maintenance' | 'flapping'> }) {
  const m = project.maintenance;
  if (!m && !project.flapping) return null;
  return (
    <div className="notices small">
      {m && (
        <span
          className="notice notice-maintenance"
          title={`maintenance until ${formatTime(m.until)}${m.reason ? `: ${m.reason}` : ''} (not notified)`}
        >
          <span aria-hidden="true">🔧 </span>maintenance until {formatTime(m.until)}
        </span>
      )}
      {project.flapping && (
        <span
          className="notice notice-flapping"
          title="changing status too often; notified once until it settles"
        >
          <span aria-hidden="true">⚡ </span>flapping
        </span>
      )}
    </div>
  );
}

export function HeartbeatAge({ beatAt }: { beatAt: number | null }) {
  const now = useContext(NowContext);
  if (beatAt === null) return <span className="muted">no heartbeat yet</span>;
  return <span title="time since the last heartbeat">♥ {formatAge((now - beatAt) / 1000)} ago</span>;
}

const zoomedOutSelector = (s: { transform: [number, number, number] }) => s.transform[2] < 0.45;

function ProjectNodeView({ data, selected }: NodeProps<ProjectNodeType>) {
  const p = data.project;
  // Far out, text is unreadable anyway: draw a plain block with the name and the status.
  const zoomedOut = useStore(zoomedOutSelector);
  const handles = (
    <>
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </>
  );
  if (zoomedOut) {
    return (
      <div className={`project-card compact status-border-${p.status}${selected ? ' selected' : ''}`}>
        {handles}
        <div className="compact-name">{p.name}</div>
        <StatusBadge status={p.status} />
      </div>
    );
  }
  const tags = p.tags.slice(0, 3);
  const metrics = keyMetrics(p.metrics, 2);
  return (
    <div className={`project-card status-border-${p.status}${selected ? ' selected' : ''}`}>
      {handles}
      <div className="card-row">
        <StatusBadge status={p.status} />
        <span className="version" title="version from the last heartbeat">
          {p.version ? `v${p.version.replace(/^v/, '')}` : 'no version'}
        </span>
      </div>
      <div className="card-name" title={p.name}>
        {p.name}
      </div>
      <div className="card-row muted small">
        <span className="slug" title={p.slug}>
          {p.slug}
        </span>
        <HeartbeatAge beatAt={p.beatAt} />
      </div>
      {/* A window or flapping takes the tags' row: the card keeps its fixed height (the layout counts on it). */}
      {p.maintenance || p.flapping ? (
        <NoticeBadges project={p} />
      ) : (
        <div className="tags">
          {tags.map((t) => (
            <span key={t} className="tag">
              {t}
            </span>
          ))}
          {p.tags.length > tags.length && <span className="tag more">+{p.tags.length - tags.length}</span>}
        </div>
      )}
      <div className="card-metrics small">
        {metrics.length === 0 ? (
          <span className="muted">no metrics yet</span>
        ) : (
          metrics.map(([name, value]) => (
            <span key={name} className="metric" title={name}>
              <span className="metric-name">{name}</span> <strong>{value}</strong>
            </span>
          ))
        )}
      </div>
    </div>
  );
}

export const ProjectNode = memo(ProjectNodeView);
