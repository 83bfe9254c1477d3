// A client written against the types openapi-typescript generates from the OpenAPI document
// (api.d.ts, written by `npm run openapi:check`, not committed). Typechecked, never run.
import type { components, operations, paths } from './api.d.ts';

type Project = components['schemas']['ProjectResponse'];
type ApiError = components['schemas']['Error'];
type ListProjects = operations['getProjects'];

const query: NonNullable<ListProjects['parameters']['query']> = { status: 'online', limit: 50 };
// @ts-expect-error: the status is an enum in the document
const badQuery: NonNullable<ListProjects['parameters']['query']> = { status: 'sleeping' };

export function slugs(list: ListProjects['responses'][200]['content']['application/json']): string[] {
  return list.map((p: Project) => p.slug);
}

export function describeError(e: ApiError): string {
  return `${e.error}: ${e.message}`;
}

type History = paths['/api/fed/projects/{slug}/history']['get'];
export const historyParams: History['parameters']['path'] = { slug: 'commandcenter' };
type NotFound = operations['getProjectsBySlug']['responses'][404]['content']['application/json'];
export const notFound: NotFound = { error: 'not_found', message: 'no project commandcenter' };
type StartRun = operations['postActions']['requestBody'];

export type { StartRun };
export { badQuery, query };
