/**
 * `npm run bench -- --view`: the ecosystem view in real Chromium over a real app on PostgreSQL, at
 * 1,000 + 2,000, 10,000 + 20,000 (cards) and 100,000 + 200,000 (grouped) projects + edges; beside each,
 * the ceiling: a bare React Flow page (web/bare) with the same nodes and no app logic.
 */

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Page } from 'playwright-core';
import { build } from 'vite';
import { type App, buildApp } from '../src/app.ts';
import { testConfig } from '../src/config.ts';
import { launchBrowser } from '../test/helpers/browser.ts';
import { seedFleet } from '../test/helpers/fleet.ts';
import { createDatabase, DEFAULT_POSTGRES_ADMIN_URL } from './bench-infra.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHANGES = 100;

const USAGE = `npm run bench -- --view [--quick] [--sizes 1000,10000,100000] [--postgres-url URL]

Seeds a fresh PostgreSQL database with N projects and 2N edges, serves the real app and opens
/ecosystem in Debian's Chromium: cards (group_by=none) up to 10,000 projects, groups above. Measures
first_paint_ms (first node visible, from navigation start), changes_painted_ms (100 heartbeats of
offline projects → the header shows 100 more online, through the sweeper and SSE), filter_ms (typing
in Find → the shown count updated), longest_task_ms (PerformanceObserver longtask after first paint)
and js_heap_mb; then the same nodes on a bare React Flow page (the ceiling). The last line is JSON.`;

interface Figures {
  page: 'app' | 'bare';
  mode: 'cards' | 'grouped';
  view_projects: number;
  view_edges: number;
  first_paint_ms: number;
  changes_painted_ms: number;
  filter_ms: number;
  longest_task_ms: number;
  js_heap_mb: number;
  layout_ms?: number;
  layout_engine?: string;
}

/** Watches for the first node and records long tasks; installed before any script of the page runs. */
const INIT_SCRIPT = `
  window.__longTasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push({ start: e.startTime, ms: e.duration });
    }).observe({ type: 'longtask', buffered: true });
  } catch {}
  const seen = () => {
    if (window.__firstNode === undefined && document.querySelector('.react-flow__node')) {
      window.__firstNode = performance.now();
    }
  };
  new MutationObserver(seen).observe(document, { childList: true, subtree: true });
`;

type Win = {
  __firstNode?: number;
  __longTasks: Array<{ start: number; ms: number }>;
  __layout?: { done: number; ms: number; engine: string };
  __bare?: { setLabels(ids: string[], s: string): void; filter(q: string): void; shown: number };
  __t?: number;
};
// The page's globals, as the bench reads them in page callbacks (its tsconfig has no DOM types).
type PageGlobals = Win & {
  document: {
    querySelector(s: string): { getAttribute(a: string): string | null; textContent: string | null } | null;
    querySelectorAll(s: string): ArrayLike<{ textContent: string | null }>;
  };
};

async function heapMb(page: Page): Promise<number> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage');
  await cdp.send('Performance.enable');
  const { metrics } = await cdp.send('Performance.getMetrics');
  await cdp.detach();
  const used = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? 0;
  return Math.round((used / 1024 / 1024) * 10) / 10;
}

const longest = (tasks: Array<{ start: number; ms: number }>, after: number) =>
  Math.round(Math.max(0, ...tasks.filter((t) => t.start >= after).map((t) => t.ms)));

/** The figures of one page once its last action settled: long tasks after first paint and the heap. */
async function settle(
  page: Page,
  which: Figures['page'],
  m: { n: number; e: number; grouped: boolean; firstPaint: number; changes: number; filter: number },
): Promise<Figures> {
  await page.waitForTimeout(500);
  const tasks = await page.evaluate(() => (globalThis as unknown as PageGlobals).__longTasks);
  return {
    page: which,
    mode: m.grouped ? 'grouped' : 'cards',
    view_projects: m.n,
    view_edges: m.e,
    first_paint_ms: Math.round(m.firstPaint),
    changes_painted_ms: Math.round(m.changes),
    filter_ms: Math.round(m.filter),
    longest_task_ms: longest(tasks, m.firstPaint),
    js_heap_mb: await heapMb(page),
  };
}

/** Static files of the bare page, and /api/* forwarded to the app. */
function bareServer(dir: string, api: string): Promise<{ url: string; server: Server }> {
  const types: Record<string, string> = {
    '.html': 'text/html',
    '.js': 'text/javascript',
    '.css': 'text/css',
  };
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith('/api/')) {
      const r = await fetch(`${api}${req.url}`);
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
      res.end(Buffer.from(await r.arrayBuffer()));
      return;
    }
    try {
      const file = join(dir, path === '/' ? 'index.html' : path);
      const body = readFileSync(file);
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      resolve({ url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, server });
    }),
  );
}

async function measureApp(
  page: Page,
  base: string,
  app: App,
  n: number,
  e: number,
  offline: string[],
): Promise<Figures> {
  const grouped = n > 10_000;
  await page.goto(`${base}/ecosystem${grouped ? '' : '?group_by=none'}`);
  await page.locator('.react-flow__node').first().waitFor({ timeout: 120_000 });
  const firstPaint = await page.evaluate(
    () => (globalThis as unknown as PageGlobals).__firstNode ?? Number.NaN,
  );
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).__layout !== undefined, null, {
    timeout: 120_000,
  });
  await page.waitForTimeout(1500);
  const layout = await page.evaluate(() => (globalThis as unknown as PageGlobals).__layout);

  const online = Number(await page.getByTestId('summary').getAttribute('data-online'));
  const t0 = await page.evaluate(() => performance.now());
  await Promise.all(
    offline.slice(0, CHANGES).map((slug) =>
      app.inject({
        method: 'POST',
        url: '/api/fed/heartbeats',
        payload: {
          project_slug: slug,
          hub_url: 'http://127.0.0.1:9/',
          mesh_namespace: `eu.${slug}`,
          timestamp: new Date().toISOString(),
        },
      }),
    ),
  );
  await page.waitForFunction(
    (want) => {
      const w = globalThis as unknown as PageGlobals;
      const ok =
        w.document.querySelector('[data-testid="summary"]')?.getAttribute('data-online') === String(want);
      if (ok) w.__t = performance.now();
      return ok;
    },
    online + CHANGES,
    { polling: 'raf', timeout: 60_000 },
  );
  const changes = (await page.evaluate(() => (globalThis as unknown as PageGlobals).__t ?? Number.NaN)) - t0;

  const before = await page.getByTestId('shown').textContent();
  const f0 = await page.evaluate(() => performance.now());
  await page.locator('.toolbar input[type="search"]').fill(grouped ? 'team-3' : 'team-3 3');
  await page.waitForFunction(
    (prev) => {
      const w = globalThis as unknown as PageGlobals;
      const ok = w.document.querySelector('[data-testid="shown"]')?.textContent !== prev;
      if (ok) w.__t = performance.now();
      return ok;
    },
    before,
    { polling: 'raf', timeout: 60_000 },
  );
  const filter = (await page.evaluate(() => (globalThis as unknown as PageGlobals).__t ?? Number.NaN)) - f0;
  return {
    ...(await settle(page, 'app', { n, e, grouped, firstPaint, changes, filter })),
    ...(layout ? { layout_ms: layout.ms, layout_engine: layout.engine } : {}),
  };
}

async function measureBare(
  page: Page,
  bare: string,
  n: number,
  e: number,
  slugs: string[],
): Promise<Figures> {
  const grouped = n > 10_000;
  await page.goto(`${bare}/${grouped ? '?graph=/api/fed/graph%3Fgroup_by%3Dtag' : ''}`);
  await page.locator('.react-flow__node').first().waitFor({ timeout: 120_000 });
  const firstPaint = await page.evaluate(
    () => (globalThis as unknown as PageGlobals).__firstNode ?? Number.NaN,
  );
  await page.waitForTimeout(1000);
  const ids = grouped ? ['team-1', 'team-2'] : slugs.slice(0, CHANGES);
  // Done when the predicate holds in a frame: the label shows the change, the shown count moved.
  const time = async (act: () => Promise<unknown>, done: 'labelled' | 'filtered') => {
    const shown = await page.evaluate(() => (globalThis as unknown as PageGlobals).__bare?.shown ?? -1);
    const t0 = await page.evaluate(() => performance.now());
    await act();
    await page.waitForFunction(
      ({ what, before }) => {
        const w = globalThis as unknown as PageGlobals;
        const ok =
          what === 'labelled'
            ? Array.from(w.document.querySelectorAll('.react-flow__node')).some((n) =>
                (n.textContent ?? '').includes('✓'),
              )
            : (w.__bare?.shown ?? before) !== before;
        if (ok) w.__t = performance.now();
        return ok;
      },
      { what: done, before: shown },
      { polling: 'raf', timeout: 60_000 },
    );
    return (await page.evaluate(() => (globalThis as unknown as PageGlobals).__t ?? Number.NaN)) - t0;
  };
  const changes = await time(
    () => page.evaluate((x) => (globalThis as unknown as PageGlobals).__bare?.setLabels(x, '✓'), ids),
    'labelled',
  );
  const filter = await time(
    () =>
      page.evaluate(
        (q) => (globalThis as unknown as PageGlobals).__bare?.filter(q),
        grouped ? 'team-3' : 'team-3 3',
      ),
    'filtered',
  );
  return settle(page, 'bare', { n, e, grouped, firstPaint, changes, filter });
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      sizes: { type: 'string' },
      'postgres-url': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const sizes = (values.sizes ?? (values.quick ? '1000,10000' : '1000,10000,100000')).split(',').map(Number);
  if (sizes.some((s) => !Number.isInteger(s) || s < 10 || s > 1_000_000)) {
    console.error(
      `bench: --sizes ${JSON.stringify(values.sizes)} is invalid: expected integers from 10 to 1000000`,
    );
    return 2;
  }
  const adminUrl = values['postgres-url'] ?? process.env.TEST_POSTGRES_URL ?? DEFAULT_POSTGRES_ADMIN_URL;
  const bareDir = mkdtempSync(join(tmpdir(), 'bare-flow-'));
  await build({
    root: join(ROOT, 'web/bare'),
    base: '/',
    logLevel: 'error',
    build: { outDir: bareDir, emptyOutDir: true, reportCompressedSize: false, chunkSizeWarningLimit: 4096 },
  });
  const loadStart = loadavg();
  console.log(
    `view bench: sizes ${sizes.join(', ')}; load average ${loadStart.map((l) => l.toFixed(2)).join(' ')}`,
  );
  const runs: Figures[] = [];
  const browser = await launchBrowser();
  const { context } = browser;
  await context.addInitScript(INIT_SCRIPT);
  try {
    for (const n of sizes) {
      const edges = n * 2;
      const db = await createDatabase(adminUrl);
      const app = await buildApp({
        config: testConfig({ DATABASE_URL: db.url, FED_OFFLINE_AFTER_S: '3600', FED_DEGRADED_AFTER_S: '0' }),
        logger: false,
      });
      let bare: { url: string; server: Server } | undefined;
      try {
        const t0 = Date.now();
        const { slugs } = await seedFleet(app, { projects: n, edges, offlineEvery: 10 });
        console.log(`${n} projects and ${edges} edges seeded in ${Date.now() - t0} ms`);
        await app.listen({ host: '127.0.0.1', port: 0 });
        const a = app.server.address();
        const base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
        const offline = Array.from({ length: CHANGES }, (_, i) => slugs(i * 10));
        const page = await context.newPage();
        const figures = await measureApp(page, base, app, n, edges, offline);
        await page.close();
        console.log(JSON.stringify(figures));
        runs.push(figures);
        bare = await bareServer(bareDir, base);
        const barePage = await context.newPage();
        const ceiling = await measureBare(
          barePage,
          bare.url,
          n,
          edges,
          Array.from({ length: CHANGES }, (_, i) => slugs(i)),
        );
        await barePage.close();
        console.log(JSON.stringify(ceiling));
        runs.push(ceiling);
      } finally {
        bare?.server.close();
        await app.close();
        await db.drop();
      }
    }
  } finally {
    await browser.close();
    rmSync(bareDir, { recursive: true, force: true });
  }
  // Each figure of the app over the same figure of the bare page, measured in this run (1 = the ceiling).
  const ratio = (a: number, b: number) => Math.round((a / Math.max(1, b)) * 100) / 100;
  const ratios = sizes.map((n) => {
    const appRun = runs.find((r) => r.page === 'app' && r.view_projects === n);
    const bareRun = runs.find((r) => r.page === 'bare' && r.view_projects === n);
    const of = (
      k: 'first_paint_ms' | 'changes_painted_ms' | 'filter_ms' | 'longest_task_ms' | 'js_heap_mb',
    ) => (appRun && bareRun ? ratio(appRun[k], bareRun[k]) : null);
    return {
      view_projects: n,
      first_paint_ratio: of('first_paint_ms'),
      changes_painted_ratio: of('changes_painted_ms'),
      filter_ratio: of('filter_ms'),
      longest_task_ratio: of('longest_task_ms'),
      js_heap_ratio: of('js_heap_mb'),
    };
  });
  for (const r of ratios) console.log(`ratios app/bare at ${r.view_projects}: ${JSON.stringify(r)}`);
  console.log(
    JSON.stringify({
      runs,
      ratios,
      targets: { first_paint_ms: 2000, changes_painted_ms: 1000, filter_ms: 300, longest_task_ms: 200 },
      loadavg_start: loadStart,
      loadavg_end: loadavg(),
    }),
  );
  return 0;
}
