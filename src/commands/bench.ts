import { parseArgs } from 'node:util';
import type { Command } from './types.ts';

export const benchCommand: Command = {
  summary: 'benchmark heartbeat ingestion through real NATS and PostgreSQL (npm run bench)',
  usage: `federation bench [--quick] [options]

Starts its own nats-server, creates a throwaway PostgreSQL database, builds the real app and measures:
sustained heartbeats/s (published → written), publish → visible latency in the API under load,
offline detection delay past the threshold, and the seed's per-message path on the same workload.
Prints readable lines; the last line is one JSON object. See bench/README.md.

  --quick              shorter phases (finishes in under 45 s)
  --stages             instead, measure each stage of the heartbeat path alone (to find a bottleneck)
  --projects N         distinct projects in the load (default 10000)
  --rounds N           measured heartbeats per project through the service (default 60, quick 30)
  --baseline-rounds N  heartbeats per project through the per-message baseline (default 3, quick 1)
  --window N           heartbeats in flight at most (default 10000)
  --postgres-url URL   PostgreSQL server to create the database on
                       (default TEST_POSTGRES_URL, else postgres://postgres@127.0.0.1:5432/postgres)
  --nats-url URL       use this NATS server instead of starting one (nothing else may consume
                       hub.presence.* on it)`,
  async run(argv) {
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
    const { benchDefaults, runPresenceBench } = await import('../../bench/presence-bench.ts');
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
        console.error(
          `federation bench: ${flag} ${JSON.stringify(raw)} is invalid: expected ${min} to ${max}`,
        );
        return 2;
      }
      (opts as Record<string, unknown>)[key] = n;
    }
    const postgres = values['postgres-url'] ?? process.env.TEST_POSTGRES_URL;
    if (postgres) opts.postgresAdminUrl = postgres;
    if (values['nats-url']) opts.natsUrl = values['nats-url'];
    try {
      if (values.stages) {
        const { runStages } = await import('../../bench/stages.ts');
        console.log('presence stages, each alone:');
        console.log(JSON.stringify(await runStages(opts)));
        return 0;
      }
      const result = await runPresenceBench(opts);
      console.log(JSON.stringify(result));
      return 0;
    } catch (err) {
      console.error(`federation bench: ${(err as Error).message}`);
      return 1;
    }
  },
};
