/**
 * `npm run bench -- --startup`: how long the compiled command takes to answer `federation --help`,
 * and how long `npm start` takes until /api/fed/health answers on PGlite, against the same commands
 * under tsx (the baseline: what every start cost before dist/) and, as the ceiling, the least a
 * service on these parts can do: `node -e` importing Fastify and PGlite, opening the same database
 * and answering one route that queries it (a bare node:http server is printed as the floor).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/ports.ts';
import { startNatsServer } from './bench-infra.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin/federation.js');
const TSX_CLI = ['--import', 'tsx', join(ROOT, 'src/cli.ts')];
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const HELP_TARGET_MS = 300;
const READY_TARGET_MS = 1500;

const USAGE = `npm run bench -- --startup [--runs N]

Runs each command N times (default 7) and prints the median wall time:
  help: node bin/federation.js --help (dist/), the same under tsx, and node -e '' (the ceiling)
  ready: npm start, node bin/federation.js serve (dist/) and the same under tsx, each until
         GET /api/fed/health answers, on PGlite in a fresh directory initialised once beforehand,
         with a nats-server of its own. The ceiling: node -e importing Fastify and PGlite, opening
         the same database and answering GET /api/fed/health with a query (the least a service on
         these parts can do); the floor: a bare node:http server.
Targets: help <= ${HELP_TARGET_MS} ms, ready <= ${READY_TARGET_MS} ms. Needs dist/ (npm run build).`;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const round = (ms: number) => Math.round(ms);

/** Wall time from spawn until the process exits 0. */
function timeExit(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code === 0) resolve(performance.now() - t0);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n')[0]}`));
    });
  });
}

/** Wall time from spawn until GET http://127.0.0.1:<port><path> answers 200; then stops the process. */
async function timeReady(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  port: number,
  path = '/api/fed/health',
): Promise<number> {
  const t0 = performance.now();
  // detached: npm start runs node in a child of its own; the whole group gets the signal.
  const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (exited) throw new Error(`${cmd} ${args.join(' ')} exited before it was ready: ${stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`${cmd} ${args.join(' ')} not ready after 60 s`);
      const ok = await fetch(`http://127.0.0.1:${port}${path}`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return performance.now() - t0;
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    if (!exited && child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
    await gone;
    // npm exits before the server it started has closed: the next run must not be answered by it.
    const until = Date.now() + 20_000;
    while (
      Date.now() < until &&
      (await fetch(`http://127.0.0.1:${port}/`).then(
        () => true,
        () => false,
      ))
    )
      await new Promise((r) => setTimeout(r, 10));
  }
}

const BARE_SERVER = `require('node:http').createServer((q, s) => s.end('{"status":"ok"}')).listen(+process.env.PORT, '127.0.0.1')`;
// Both imports at once and the database opening while Fastify loads: the simplest fast way.
const FASTIFY_PGLITE_SERVER = `
const [{ default: Fastify }, { PGlite }] = await Promise.all([import('fastify'), import('@electric-sql/pglite')]);
const db = new PGlite(process.env.FED_DATA_DIR + '/pgdata');
const app = Fastify();
app.get('/api/fed/health', async () => { await db.query('select 1'); return { status: 'ok' }; });
await db.waitReady;
await app.listen({ port: +process.env.PORT, host: '127.0.0.1' });
process.on('SIGTERM', async () => { await app.close(); await db.close(); process.exit(0); });
`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { runs: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const runs = values.runs === undefined ? 7 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) {
    console.error(`bench: --runs ${JSON.stringify(values.runs)} is invalid: expected 1 to 100`);
    return 2;
  }
  if (!existsSync(join(ROOT, 'dist/cli.js'))) {
    console.error('bench: dist/cli.js is missing; run npm run build first');
    return 2;
  }
  const log = (l: string) => console.log(l);
  const loadBefore = os.loadavg();
  log(`startup: ${runs} runs each, median wall time; load average ${loadBefore.map((l) => l.toFixed(2))}`);

  const help = { dist: [] as number[], tsx: [] as number[], node: [] as number[] };
  for (let i = 0; i < runs; i++) {
    // Interleaved, so a burst of load on the machine hits every variant alike.
    help.dist.push(await timeExit(process.execPath, [BIN, '--help']));
    help.tsx.push(await timeExit(process.execPath, [...TSX_CLI, '--help']));
    help.node.push(await timeExit(process.execPath, ['-e', '']));
  }
  const helpMs = { dist: median(help.dist), tsx: median(help.tsx), node: median(help.node) };
  log(
    `  federation --help   dist ${round(helpMs.dist)} ms   tsx ${round(helpMs.tsx)} ms (${(helpMs.tsx / helpMs.dist).toFixed(1)}x slower)   ceiling node -e '' ${round(helpMs.node)} ms (dist/ceiling ${(helpMs.dist / helpMs.node).toFixed(2)})   target <= ${HELP_TARGET_MS} ms`,
  );

  const nats = await startNatsServer();
  const dataDir = mkdtempSync(join(os.tmpdir(), 'fed-startup-'));
  try {
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      FED_DATA_DIR: dataDir,
      NATS_URL: nats.url,
      LOG_LEVEL: 'warn',
    };
    delete env.DATABASE_URL;
    // The first start creates the PGlite cluster and applies the migrations; measured once, apart.
    const firstMs = await timeReady(process.execPath, [BIN, 'serve'], env, port);
    log(`  first start (creates the PGlite database, migrates): ${round(firstMs)} ms`);
    const ready = {
      npm: [] as number[],
      dist: [] as number[],
      tsx: [] as number[],
      ceiling: [] as number[],
      bare: [] as number[],
    };
    for (let i = 0; i < runs; i++) {
      ready.npm.push(await timeReady(NPM, ['start', '--silent'], env, port));
      ready.dist.push(await timeReady(process.execPath, [BIN, 'serve'], env, port));
      ready.tsx.push(await timeReady(process.execPath, [...TSX_CLI, 'serve'], env, port));
      ready.ceiling.push(
        await timeReady(process.execPath, ['--input-type=module', '-e', FASTIFY_PGLITE_SERVER], env, port),
      );
      ready.bare.push(await timeReady(process.execPath, ['-e', BARE_SERVER], env, port, '/'));
    }
    const readyMs = {
      npm: median(ready.npm),
      dist: median(ready.dist),
      tsx: median(ready.tsx),
      ceiling: median(ready.ceiling),
      bare: median(ready.bare),
    };
    const ratio = readyMs.npm / readyMs.ceiling;
    log(
      `  ready after start   npm start ${round(readyMs.npm)} ms   node bin ${round(readyMs.dist)} ms   tsx ${round(readyMs.tsx)} ms (${(readyMs.tsx / readyMs.dist).toFixed(1)}x slower)   target <= ${READY_TARGET_MS} ms`,
    );
    log(
      `  ceiling             node -e Fastify + PGlite ${round(readyMs.ceiling)} ms (npm start/ceiling ${ratio.toFixed(2)})   floor bare node:http ${round(readyMs.bare)} ms`,
    );
    const load = os.loadavg();
    log(`  load average after: ${load.map((l) => l.toFixed(2))} (${os.cpus().length} cores)`);
    console.log(
      JSON.stringify({
        bench: 'startup',
        runs,
        help_ms: round(helpMs.dist),
        help_tsx_ms: round(helpMs.tsx),
        help_ceiling_ms: round(helpMs.node),
        help_ratio_tsx: Number((helpMs.tsx / helpMs.dist).toFixed(2)),
        help_target_ms: HELP_TARGET_MS,
        ready_npm_start_ms: round(readyMs.npm),
        ready_ms: round(readyMs.dist),
        ready_tsx_ms: round(readyMs.tsx),
        ready_ceiling_ms: round(readyMs.ceiling),
        ready_ratio_ceiling: Number(ratio.toFixed(2)),
        ready_floor_ms: round(readyMs.bare),
        ready_ratio_tsx: Number((readyMs.tsx / readyMs.dist).toFixed(2)),
        ready_target_ms: READY_TARGET_MS,
        first_start_ms: round(firstMs),
        loadavg_before: loadBefore.map((l) => Number(l.toFixed(2))),
        loadavg: load.map((l) => Number(l.toFixed(2))),
      }),
    );
    return 0;
  } finally {
    await nats.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
