import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { ApiError, api, FANOUT_OUTCOMES, type FanoutOutcome, type FanoutRun, tokens } from './api.ts';
import type { Federation } from './use-federation.ts';

const POLL_MS = 1_000;
const OUTCOME_LABEL: Record<FanoutOutcome, string> = {
  ok: 'ok',
  error: 'error',
  timeout: 'timeout',
  not_allowed: 'not allowed',
  offline: 'offline',
};

type AuditState =
  | { step: 'idle' }
  | { step: 'token'; message: string }
  | { step: 'starting' }
  | { step: 'run'; run: FanoutRun }
  | { step: 'failed'; message: string };

function mergeRun(run: FanoutRun, update: Partial<FanoutRun>): FanoutRun {
  // A poll answer and an SSE event can cross: never go back from done to running.
  const status = run.status === 'done' ? 'done' : (update.status ?? run.status);
  return { ...run, ...update, status, counts: { ...run.counts, ...(update.counts ?? {}) } };
}

/** "Audit all": one fan-out of the `audit` action to every online project, with its counts as they arrive. */
export function AuditControl({ onFanout }: { onFanout: Federation['onFanout'] }) {
  const [state, setState] = useState<AuditState>({ step: 'idle' });
  const [token, setToken] = useState('');
  const runId = state.step === 'run' ? state.run.id : undefined;
  const running = state.step === 'run' && state.run.status === 'running';

  const start = useCallback(async () => {
    setState({ step: 'starting' });
    try {
      const run = await api.startAudit();
      setState({
        step: 'run',
        run: mergeRun({ id: run.id, action: 'audit', status: 'running', counts: emptyCounts() }, run),
      });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        setState({
          step: 'token',
          message: tokens.admin() ? 'That admin token was refused.' : 'Audits need the admin token.',
        });
      } else {
        setState({ step: 'failed', message: `Audit not started: ${(err as Error).message}` });
      }
    }
  }, []);

  useEffect(() => {
    if (!runId) return;
    const apply = (update: Partial<FanoutRun> & { id: string }) => {
      if (update.id !== runId) return;
      setState((s) => (s.step === 'run' ? { step: 'run', run: mergeRun(s.run, update) } : s));
    };
    return onFanout(apply);
  }, [runId, onFanout]);

  useEffect(() => {
    if (!runId || !running) return;
    let stopped = false;
    let timer: number | undefined;
    const poll = async () => {
      try {
        const run = await api.run(runId);
        if (stopped) return;
        setState((s) =>
          s.step === 'run' && s.run.id === runId ? { step: 'run', run: mergeRun(s.run, run) } : s,
        );
      } catch {
        // The next poll or an SSE event will catch up.
      }
      if (!stopped) timer = window.setTimeout(poll, POLL_MS);
    };
    timer = window.setTimeout(poll, POLL_MS);
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [runId, running]);

  const submitToken = (e: FormEvent) => {
    e.preventDefault();
    if (!token.trim()) return;
    tokens.setAdmin(token.trim());
    setToken('');
    void start();
  };

  return (
    <div className="audit">
      {state.step === 'token' ? (
        <form className="token-form" onSubmit={submitToken}>
          <label>
            <span className="small">{state.message}</span>
            <input
              type="password"
              autoComplete="off"
              placeholder="FED_ADMIN_TOKEN"
              aria-label="Admin token"
              value={token}
              onChange={(e) => setToken(e.target.value)}
            />
          </label>
          <button type="submit">Run audit</button>
          <button type="button" className="secondary" onClick={() => setState({ step: 'idle' })}>
            Cancel
          </button>
        </form>
      ) : (
        <button
          type="button"
          onClick={() => void start()}
          disabled={state.step === 'starting' || running}
          title="Send the audit action to every online project that allows it"
        >
          {running ? 'Auditing…' : 'Audit all'}
        </button>
      )}
      {state.step === 'run' && <RunSummary run={state.run} />}
      {state.step === 'failed' && (
        <span className="audit-error" role="alert">
          {state.message}
        </span>
      )}
    </div>
  );
}

function emptyCounts(): Record<FanoutOutcome, number> {
  return { ok: 0, error: 0, timeout: 0, not_allowed: 0, offline: 0 };
}

function RunSummary({ run }: { run: FanoutRun }) {
  return (
    <output className="run-summary" aria-live="polite" data-run-status={run.status}>
      <strong>Audit {run.status === 'done' ? 'done' : 'running'}:</strong>{' '}
      {FANOUT_OUTCOMES.map((o) => (
        <span key={o} className={`count count-${o}`} data-outcome={o}>
          {OUTCOME_LABEL[o]} {run.counts?.[o] ?? 0}
        </span>
      ))}
    </output>
  );
}
