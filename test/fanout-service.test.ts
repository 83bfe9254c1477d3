import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DatabaseHandle, openDatabase } from '../src/db/connection.ts';
import { FanoutService } from '../src/fanout/fanout-service.ts';
import { ENGINES, type TestDatabase } from './helpers/postgres.ts';

for (const engine of ENGINES) {
  describe(`FanoutService on ${engine.name}`, () => {
    let testDb: TestDatabase;
    let handle: DatabaseHandle;
    let service: FanoutService;

    beforeAll(async () => {
      testDb = await engine.create();
      handle = await openDatabase({ databaseUrl: testDb.url, dataDir: '/nonexistent' });
      await handle.migrate();
      service = new FanoutService({ db: handle.db });
    });
    afterAll(async () => {
      await handle?.close();
      await testDb?.drop();
    });

    const newRun = (createdAt: Date, timeoutMs = 5000) => ({
      id: randomUUID(),
      action: 'audit',
      targets: { tags: ['python'] },
      params: { depth: 2 },
      timeoutMs,
      createdAt,
    });

    it('stores a run, records answers once and finishes with pending turned timeout', async () => {
      const run = newRun(new Date());
      await service.createRun(run, [
        { slug: 'a', outcome: 'pending', durationMs: null },
        { slug: 'b', outcome: 'pending', durationMs: null },
        { slug: 'c', outcome: 'pending', durationMs: null },
        { slug: 'd', outcome: 'not_allowed', error: 'not allowed', durationMs: null },
      ]);
      let view = await service.getRun(run.id);
      expect(view.status).toBe('running');
      expect(view.params).toEqual({ depth: 2 });
      expect(view.counts).toMatchObject({ pending: 3, not_allowed: 1, ok: 0 });

      await service.recordResults(run.id, [
        { slug: 'a', outcome: 'ok', result: { findings: [1, 'two'] }, durationMs: 12 },
        { slug: 'd', outcome: 'ok', durationMs: 1 },
      ]);
      await service.finishRun(
        run.id,
        [{ slug: 'b', outcome: 'error', error: 'boom', durationMs: 30 }],
        new Date(),
      );
      view = await service.getRun(run.id);
      expect(view.status).toBe('done');
      expect(view.finishedAt).toBeInstanceOf(Date);
      expect(view.results).toEqual([
        { slug: 'a', outcome: 'ok', result: { findings: [1, 'two'] }, durationMs: 12 },
        { slug: 'b', outcome: 'error', error: 'boom', durationMs: 30 },
        { slug: 'c', outcome: 'timeout', error: expect.any(String), durationMs: null },
        // Already decided, so the later write does not overwrite it.
        { slug: 'd', outcome: 'not_allowed', error: 'not allowed', durationMs: null },
      ]);
      expect(view.counts).toEqual({ ok: 1, error: 1, timeout: 1, not_allowed: 1, offline: 0, pending: 0 });
    });

    it('finishes only runs abandoned past their deadline', async () => {
      const now = new Date();
      const abandoned = newRun(new Date(now.getTime() - 60_000), 1000);
      const live = newRun(new Date(now.getTime() - 2000), 30_000);
      for (const r of [abandoned, live]) {
        await service.createRun(r, [{ slug: 'x', outcome: 'pending', durationMs: null }]);
      }
      const finished = await service.finishAbandonedRuns(now, 10_000);
      expect(finished).toContain(abandoned.id);
      expect(finished).not.toContain(live.id);
      const a = await service.getRun(abandoned.id);
      expect(a.status).toBe('done');
      expect(a.results[0]?.outcome).toBe('timeout');
      expect((await service.getRun(live.id)).status).toBe('running');
      expect(await service.finishAbandonedRuns(now, 10_000)).toEqual([]);
    });

    it('lists runs newest first with counts and pages with a cursor', async () => {
      const base = Date.now() + 3_600_000;
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = { ...newRun(new Date(base + i * 1000)), action: 'listing' };
        ids.push(r.id);
        await service.createRun(r, [{ slug: 's', outcome: 'offline', durationMs: null }]);
      }
      const first = await service.listRuns({ limit: 2, action: 'listing' });
      expect(first.runs.map((r) => r.id)).toEqual([ids[2], ids[1]]);
      expect(first.runs[0]?.counts).toMatchObject({ offline: 1, ok: 0, pending: 0 });
      expect(first.nextCursor).toBeDefined();
      const second = await service.listRuns({ limit: 2, action: 'listing', cursor: first.nextCursor });
      expect(second.runs.map((r) => r.id)).toEqual([ids[0]]);
      expect(second.nextCursor).toBeUndefined();
      await expect(service.listRuns({ limit: 2, cursor: 'garbage' })).rejects.toThrow(/cursor/);
    });

    it('404s an unknown run', async () => {
      await expect(service.getRun(randomUUID())).rejects.toMatchObject({ statusCode: 404 });
    });
  });
}
