import { parseArgs } from 'node:util';
import type { FanoutRunResponse } from '../fanout/routes.ts';
import { formatTable } from './projects.ts';
import type { Command } from './types.ts';

type RunBody = FanoutRunResponse;

const POLL_INTERVAL_MS = 200;
/** Past the run's own timeout, how long the CLI keeps polling before giving up on the server. */
const POLL_SLACK_MS = 30_000;

const USAGE = `federation fanout <action> [--tag T]... [--slug S]... [--status online|degraded|offline]... [--all]
                [--params JSON] [--timeout-ms N] [--include-offline] [--url URL] [--token T] [--json]

  Sends <action> to every matching project that allows it, waits for the run to finish and prints
  one line per project. Criteria combine with AND (any of the tags); --all targets every project.
  Exit code 0 when no project answered with an error or timed out, 1 otherwise.

  --url     the service (default http://127.0.0.1:8001, or FEDERATION_URL)
  --token   the admin token (default FEDERATION_TOKEN)`;

function summariseResult(r: RunBody['results'][number]): string {
  if (r.error !== undefined) return r.error;
  if (r.result === undefined) return '';
  const text = JSON.stringify(r.result);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

async function errorMessage(res: Response): Promise<string> {
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  return `${res.status} ${body.message ?? res.statusText}`;
}

export function formatRun(run: RunBody): string {
  const rows = [['SLUG', 'OUTCOME', 'MS', 'RESULT / ERROR']];
  for (const r of run.results) {
    rows.push([r.slug, r.outcome, r.duration_ms === null ? '-' : String(r.duration_ms), summariseResult(r)]);
  }
  const c = run.counts;
  const counts = (['ok', 'error', 'timeout', 'not_allowed', 'offline'] as const)
    .map((k) => `${c[k]} ${k}`)
    .join(', ');
  return `${formatTable(rows)}\n\nrun ${run.id} (${run.action}) ${run.status}: ${counts}`;
}

/** fetch, with "service unreachable" as one line instead of a stack trace. */
async function call(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    throw new UnreachableError(`cannot reach ${new URL(url).origin}: ${cause}`);
  }
}

class UnreachableError extends Error {
  override name = 'UnreachableError';
}

/** POSTs the run and polls it until done; undefined (after printing why) when the server refuses. */
async function startAndWait(
  base: string,
  token: string | undefined,
  body: object,
): Promise<RunBody | undefined> {
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const created = await call(`${base}/api/fed/actions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify(body),
  });
  if (created.status !== 202) {
    console.error(`federation fanout: ${await errorMessage(created)}`);
    return undefined;
  }
  let run = (await created.json()) as RunBody;
  const giveUpAt = Date.now() + run.timeout_ms + POLL_SLACK_MS;
  while (run.status !== 'done') {
    if (Date.now() > giveUpAt) {
      console.error(`federation fanout: run ${run.id} is still running; see GET /api/fed/actions/${run.id}`);
      return undefined;
    }
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
    const res = await call(`${base}/api/fed/actions/${encodeURIComponent(run.id)}`, { headers: auth });
    if (!res.ok) {
      console.error(`federation fanout: ${await errorMessage(res)}`);
      return undefined;
    }
    run = (await res.json()) as RunBody;
  }
  return run;
}

export const fanoutCommand: Command = {
  summary: 'send an action to many projects and print their answers',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        tag: { type: 'string', multiple: true },
        slug: { type: 'string', multiple: true },
        status: { type: 'string', multiple: true },
        all: { type: 'boolean' },
        params: { type: 'string' },
        'timeout-ms': { type: 'string' },
        'include-offline': { type: 'boolean' },
        url: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
      },
    });
    const action = positionals[0];
    if (!action || positionals.length > 1) {
      console.error(`federation fanout: name exactly one action\n\n${USAGE}`);
      return 2;
    }
    let params: unknown;
    if (values.params !== undefined) {
      try {
        params = JSON.parse(values.params);
      } catch {
        console.error('federation fanout: --params is not valid JSON');
        return 2;
      }
    }
    let timeoutMs: number | undefined;
    if (values['timeout-ms'] !== undefined) {
      timeoutMs = Number(values['timeout-ms']);
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
        console.error('federation fanout: --timeout-ms must be a positive integer');
        return 2;
      }
    }
    const targets: Record<string, unknown> = {};
    if (values.slug?.length) targets.slugs = values.slug;
    if (values.tag?.length) targets.tags = values.tag;
    if (values.status?.length) targets.status = values.status;
    if (values.all) targets.all = true;

    const base = (values.url ?? process.env.FEDERATION_URL ?? 'http://127.0.0.1:8001').replace(/\/$/, '');
    const token = values.token ?? process.env.FEDERATION_TOKEN;

    const body = {
      action,
      targets,
      ...(params === undefined ? {} : { params }),
      ...(timeoutMs === undefined ? {} : { timeout_ms: timeoutMs }),
      ...(values['include-offline'] ? { include_offline: true } : {}),
    };
    try {
      const run = await startAndWait(base, token, body);
      if (!run) return 1;
      console.log(values.json ? JSON.stringify(run, null, 2) : formatRun(run));
      return (run.counts.error ?? 0) + (run.counts.timeout ?? 0) > 0 ? 1 : 0;
    } catch (err) {
      if (!(err instanceof UnreachableError)) throw err;
      console.error(`federation fanout: ${err.message}`);
      return 1;
    }
  },
};
