import { memo, useContext } from 'react';
import type { Problem, StatusCounts } from './api.ts';
import { formatAge, formatTime } from './format.ts';
import { NowContext, StatusBadge } from './project-node.tsx';

/** Offline and degraded projects, the latest change first: where an operator looks when something is wrong. */
function ProblemsListView({
  problems,
  counts,
  selected,
  onPick,
}: {
  problems: Problem[];
  counts: StatusCounts | undefined;
  selected: string | undefined;
  onPick: (problem: Problem) => void;
}) {
  const now = useContext(NowContext);
  const total = counts ? counts.offline + counts.degraded : problems.length;
  return (
    <nav className="problems" aria-labelledby="problems-title">
      <h2 id="problems-title" className="problems-title">
        Problems <span className="muted">({total.toLocaleString('en')})</span>
      </h2>
      {problems.length === 0 ? (
        <p className="muted small" data-testid="no-problems">
          Every project is online.
        </p>
      ) : (
        <ul className="problems-list" data-testid="problems">
          {problems.map((p) => (
            <li key={p.slug}>
              <button
                type="button"
                className={`problem${p.slug === selected ? ' selected' : ''}`}
                data-slug={p.slug}
                data-status={p.status}
                onClick={() => onPick(p)}
                title={`${p.name} (${p.slug}): ${p.status} since ${formatTime(p.since)} — ${p.reason}`}
              >
                <span className="problem-row">
                  <StatusBadge status={p.status} />
                  <span className="problem-age small">
                    {formatAge((now - Date.parse(p.since)) / 1000)} ago
                  </span>
                </span>
                <span className="problem-name">{p.name}</span>
                <span className="problem-reason small">{p.reason}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
      {problems.length < total && (
        <p className="muted small">
          The {problems.length} latest of {total.toLocaleString('en')} are listed.
        </p>
      )}
    </nav>
  );
}

/** Re-rendered only when the list, the counts or the selection change (not for each keystroke in Find). */
export const ProblemsList = memo(ProblemsListView);
