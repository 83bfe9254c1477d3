import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../app.ts';
import { testConfig } from '../config.ts';
import { documentRoute, FEATURE_TAGS, operationIdOf } from './openapi.ts';

describe('operationIdOf', () => {
  it('derives a camelCase id from the method and the route', () => {
    expect(operationIdOf('GET', '/api/fed/projects')).toBe('getProjects');
    expect(operationIdOf('DELETE', '/api/fed/projects/:slug')).toBe('deleteProjectsBySlug');
    expect(operationIdOf('GET', '/api/fed/projects/:slug/history')).toBe('getProjectsBySlugHistory');
    expect(operationIdOf('POST', '/api/fed/fan-out/:run_id/cancel')).toBe('postFanOutByRunIdCancel');
    expect(operationIdOf('GET', '/metrics')).toBe('getMetrics');
  });
});

describe('documentRoute', () => {
  it('gives a route without 4xx the shared Error for 400 and 401, and keeps an own operationId', () => {
    const doc = documentRoute('POST', '/api/fed/new-thing', { body: {}, response: { 200: {} } });
    expect(doc.operationId).toBe('postNewThing');
    expect(Object.keys(doc.response ?? {}).sort()).toEqual(['200', '400', '401']);
    expect(doc.response?.[400]).toMatchObject({ $ref: 'Error#' });
    expect(documentRoute('GET', '/api/fed/x', { operationId: 'mine' }).operationId).toBe('mine');
    // No input and no token needed: nothing to add.
    expect(Object.keys(documentRoute('GET', '/api/fed/health', {}).response ?? {})).toEqual([]);
  });
});

describe('the OpenAPI document', () => {
  let doc: {
    openapi: string;
    servers?: unknown[];
    info: { license?: { name: string } };
    tags?: Array<{ name: string }>;
    paths: Record<string, Record<string, { operationId?: string; tags?: string[]; responses: object }>>;
  };
  beforeAll(async () => {
    const app = await buildApp({ config: testConfig(), logger: false });
    doc = app.swagger() as unknown as typeof doc;
    await app.close();
  });

  it('declares 3.1, servers, a license and its tags', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.servers?.length).toBeGreaterThan(0);
    expect(doc.info.license?.name).toBe('MIT');
    expect(doc.tags?.map((t) => t.name)).toEqual(FEATURE_TAGS.map((t) => t.name));
  });

  it('gives every operation a unique camelCase operationId, a declared tag and (but health) a 4xx', () => {
    const declared = new Set(doc.tags?.map((t) => t.name));
    const ids: string[] = [];
    const ops = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ path, method, op })),
    );
    expect(ops.length).toBeGreaterThan(10);
    for (const { path, method, op } of ops) {
      expect(op.operationId, `${method} ${path}`).toMatch(/^[a-z][A-Za-z0-9]*$/);
      ids.push(op.operationId as string);
      expect(op.tags?.length, `${method} ${path} has a tag`).toBeGreaterThan(0);
      for (const tag of op.tags ?? []) expect(declared.has(tag), `${method} ${path}: tag ${tag}`).toBe(true);
      if (path !== '/api/fed/health')
        expect(
          Object.keys(op.responses).some((c) => c.startsWith('4')),
          `${method} ${path} 4xx`,
        ).toBe(true);
    }
    expect(new Set(ids).size).toBe(ids.length);
  });
});
