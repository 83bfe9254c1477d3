import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { ActionResponder } from '../src/client/action-responder.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { type Browser, ensureViewBuilt, launchBrowser } from './helpers/browser.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { waitFor } from './helpers/wait.ts';

const ADMIN = 'browser-admin-secret';
const SCREENSHOT = '/tmp/ecosystem.png';

describe('ecosystem view in Chromium', () => {
  let natsServer: TestNatsServer;
  let app: App;
  let base: string;
  let nc: NatsConnection;
  let responder: ActionResponder;
  let browser: Browser;
  let page: Page;
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
    // A NATS of its own: on the shared one, other files' apps in the queue group would take heartbeats.
    natsServer = await startNatsServer();
    ensureViewBuilt();
    app = await buildTestApp({ NATS_URL: natsServer.url, FED_ADMIN_TOKEN: ADMIN });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no TCP address');
    base = `http://127.0.0.1:${address.port}`;

    await register(alpha, ['core', 'api'], ['audit']);
    await register(beta, ['worker']);
    await register(gamma, ['core']);
    await heartbeat(alpha, '1.4.2');
    // The first fetch must already see alpha online with its version (SSE patches carry no version).
    await waitFor(
      async () => {
        const res = await call('GET', `/api/fed/projects/${alpha.slug}`);
        return ((await res.json()) as { status: string }).status === 'online';
      },
      { what: `${alpha.slug} online` },
    );
    await call('POST', '/api/fed/edges', { from: alpha.slug, to: beta.slug, kind: 'api', strength: 0.9 });

    nc = await connect({ servers: natsServer.url });
    responder = new ActionResponder({
      nc,
      slug: alpha.slug,
      meshNamespace: `ns.${alpha.slug}`,
      allowed: ['audit'],
    });
    responder.onAction('audit', () => ({ findings: 0 }));
    responder.start();

    browser = await launchBrowser();
    page = browser.page;
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  afterAll(async () => {
    await browser?.close();
    await responder?.stop();
    await nc?.close();
    await app?.close();
    await natsServer?.destroy();
  });

  it('draws every project with its name and status, and the edge between them', async () => {
    await page.goto(`${base}/ecosystem`);
    await node(gamma.slug).waitFor();

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

    // Keyboard: Escape closes the panel, Enter on a focused card opens it.
    await page.keyboard.press('Escape');
    await panel.waitFor({ state: 'detached' });
    await node(gamma.slug).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('complementary', { name: `Details of ${gamma.name}` }).waitFor();
    await page.keyboard.press('Escape');
  });

  it('shows a maintenance window on the card and in the details panel', async () => {
    const until = new Date(Date.now() + 3600_000).toISOString();
    await call('PUT', `/api/fed/projects/${beta.slug}/maintenance`, { until, reason: 'disk swap' });
    await page.reload();
    const badge = node(beta.slug).locator('.notice-maintenance');
    await badge.waitFor();
    expect(await badge.textContent()).toMatch(/maintenance until/);
    await node(beta.slug).click();
    const panel = page.getByRole('complementary', { name: `Details of ${beta.name}` });
    await panel.getByText('disk swap').waitFor();
    await page.keyboard.press('Escape');
    const ended = await fetch(`${base}/api/fed/projects/${beta.slug}/maintenance`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(ended.status).toBe(200);
    await page.reload();
    await node(beta.slug).waitFor();
    expect(await node(beta.slug).locator('.notice-maintenance').count()).toBe(0);
  });

  it('shows a status change pushed over SSE without reloading the page', async () => {
    // These callbacks run in the page; the test's own tsconfig has no DOM types, hence globalThis.
    await page.evaluate(() => {
      (globalThis as unknown as { stillSamePage: boolean }).stillSamePage = true;
    });
    await node(gamma.slug).locator('.status[data-status="offline"]').waitFor();
    await heartbeat(gamma, '0.9.0');
    await node(gamma.slug).locator('.status[data-status="online"]').waitFor({ timeout: 10_000 });
    expect(await node(gamma.slug).textContent()).toMatch(/♥ \d+s ago/);
    expect(
      await page.evaluate(() => (globalThis as unknown as { stillSamePage?: boolean }).stillSamePage),
    ).toBe(true);
    expect(await page.locator('[data-testid="summary"]').textContent()).toMatch(/2 online.*1 offline/);
  });

  it('runs "Audit all" after asking for the admin token and shows the counts', async () => {
    // Keep alpha online however long the earlier steps took on a busy machine.
    await heartbeat(alpha, '1.4.2');
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
  });

  it('shows an empty state, an error banner when the API is down, and asks for a read token on 401', async () => {
    const other = await browser.context.newPage();
    other.setDefaultTimeout(15_000);
    other.on('pageerror', (err) => pageErrors.push(err.message));
    let mode: 'empty' | 'down' | 'locked' = 'empty';
    const authSeen: Array<string | undefined> = [];
    await other.route('**/api/fed/graph', async (route) => {
      authSeen.push(route.request().headers().authorization);
      if (mode === 'down') return route.abort('connectionrefused');
      if (mode === 'locked' && route.request().headers().authorization !== 'Bearer reader') {
        return route.fulfill({
          status: 401,
          contentType: 'application/json',
          body: JSON.stringify({ error: 'unauthorized', message: 'reads need a token' }),
        });
      }
      return route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify({ nodes: [], edges: [] }),
      });
    });
    await other.goto(`${base}/ecosystem`);
    await other.getByTestId('empty-state').getByText('No projects yet').waitFor();

    mode = 'down';
    await other.reload();
    await other.getByRole('alert').getByText('Cannot reach the Federation API').waitFor();

    mode = 'locked';
    await other.getByRole('button', { name: 'Retry now' }).click();
    await other.getByLabel('Read token').fill('reader');
    await other.getByRole('button', { name: 'Use token' }).click();
    await other.getByTestId('empty-state').waitFor();
    expect(authSeen.at(-1)).toBe('Bearer reader');
    await other.close();
  });

  it('draws 10,000 projects and 20,000 edges as cards when asked, rendering only those on screen', async () => {
    const big = await browser.context.newPage();
    big.setDefaultTimeout(30_000);
    big.on('pageerror', (err) => pageErrors.push(err.message));
    const statuses = ['online', 'degraded', 'offline'] as const;
    const at = new Date().toISOString();
    const nodes = Array.from({ length: 10_000 }, (_, i) => ({
      id: i + 1,
      slug: `p-${String(i).padStart(5, '0')}`,
      name: `Project ${i}`,
      hub_url: `http://127.0.0.1:9/${i}`,
      mesh_namespace: `ns.p${i}`,
      status: statuses[i % 3],
      tags: [`team-${i % 20}`],
      last_heartbeat_at: at,
      created_at: at,
      updated_at: at,
      version: '1.0.0',
      heartbeat_age_s: i % 60,
      metrics: { 'audit.ok_count': { value: i, observed_at: at } },
    }));
    const edges = Array.from({ length: 20_000 }, (_, i) => ({
      id: i + 1,
      from: nodes[(i * 7) % nodes.length]?.slug,
      to: nodes[(i * 13 + 1 + (i % 7)) % nodes.length]?.slug,
      kind: 'api',
      strength: 0.5,
      source: 'api',
      details: null,
    }));
    const body = JSON.stringify({ nodes, edges });
    await big.route('**/api/fed/graph', (route) => route.fulfill({ contentType: 'application/json', body }));

    const t0 = performance.now();
    // Above 500 projects the page would show groups; group_by=none asks for every card.
    await big.goto(`${base}/ecosystem?group_by=none`);
    await big.locator('.react-flow__node').first().waitFor();
    const firstCardMs = Math.round(performance.now() - t0);
    expect(await big.getByTestId('summary').textContent()).toMatch(/^10,000 projects/);
    // The worker's layout arrives while the page stays usable.
    await big.locator('.react-flow[data-layout="layered"]').waitFor();
    const rendered = await big.locator('.react-flow__node').count();
    expect(rendered).toBeGreaterThan(0);
    expect(rendered).toBeLessThan(2_000);

    const t1 = performance.now();
    await big.locator('label.chip-offline input').uncheck();
    await big.getByText('6,667 of 10,000 cards shown').waitFor();
    const filterMs = Math.round(performance.now() - t1);
    expect(await big.locator('.react-flow__node[data-status="offline"]').count()).toBe(0);
    console.info(
      `10,000 projects: first card ${firstCardMs} ms, ${rendered} cards in the DOM, filter ${filterMs} ms`,
    );
    await big.close();
    expect(pageErrors).toEqual([]);
  });
});
