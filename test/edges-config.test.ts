import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import type { EdgeResponse } from '../src/edges/schemas.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { createPostgresDatabase, type TestDatabase } from './helpers/postgres.ts';

const ADMIN = 'edges-config-token';
const auth = { authorization: `Bearer ${ADMIN}` };

/** projects.yaml edges on real PostgreSQL, across restarts that change the file. */
describe('edges from projects.yaml', () => {
  let database: TestDatabase;
  let dir: string;
  const [a, b, c] = [uniqueSlug('ca'), uniqueSlug('cb'), uniqueSlug('cc')];

  const writeFile = (edges: string): string => {
    const path = join(dir, `projects-${uniqueSlug('f')}.yaml`);
    const projects = [a, b, c]
      .map((s) => `  - slug: ${s}\n    name: Project ${s}\n    hub_url: http://${s}.local:8000\n`)
      .join('');
    writeFileSync(path, `projects:\n${projects}edges:\n${edges}`);
    return path;
  };
  const start = (file: string): Promise<App> =>
    buildTestApp({ DATABASE_URL: database.url, FED_PROJECTS_FILE: file, FED_ADMIN_TOKEN: ADMIN });
  const edgesOf = async (app: App): Promise<EdgeResponse[]> =>
    (await app.inject({ method: 'GET', url: '/api/fed/edges' })).json<EdgeResponse[]>();
  const key = (e: EdgeResponse) => `${e.from}>${e.to}:${e.kind}:${e.source}`;

  beforeAll(async () => {
    database = await createPostgresDatabase();
    dir = mkdtempSync(join(tmpdir(), 'fed-edges-'));
  });
  afterAll(async () => {
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loads the edges at start, keeps the file declarative and never touches api or discovered edges', async () => {
    let app = await start(
      writeFile(
        `  - {from: ${a}, to: ${b}, kind: api, strength: 0.9, details: {path: /v1/graph}}\n` +
          `  - {from: ${b}, to: ${c}, kind: queue}\n` +
          `  - {from: ${c}, to: ${a}, kind: shared-schema}\n`,
      ),
    );
    try {
      const loaded = await edgesOf(app);
      expect(loaded.map(key).sort()).toEqual(
        [`${a}>${b}:api:config`, `${b}>${c}:queue:config`, `${c}>${a}:shared-schema:config`].sort(),
      );
      expect(loaded.find((e) => e.from === a)).toMatchObject({
        strength: 0.9,
        details: { path: '/v1/graph' },
      });
      expect(loaded.find((e) => e.from === b)).toMatchObject({ strength: 0.5, details: null });

      // The operator takes c>a over through the API; a heartbeat reports a>c.
      const taken = await app.inject({
        method: 'POST',
        url: '/api/fed/edges',
        headers: auth,
        payload: { from: c, to: a, kind: 'shared-schema', strength: 0.2 },
      });
      expect(taken.statusCode).toBe(200);
      await app.integrationSinks[0]?.([
        { slug: a, integrations: [{ to: c, kind: 'event' }], at: new Date() },
      ]);
    } finally {
      await app.close();
    }

    // Next start: a>b is gone from the file, b>c changes, c>a is dropped (but the API owns it now),
    // and the discovered a>c is now declared.
    app = await start(
      writeFile(
        `  - {from: ${b}, to: ${c}, kind: queue, strength: 0.3}\n  - {from: ${a}, to: ${c}, kind: event}\n`,
      ),
    );
    try {
      const after = await edgesOf(app);
      expect(after.map(key).sort()).toEqual(
        [`${b}>${c}:queue:config`, `${c}>${a}:shared-schema:api`, `${a}>${c}:event:config`].sort(),
      );
      expect(after.find((e) => e.from === b)?.strength).toBe(0.3);
      expect(after.find((e) => e.from === c)?.strength).toBe(0.2);
    } finally {
      await app.close();
    }

    // An empty edges list removes the remaining config edges; the api edge stays.
    app = await start(writeFile('  []\n'));
    try {
      expect((await edgesOf(app)).map(key)).toEqual([`${c}>${a}:shared-schema:api`]);
    } finally {
      await app.close();
    }
  });

  it('stops start-up when an edge names a project the file does not list', async () => {
    const ghost = uniqueSlug('ghost');
    await expect(start(writeFile(`  - {from: ${a}, to: ${ghost}, kind: api}\n`))).rejects.toThrow(
      /edges\[0\] field to: project .* is not listed/,
    );
  });
});
