import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from './types.ts';

const BENCH_ENTRY = fileURLToPath(new URL('../../bench/index.ts', import.meta.url));

/**
 * `federation bench` runs the benchmarks of a source checkout in a process of their own: the
 * production CLI never imports the harness (bench/ depends on the app, not the other way).
 */
export const benchCommand: Command = {
  summary: 'run the benchmarks of a source checkout (the same as npm run bench)',
  usage: `federation bench [options]

Runs bench/index.ts (a source checkout only; the benchmarks do not ship). Every option is passed on:
federation bench --help lists them, bench/README.md explains the figures.`,
  async run(argv) {
    if (!existsSync(BENCH_ENTRY)) {
      console.error('federation bench: the benchmarks ship only with a source checkout (bench/index.ts)');
      return 2;
    }
    const child = spawn(process.execPath, ['--import', 'tsx', BENCH_ENTRY, ...argv], { stdio: 'inherit' });
    return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  },
};
