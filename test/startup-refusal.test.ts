import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = resolve(import.meta.dirname, '../bin/federation.js');
const dir = mkdtempSync(join(tmpdir(), 'fed-refusal-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `federation serve` as a user would; it must refuse before binding anything. */
function serve(env: Record<string, string>) {
  const r = spawnSync(process.execPath, [BIN, 'serve'], {
    env: { PATH: process.env.PATH, DATABASE_URL: 'memory://', NATS_URL: 'none', PORT: '0', ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, stderr: r.stderr.trim(), stdout: r.stdout };
}

describe('federation serve refuses to start on bad configuration', () => {
  it.each([
    [{ PORT: 'eighty' }, 'federation: PORT="eighty" is invalid: expected an integer from 0 to 65535'],
    [{ FED_OFFLINE_AFTER_S: 'soon' }, 'federation: FED_OFFLINE_AFTER_S="soon" is invalid'],
    [{ HOST: '0.0.0.0' }, 'federation: HOST=0.0.0.0 is not a loopback address: set FED_ADMIN_TOKEN'],
    [{ DATABASE_URL: 'mysql://db' }, 'federation: DATABASE_URL is invalid'],
  ])('%o → exit 2 with one line naming the variable', (env, line) => {
    const r = serve(env);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(line);
  });

  it('a bad projects.yaml → exit 2 naming the file, the entry and the field', () => {
    const file = join(dir, 'projects.yaml');
    writeFileSync(
      file,
      'projects:\n  - slug: good\n    name: Good\n    hub_url: http://localhost:1\n  - slug: broken\n    name: Broken\n    hub_url: not-a-url\n',
    );
    const r = serve({ FED_PROJECTS_FILE: file });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: projects[1] (slug broken) field hub_url`);
  });

  it('a missing projects.yaml → exit 2 naming the file', () => {
    const r = serve({ FED_PROJECTS_FILE: join(dir, 'absent.yaml') });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('absent.yaml: cannot read projects file (FED_PROJECTS_FILE)');
  });

  it('--help explains each command', () => {
    for (const cmd of ['serve', 'migrate', 'projects']) {
      const r = spawnSync(process.execPath, [BIN, cmd, '--help'], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`federation ${cmd}`);
    }
    const top = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
    expect(top.stdout).toMatch(/serve\s+run the Federation Service/);
  });
});
