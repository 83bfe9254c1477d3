import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp } from './helpers/app.ts';
import {
  type Browser,
  ensureViewBuilt,
  launchBrowser,
  screenshotPath,
  seriousAxeViolations,
} from './helpers/browser.ts';
import { seedFleet } from './helpers/fleet.ts';

/**
 * The ecosystem view over a fleet above the grouping threshold (600 projects in 12 teams): the grouped
 * overview, one group opened, the problems list following heartbeats and deaths live, keyboard use and
 * axe-core. `UPDATE_SCREENSHOTS=1` writes the README's screenshots to docs/.
 */
/** The few DOM members the page callbacks read (the test's tsconfig has no DOM types). */
interface ElementLike {
  tagName: string;
  className: string;
  textContent: string | null;
  getAttribute(name: string): string | null;
}

describe('ecosystem view of a fleet, in Chromium', () => {
  let app: App;
  let base: string;
  let browser: Browser;
  let page: Page;
  let slug: (i: number) => string;
  const pageErrors: string[] = [];
  const update = process.env.UPDATE_SCREENSHOTS === '1';

  const beat = async (s: string, extra: Record<string, unknown> = {}) => {
    const res = await fetch(`${base}/api/fed/heartbeats`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        project_slug: s,
        hub_url: 'http://127.0.0.1:9/',
        mesh_namespace: `eu.${s}`,
        timestamp: new Date().toISOString(),
        ...extra,
      }),
    });
    if (res.status !== 202) throw new Error(`heartbeat ${s} → ${res.status} ${await res.text()}`);
  };
  const summary = () => page.getByTestId('summary');
  const problem = (s: string) => page.locator(`.problem[data-slug="${s}"]`);
  const group = (key: string) => page.locator(`.react-flow__node[data-group="${key}"]`);

  beforeAll(async () => {
    ensureViewBuilt();
    app = await buildTestApp({ FED_SWEEP_INTERVAL_S: '0.1' });
    ({ slugs: slug } = await seedFleet(app, { projects: 600, edges: 1200, teams: 12 }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no TCP address');
    base = `http://127.0.0.1:${address.port}`;
    browser = await launchBrowser();
    page = browser.page;
    page.setDefaultTimeout(20_000);
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it('shows groups, not 600 cards: each with its count and a bar of statuses, and bundled edges', async () => {
    await page.goto(`${base}/ecosystem`);
    await group('team-3').waitFor();
    expect(await page.locator('.react-flow__node[data-slug]').count()).toBe(0);
    // team-3 holds i ≡ 3 (mod 12): 50 projects, of which those ≡ 0 (mod 10) never beat.
    const card = group('team-3');
    expect(await card.locator('.group-count').textContent()).toMatch(/^50 projects/);
    expect(await card.locator('.status-counts').textContent()).toMatch(/online.*degraded.*offline/);
    expect(await summary().getAttribute('data-total')).toBe('600');
    expect(await summary().textContent()).toMatch(/600 projects · 528 online · 12 degraded · 60 offline/);
    await page.locator('.bundle-label').first().waitFor();
    expect(await page.locator('.bundle-label').first().textContent()).toMatch(/^\d+ × /);
    await page.locator('.react-flow[data-layout="elk"]').waitFor();
    await page.screenshot({ path: screenshotPath('ecosystem-overview.png', update) });
  });

  it('has no serious or critical axe-core violations in the overview', async () => {
    expect(await seriousAxeViolations(page)).toEqual([]);
  });

  it('opens a group: its projects as cards, with a stub for each group its edges lead to', async () => {
    await group('team-3').click();
    await page.getByTestId('open-group').getByText('team-3').waitFor();
    await page.locator(`.react-flow__node[data-slug="${slug(3)}"]`).waitFor();
    expect(new URL(page.url()).search).toBe('?group_by=tag&group=team-3');
    await page.locator('.react-flow__node[data-stub]').first().waitFor();
    await page.locator('.react-flow[data-layout="elk"]').waitFor();
    // Names are readable: the whole name is in the card, not cut to "Project te…".
    const name = await page.locator(`.react-flow__node[data-slug="${slug(3)}"] .card-name`);
    expect(await name.textContent()).toBe('Project team-3 3');
    expect(await name.getAttribute('title')).toBe('Project team-3 3');
    await page.screenshot({ path: screenshotPath('ecosystem-group.png', update) });
    expect(await seriousAxeViolations(page)).toEqual([]);

    await page.getByRole('button', { name: '← All groups' }).click();
    await group('team-3').waitFor();
  });

  it('lists problems first, and a pick opens the project’s group and its details', async () => {
    // The most recent change first: the seeded status_changed_at goes back one second per index.
    const first = page.locator('.problem').first();
    await first.waitFor();
    expect(await page.locator('.problems-title').textContent()).toMatch(/Problems \(72\)/);
    const s = slug(10);
    await problem(s).click();
    await page.getByTestId('open-group').getByText('team-10').waitFor();
    await page.getByRole('complementary', { name: 'Details of Project team-10 10' }).waitFor();
    await page.keyboard.press('Escape');
    await page.getByRole('button', { name: '← All groups' }).click();
    await group('team-3').waitFor();
  });

  it('follows a heartbeat and a death live: the list and the header counts move without a reload', async () => {
    const revived = slug(20);
    await problem(revived).waitFor();
    await beat(revived);
    await problem(revived).waitFor({ state: 'detached' });
    await page.locator('[data-testid="summary"][data-online="529"]').waitFor();

    // A project beating every 0.5 s is offline 1.5 s after its last beat.
    const dying = slug(1);
    await beat(dying, { interval_s: 0.5 });
    const row = page.locator(`.problem[data-slug="${dying}"][data-status="offline"]`);
    await row.waitFor();
    expect(await page.locator('.problem').first().getAttribute('data-slug')).toBe(dying);
    expect(await row.textContent()).toMatch(/no heartbeat for more than 1.5s/);
  });

  it('lets every control be reached with the keyboard, and Enter opens a group', async () => {
    await page.locator('body').click({ position: { x: 5, y: 5 } });
    const reached = new Set<string>();
    for (let i = 0; i < 150; i++) {
      await page.keyboard.press('Tab');
      reached.add(
        await page.evaluate(() => {
          const el = (globalThis as unknown as { document: { activeElement: ElementLike | null } }).document
            .activeElement;
          if (!el) return '';
          const label = el.getAttribute('aria-label') ?? '';
          return `${el.tagName}|${label}|${(el.textContent ?? '').trim().slice(0, 30)}|${el.className}`;
        }),
      );
    }
    const all = [...reached].join('\n');
    for (const want of [
      /^SELECT\|Group by\|/m,
      /^INPUT\|Find a group\|/m,
      /^INPUT\|\|/m, // the status chips
      /^BUTTON\|\|Audit all/m,
      /^BUTTON\|.*\|problem/m,
      /^DIV\|Group team-/m,
    ]) {
      expect(all).toMatch(want);
    }

    await group('team-5').focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('open-group').getByText('team-5').waitFor();
    await page.goBack();
    await group('team-5').waitFor();
    expect(pageErrors).toEqual([]);
  });
});
