import fc from 'fast-check';

/**
 * Generators of *almost valid* input for the fuzz tests: a valid object with one field changed
 * (removed, of the wrong type, at or past a bound, carrying text PostgreSQL cannot store, or joined
 * by a field nobody expects), so that the checks behind the first one are reached too.
 */

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Path = Array<string | number>;

/** One change to a field: `remove` deletes it; otherwise `value` replaces it. */
export type Mutation =
  | { kind: 'remove' }
  | { kind: 'set'; value: unknown }
  | { kind: 'extra'; key: string; value: unknown };

const AWKWARD_TEXT = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  "' OR 1=1 --",
  '"; drop table projects; --',
  '../../etc/passwd',
  '<script>alert(1)</script>',
  '%00',
  '%2e%2e%2f',
  'UPPER-case',
  'with space',
  '-',
  '💥',
  'e\u0301',
  '1e309',
  'null',
  '__proto__',
  'constructor',
  '2025-13-45T99:99:99Z',
  'http://',
  'javascript:alert(1)',
];

/** Values a field should never hold, plus a few it might (the invariants hold either way). */
export const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...AWKWARD_TEXT) },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 49, maxLength: 120 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('a'.repeat(51), 'a'.repeat(101), 'a'.repeat(201), 'a'.repeat(501)),
  },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom([], {}, [null], { a: 1 }, [[[]]]) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
);

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ kind: 'remove' } as const) },
  { weight: 7, arbitrary: wrongValue.map((value) => ({ kind: 'set', value }) as const) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('extra', '__proto__', 'constructor', 'id', 'status'), wrongValue)
      .map(([key, value]) => ({ kind: 'extra', key, value }) as const),
  },
);

/** Every path to a field of `value` (objects and arrays, two levels deep). */
export function fieldPaths(value: unknown, prefix: Path = [], depth = 0): Path[] {
  if (value === null || typeof value !== 'object' || depth > 2) return [];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  const out: Path[] = [];
  for (const [k, v] of entries) {
    const p = [...prefix, k];
    out.push(p, ...fieldPaths(v, p, depth + 1));
  }
  return out;
}

/** `value` with `m` applied at `path` (a copy; `path` [] with `extra` adds a top-level field). */
export function applyMutation<T>(value: T, path: Path, m: Mutation): T {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  if (m.kind === 'extra') {
    let target: unknown = copy;
    for (const k of path) target = (target as Record<string | number, unknown>)[k];
    if (target && typeof target === 'object' && !Array.isArray(target)) {
      Object.defineProperty(target, m.key, {
        value: m.value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return copy as T;
  }
  let parent: Record<string | number, unknown> = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (m.kind === 'remove') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else parent[last] = m.value;
  return copy as T;
}

export interface AlmostValid<T> {
  value: T;
  /** The field changed ([] when the object was sent unchanged or only a field was added). */
  path: Path;
  mutation: Mutation | undefined;
}

/**
 * Mostly one field changed (90 %), some valid objects sent as they are (10 %): without those, a
 * test could pass on a route that refuses everything.
 */
export function almostValid<T>(valid: fc.Arbitrary<T>): fc.Arbitrary<AlmostValid<T>> {
  return fc.tuple(valid, fc.nat(), mutation, fc.nat(9)).map(([v, pick, m, dice]) => {
    if (dice === 0) return { value: v, path: [], mutation: undefined };
    const paths = fieldPaths(v);
    if (m.kind === 'extra' || paths.length === 0) {
      const objects = [[] as Path, ...paths.filter((p) => isPlainObject(at(v, p)))];
      const path = objects[pick % objects.length] as Path;
      return { value: applyMutation(v, path, m), path, mutation: m };
    }
    const path = paths[pick % paths.length] as Path;
    return { value: applyMutation(v, path, m), path, mutation: m };
  });
}

function at(v: unknown, p: Path): unknown {
  let x = v;
  for (const k of p) x = (x as Record<string | number, unknown>)?.[k];
  return x;
}

const isPlainObject = (x: unknown) => x !== null && typeof x === 'object' && !Array.isArray(x);

/** Raw bodies that are not JSON, or JSON cut short: a fraction of the cases, sent as text. */
export const brokenJson = (valid: fc.Arbitrary<unknown>): fc.Arbitrary<string> =>
  fc.oneof(
    valid.chain((v) => {
      const text = JSON.stringify(v);
      return fc.nat(Math.max(0, text.length - 1)).map((n) => text.slice(0, n));
    }),
    fc.constantFrom('', '{', '[', 'null', '"x"', '1', '{"a":}', '{"slug":"a",}', '\u0000', 'not json'),
    fc.string({ maxLength: 40 }),
  );

export const slugArb = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/);
export const isoNow = () => new Date().toISOString();
