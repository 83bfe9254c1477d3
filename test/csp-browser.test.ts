import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { type Browser, ensureViewBuilt, launchBrowser } from './helpers/browser.ts';
import { heartbeatPayload } from './helpers/presence.ts';

/**
 * The ecosystem view and the docs UI work under the Content-Security-Policy the service sends: the
 * browser reports no violation and both pages draw what a user comes for.
 */
describe('the CSP leaves the view and the docs working (Chromium)', () => {
  let app: App;
  let base: string;
  let browser: Browser;
  let page: Page;
  const violations: string[] = [];
  const slug = uniqueSlug('csp');

  beforeAll(async () => {
    ensureViewBuilt();
    app = await buildTestApp();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no TCP address');
    base = `http://127.0.0.1:${address.port}`;
    const hb = await app.inject({
      method: 'POST',
      url: '/api/fed/heartbeats',
      payload: heartbeatPayload(slug),
    });
    expect(hb.statusCode).toBe(202);
    await app.heartbeatWriter.flush();

    browser = await launchBrowser();
    // Every violation fires this DOM event; the console message alone can be missed on navigation.
    await browser.context.addInitScript({
      content: `document.addEventListener('securitypolicyviolation', (e) => {
        console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI);
      });`,
    });
    page = browser.page;
    page.setDefaultTimeout(15_000);
    page.on('console', (msg) => {
      const text = msg.text();
      if (/Content Security Policy|CSP violation/i.test(text)) violations.push(text);
    });
    page.on('pageerror', (err) => violations.push(`page error: ${err.message}`));
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it('serves the ecosystem page under the CSP, drawing the project', async () => {
    const res = await page.goto(`${base}/ecosystem`);
    expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.locator(`.react-flow__node[data-id="${slug}"]`).waitFor();
    expect(await page.locator(`.react-flow__node[data-id="${slug}"] .slug`).textContent()).toBe(slug);
    expect(violations).toEqual([]);
  });

  it('serves the docs UI under the CSP, listing the operations', async () => {
    const res = await page.goto(`${base}/api/fed/docs/`);
    expect(res?.headers()['content-security-policy']).toContain("default-src 'self'");
    await page.locator('.opblock-summary-path').first().waitFor();
    const paths = await page.locator('.opblock-summary-path').allTextContents();
    expect(paths.join(' ')).toContain('/api/fed/projects');
    expect(violations).toEqual([]);
  });

  it('would see a violation if the policy blocked something (the check can fail)', async () => {
    await page.goto(`${base}/ecosystem`);
    await page.evaluate(`(() => {
      const s = document.createElement('script');
      s.textContent = 'window.__inline = 1';
      document.body.appendChild(s);
    })()`);
    await expect.poll(() => violations.length).toBeGreaterThan(0);
    expect(await page.evaluate('window.__inline')).toBeUndefined();
    violations.length = 0;
  });
});
