import { useEffect, useState } from 'react';
import { ApiError, api, type GraphEdge, type History, metricValue } from './api.ts';
import { formatTime, formatValue } from './format.ts';
import { HeartbeatAge, NoticeBadges, StatusBadge } from './project-node.tsx';
import type { ProjectView } from './use-federation.ts';

type HistoryState =
  | { state: 'loading' }
  | { state: 'ready'; history: History }
  | { state: 'missing' }
  | { state: 'failed'; message: string };

function useHistory(slug: string, status: string): HistoryState {
  const [history, setHistory] = useState<HistoryState>({ state: 'loading' });
  // biome-ignore lint/correctness/useExhaustiveDependencies: a status change adds a transition worth showing
  useEffect(() => {
    const controller = new AbortController();
    setHistory((h) => (h.state === 'ready' && h.history.slug === slug ? h : { state: 'loading' }));
    api.history(slug, controller.signal).then(
      (h) => setHistory({ state: 'ready', history: h }),
      (err: unknown) => {
        if (controller.signal.aborted) return;
        if (err instanceof ApiError && err.status === 404) {
          setHistory({ state: 'missing' });
        } else {
          setHistory({ state: 'failed', message: (err as Error).message });
        }
      },
    );
    return () => controller.abort();
  }, [slug, status]);
  return history;
}

const percent = (v: number | null | undefined) =>
  typeof v === 'number' ? `${(v * 100).toFixed(v === 1 ? 0 : 1)}%` : '—';

export function ProjectPanel({
  project,
  edges,
  names,
  onClose,
}: {
  project: ProjectView;
  edges: GraphEdge[];
  names: Map<string, string>;
  onClose: () => void;
}) {
  const history = useHistory(project.slug, project.status);
  const metrics = Object.entries(project.metrics ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const links = edges.filter((e) => e.from === project.slug || e.to === project.slug);

  return (
    <aside className="panel" aria-label={`Details of ${project.name}`}>
      <header className="panel-header">
        <div>
          <h2>{project.name}</h2>
          <StatusBadge status={project.status} />
          {project.status_changed_at && (
            <span className="muted small"> since {formatTime(project.status_changed_at)}</span>
          )}
          <NoticeBadges project={project} />
        </div>
        <button type="button" className="close" onClick={onClose} aria-label="Close details">
          ×
        </button>
      </header>

      <a className="open-project" href={project.hub_url} target="_blank" rel="noreferrer noopener">
        Open project's graph ↗
      </a>

      <dl className="facts">
        <dt>Slug</dt>
        <dd className="mono">{project.slug}</dd>
        <dt>Version</dt>
        <dd>{project.version ?? '—'}</dd>
        <dt>Last heartbeat</dt>
        <dd>
          <HeartbeatAge beatAt={project.beatAt} />
          {project.last_heartbeat_at && (
            <div className="muted small">{formatTime(project.last_heartbeat_at)}</div>
          )}
        </dd>
        {project.maintenance && (
          <>
            <dt>Maintenance</dt>
            <dd>
              until {formatTime(project.maintenance.until)}
              {project.maintenance.reason && <div className="muted small">{project.maintenance.reason}</div>}
            </dd>
          </>
        )}
        {project.health && (
          <>
            <dt>Reported health</dt>
            <dd>{project.health}</dd>
          </>
        )}
        <dt>Hub URL</dt>
        <dd className="mono break">{project.hub_url}</dd>
        <dt>Mesh namespace</dt>
        <dd className="mono">{project.mesh_namespace}</dd>
        <dt>Tags</dt>
        <dd>{project.tags.length ? project.tags.join(', ') : '—'}</dd>
        <dt>Fan-out actions</dt>
        <dd>{project.allow_fanout?.length ? project.allow_fanout.join(', ') : 'none allowed'}</dd>
        {project.source && (
          <>
            <dt>Registered from</dt>
            <dd>
              {project.source}
              {project.configured === false && project.source === 'config'
                ? ' (no longer in projects.yaml)'
                : ''}
            </dd>
          </>
        )}
      </dl>

      <section>
        <h3>Latest metrics</h3>
        {metrics.length === 0 ? (
          <p className="muted">No metrics reported yet.</p>
        ) : (
          <table className="metrics-table">
            <tbody>
              {metrics.map(([name, entry]) => {
                const m = metricValue(entry);
                return (
                  <tr key={name}>
                    <th scope="row">{name}</th>
                    <td>{formatValue(m.value)}</td>
                    <td className="muted small">{m.observedAt ? formatTime(m.observedAt) : ''}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>

      <section>
        <h3>Connections</h3>
        {links.length === 0 ? (
          <p className="muted">No integration edges.</p>
        ) : (
          <ul className="links">
            {links.map((e) => {
              const outgoing = e.from === project.slug;
              const other = outgoing ? e.to : e.from;
              return (
                <li key={String(e.id)}>
                  {outgoing ? '→' : '←'} <strong>{names.get(other) ?? other}</strong>{' '}
                  <span className="muted">
                    {e.kind}
                    {typeof e.strength === 'number' ? ` · strength ${e.strength}` : ''} · source {e.source}
                  </span>
                </li>
              );
            })}
          </ul>
        )}
      </section>

      <section>
        <h3>History</h3>
        {history.state === 'loading' && <p className="muted">Loading…</p>}
        {history.state === 'missing' && <p className="muted">No history available.</p>}
        {history.state === 'failed' && <p className="muted">Could not load the history: {history.message}</p>}
        {history.state === 'ready' && (
          <>
            <div className="uptime">
              {Object.entries(history.history.uptime ?? {}).map(([window, value]) => (
                <div key={window}>
                  <span className="muted small">uptime {window}</span>
                  <strong>{percent(value)}</strong>
                </div>
              ))}
            </div>
            {history.history.transitions.length === 0 ? (
              <p className="muted">No transitions yet.</p>
            ) : (
              <ol className="transitions">
                {history.history.transitions.slice(0, 20).map((t) => (
                  <li key={`${t.at}-${t.to}`}>
                    <span className="muted small">{formatTime(t.at)}</span> {t.from} → <strong>{t.to}</strong>{' '}
                    <span className="muted small">{t.reason}</span>
                  </li>
                ))}
              </ol>
            )}
          </>
        )}
      </section>
    </aside>
  );
}
