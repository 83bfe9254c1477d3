import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIST_INDEX = join(ROOT, 'web/dist/index.html');

/** The view is served from web/dist; `npm ci` builds it (prepare), a fresh checkout may not have it yet. */
export function ensureViewBuilt(): void {
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

export interface Browser {
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

/** Debian's Chromium, headless, with a throwaway profile (no tool downloads a browser here). */
export async function launchBrowser(viewport = { width: 1440, height: 900 }): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const userDataDir = mkdtempSync(join(tmpdir(), 'ecosystem-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
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
    viewport,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown[] }>;
}

const AXE_SOURCE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/** Runs axe-core (WCAG 2 A and AA rules) in the page; returns the serious and critical violations. */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  // Evaluated over the DevTools protocol, not as a <script> tag: the page's CSP (script-src 'self')
  // rightly refuses inline scripts, and the test must not weaken it.
  await page.evaluate(readFileSync(AXE_SOURCE, 'utf8'));
  const violations = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(o: unknown): Promise<{ violations: unknown[] }> } })
      .axe;
    const result = await axe.run({
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return result.violations;
  });
  return (violations as AxeViolation[]).filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Screenshots for the README are written to docs/ only when asked (UPDATE_SCREENSHOTS=1), else to tmp. */
export function screenshotPath(name: string, update: boolean): string {
  return update ? join(ROOT, 'docs', name) : join(tmpdir(), name);
}
