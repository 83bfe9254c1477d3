import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { ActionResponder } from '../src/client/action-responder.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { SHARED_NATS_URL } from './helpers/nats-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST_INDEX = join(ROOT, 'web/dist/index.html');
const ADMIN = 'browser-admin-secret';
const SCREENSHOT = '/tmp/ecosystem.png';

/** The view is served from web/dist; `npm ci` builds it (prepare), a fresh checkout may not have it yet. */
function ensureViewBuilt(): void {
  if (existsSync(DIST_INDEX)) return;
  try {
    execFileSync('npx', ['vite', 'build', '--config', 'web/vite.config.ts', '--logLevel', 'warn'], {
      cwd: ROOT,
      stdio: 'pipe',
    });
  } catch (err) {
    throw new Error(
      `web/dist is missing and building it failed; run \`npm run build:web\`: ${(err as Error).message}`,
    );
  }
  if (!existsSync(DIST_INDEX)) throw new Error('web/dist/index.html is missing; run `npm run build:web`');
}

describe('ecosystem view in Chromium', () => {
  let app: App;
  let base: string;
  let nc: NatsConnection;
  let responder: ActionResponder;
  let context: BrowserContext;
  let page: Page;
  let userDataDir: string;
  const pageErrors: string[] = [];
  const alpha = { slug: uniqueSlug('alpha'), name: 'Alpha Console' };
  const beta = { slug: uniqueSlug('beta'), name: 'Beta Worker' };
  const gamma = { slug: uniqueSlug('gamma'), name: 'Gamma Archive' };
  const node = (slug: string) => page.locator(`.react-flow__node[data-id="${slug}"]`);

  async function call(method: string, path: string, body?: unknown): Promise<Response> {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status} ${await res.text()}`);
    return res;
  }

  const register = (p: { slug: string; name: string }, tags: string[], allow: string[] = []) =>
    call('POST', '/api/fed/projects', {
      slug: p.slug,
      name: p.name,
      hub_url: `http://127.0.0.1:9/${p.slug}`,
      mesh_namespace: `ns.${p.slug}`,
      tags,
      allow_fanout: allow,
    });

  const heartbeat = (p: { slug: string }, version: string) =>
    call('POST', '/api/fed/heartbeats', {
      project_slug: p.slug,
      hub_url: `http://127.0.0.1:9/${p.slug}`,
      mesh_namespace: `ns.${p.slug}`,
      timestamp: new Date().toISOString(),
      version,
    });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
    ensureViewBuilt();
    app = await buildTestApp({ NATS_URL: SHARED_NATS_URL, FED_ADMIN_TOKEN: ADMIN });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no TCP address');
    base = `http://127.0.0.1:${address.port}`;

    await register(alpha, ['core', 'api'], ['audit']);
    await register(beta, ['worker']);
    await register(gamma, ['core']);
    await heartbeat(alpha, '1.4.2');
    await call('POST', '/api/fed/edges', { from: alpha.slug, to: beta.slug, kind: 'api', strength: 0.9 });

    nc = await connect({ servers: SHARED_NATS_URL });
    responder = new ActionResponder({
      nc,
      slug: alpha.slug,
      meshNamespace: `ns.${alpha.slug}`,
      allowed: ['audit'],
    });
    responder.onAction('audit', () => ({ findings: 0 }));
    responder.start();

    userDataDir = mkdtempSync(join(tmpdir(), 'ecosystem-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
        '--disable-sync',
        '--disable-quic',
      ],
      viewport: { width: 1440, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  afterAll(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    await responder?.stop();
    await nc?.close();
    await app?.close();
  });

  it('draws every project with its name and status, and the edge between them', async () => {
    await page.goto(`${base}/ecosystem`);
    await node(gamma.slug).waitFor();
    // Alpha's heartbeat may land after the first fetch: then the live feed turns it green.
    await node(alpha.slug).locator('.status[data-status="online"]').waitFor();

    for (const [p, status] of [
      [alpha, 'online'],
      [beta, 'offline'],
      [gamma, 'offline'],
    ] as const) {
      const card = node(p.slug);
      expect(await card.locator('.card-name').textContent()).toBe(p.name);
      expect(await card.locator('.slug').textContent()).toBe(p.slug);
      expect((await card.locator('.status').textContent())?.trim()).toContain(status);
    }
    expect(await node(alpha.slug).locator('.version').textContent()).toBe('v1.4.2');
    expect(await node(alpha.slug).textContent()).toMatch(/♥ \d+s ago/);
    expect(await page.locator('[data-testid="summary"]').textContent()).toMatch(
      /3 projects.*1 online.*2 offline/,
    );

    // A straight edge has no height, which Playwright calls invisible: its label is what the user sees.
    await page.locator('.edge-label').first().waitFor();
    expect(await page.locator('.edge-label').first().textContent()).toBe('api');
    const edge = page.locator('.react-flow__edge');
    expect(await edge.count()).toBe(1);
    expect(await edge.getAttribute('aria-label')).toBe(`${alpha.slug} api ${beta.slug}`);
  });

  it('hides projects that the status filter leaves out, and their edges', async () => {
    await page.locator('label.chip-offline input').uncheck();
    await node(beta.slug).waitFor({ state: 'hidden' });
    await node(gamma.slug).waitFor({ state: 'hidden' });
    await page.locator('.react-flow__edge').first().waitFor({ state: 'detached' });
    await page.locator('.edge-label').first().waitFor({ state: 'detached' });
    expect(await node(alpha.slug).isVisible()).toBe(true);

    await page.locator('label.chip-offline input').check();
    await node(gamma.slug).waitFor();
    await page.getByLabel('Tag').selectOption('worker');
    await node(alpha.slug).waitFor({ state: 'hidden' });
    expect(await node(beta.slug).isVisible()).toBe(true);
    await page.getByLabel('Tag').selectOption('');
    await node(alpha.slug).waitFor();
    await node(gamma.slug).waitFor();
  });

  it('opens a details panel with a link to the project when a card is clicked', async () => {
    await node(alpha.slug).click();
    const panel = page.getByRole('complementary', { name: `Details of ${alpha.name}` });
    await panel.waitFor();
    const link = panel.getByRole('link', { name: "Open project's graph" });
    expect(await link.getAttribute('href')).toBe(`http://127.0.0.1:9/${alpha.slug}`);
    expect(await panel.textContent()).toContain('1.4.2');
    // The connection to beta is listed by name, and the status history has loaded.
    await panel.getByText(beta.name).waitFor();
    await panel.getByText(/uptime 1h/).waitFor();
    await page.screenshot({ path: SCREENSHOT });
  });

  it('shows a status change pushed over SSE without reloading the page', async () => {
    // These callbacks run in the page; the test's own tsconfig has no DOM types, hence globalThis.
    await page.evaluate(() => {
      (globalThis as unknown as { stillSamePage: boolean }).stillSamePage = true;
    });
    await node(gamma.slug).locator('.status[data-status="offline"]').waitFor();
    await heartbeat(gamma, '0.9.0');
    await node(gamma.slug).locator('.status[data-status="online"]').waitFor({ timeout: 10_000 });
    expect(
      await page.evaluate(() => (globalThis as unknown as { stillSamePage?: boolean }).stillSamePage),
    ).toBe(true);
    expect(await page.locator('[data-testid="summary"]').textContent()).toMatch(/2 online.*1 offline/);
  });

  it('runs "Audit all" after asking for the admin token and shows the counts', async () => {
    await page.getByRole('button', { name: 'Audit all' }).click();
    await page.getByLabel('Admin token').fill(ADMIN);
    await page.getByRole('button', { name: 'Run audit' }).click();
    await page.locator('.run-summary[data-run-status="done"]').waitFor();
    // Alpha answers; gamma is online now but does not allow the action.
    expect(await page.locator('.run-summary [data-outcome="ok"]').textContent()).toBe('ok 1');
    expect(await page.locator('.run-summary [data-outcome="not_allowed"]').textContent()).toBe(
      'not allowed 1',
    );
    const stored = await page.evaluate(() =>
      (
        globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }
      ).sessionStorage.getItem('federation.adminToken'),
    );
    expect(stored).toBe(ADMIN);
    expect(pageErrors).toEqual([]);
  });
});
