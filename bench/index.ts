import { parseArgs } from 'node:util';

/**
 * `npm run bench`: the benchmarks, outside the production CLI (bench/ depends on the app, not the other
 * way). Each mode is a module of its own, loaded only when asked for.
 */
const USAGE = `npm run bench -- [--quick] [options]

Starts its own nats-server, creates a throwaway PostgreSQL database, builds the real app and measures:
sustained heartbeats/s (published → written), publish → visible latency in the API under load,
offline detection delay past the threshold, and the seed's per-message path on the same workload.
Prints readable lines; the last line is one JSON object. See bench/README.md.

  --quick              shorter phases (finishes in under 45 s)
  --stages             instead, measure each stage of the heartbeat path alone (to find a bottleneck)
  --startup            instead, time federation --help and npm start until healthy (-- --startup --help)
  --notify             instead, webhook delivery delay, loss across an outage and a SIGKILL (-- --notify --help)
  --projects N         distinct projects in the load (default 10000)
  --rounds N           measured heartbeats per project through the service (default 60, quick 30)
  --baseline-rounds N  heartbeats per project through the per-message baseline (default 3, quick 1)
  --window N           heartbeats in flight at most (default 10000)
  --postgres-url URL   PostgreSQL server to create the database on
                       (default TEST_POSTGRES_URL, else postgres://postgres@127.0.0.1:5432/postgres)
  --nats-url URL       use this NATS server instead of starting one (nothing else may consume
                       hub.presence.* on it)`;

async function presenceBench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      stages: { type: 'boolean', default: false },
      projects: { type: 'string' },
      rounds: { type: 'string' },
      'baseline-rounds': { type: 'string' },
      window: { type: 'string' },
      'postgres-url': { type: 'string' },
      'nats-url': { type: 'string' },
    },
  });
  const { benchDefaults, runPresenceBench } = await import('./presence-bench.ts');
  const opts = { ...benchDefaults(values.quick), log: (l: string) => console.log(l) };
  const ints: Array<[string | undefined, string, keyof typeof opts, number, number]> = [
    [values.projects, '--projects', 'projects', 1, 99_999],
    [values.rounds, '--rounds', 'rounds', 1, 10_000],
    [values['baseline-rounds'], '--baseline-rounds', 'baselineRounds', 1, 1000],
    [values.window, '--window', 'window', 100, 10_000_000],
  ];
  for (const [raw, flag, key, min, max] of ints) {
    if (raw === undefined) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      console.error(`bench: ${flag} ${JSON.stringify(raw)} is invalid: expected ${min} to ${max}`);
      return 2;
    }
    (opts as Record<string, unknown>)[key] = n;
  }
  const postgres = values['postgres-url'] ?? process.env.TEST_POSTGRES_URL;
  if (postgres) opts.postgresAdminUrl = postgres;
  if (values['nats-url']) opts.natsUrl = values['nats-url'];
  try {
    if (values.stages) {
      const { runStages } = await import('./stages.ts');
      console.log('presence stages, each alone:');
      console.log(JSON.stringify(await runStages(opts)));
      return 0;
    }
    const result = await runPresenceBench(opts);
    console.log(JSON.stringify(result));
    return 0;
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    return 1;
  }
}

/**
 * The other benchmarks, one module each exporting `main(argv)`: `npm run bench -- --scale`,
 * `-- --view`, `-- --startup`, `-- --notify`. A mode's module is imported only when its flag is given.
 */
const MODES: Record<string, () => Promise<{ main(argv: string[]): Promise<number> }>> = {
  '--scale': () => import('./scale-bench.ts'),
  '--view': () => import('./view-bench.ts'),
  '--startup': () => import('./startup-bench.ts'),
  '--soak': () => import('./soak.ts'),
  '--notify': () => import('./notify-bench.ts'),
};

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  for (const [flag, load] of Object.entries(MODES)) {
    if (argv.includes(flag)) return (await load()).main(argv.filter((a) => a !== flag));
  }
  return presenceBench(argv);
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  console.error(`bench: ${(err as Error).message}`);
  process.exitCode = 2;
}
