/**
 * Text that PostgreSQL cannot store: `text`, `json` and `jsonb` all refuse NUL (U+0000), and a lone
 * UTF-16 surrogate has no UTF-8 form (PostgreSQL refuses the JSON escape `\ud800`; a bound text
 * parameter silently turns into U+FFFD). JSON and JavaScript strings allow both, so a payload that
 * passes its schema can still fail at the database.
 */

/** Arrays and objects nested deeper than this are refused too: no payload of this protocol nests that deep, and the walk recurses. */
export const MAX_CHECKED_DEPTH = 256;

// String.prototype.isWellFormed is in Node 20, but in the ES2024 lib, newer than the one this project targets.
interface WellFormed {
  isWellFormed(): boolean;
}

const storable = (s: string): boolean => !s.includes('\u0000') && (s as unknown as WellFormed).isWellFormed();

/** A key quoted the way JSON would (NUL → `\u0000`), so that naming it does not repeat the problem. */
const printable = (key: string): string => JSON.stringify(key).slice(1, -1);

const join = (segment: string, rest: string): string => (rest === '' ? segment : `${segment}.${rest}`);

/** '' when `value` itself is unstorable, the dotted path below it, or undefined. Allocates only on failure. */
function unstorableAt(value: unknown, depth: number): string | undefined {
  if (typeof value === 'string') return storable(value) ? undefined : '';
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return undefined;
  if (depth >= MAX_CHECKED_DEPTH) return '';
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const at = unstorableAt(value[i], depth + 1);
      if (at !== undefined) return join(String(i), at);
    }
    return undefined;
  }
  for (const key in value) {
    if (!storable(key)) return printable(key);
    const at = unstorableAt((value as Record<string, unknown>)[key], depth + 1);
    if (at !== undefined) return join(key, at);
  }
  return undefined;
}

/**
 * The dotted path (`tags.2`, `result.x`) of the first string or object key in a parsed JSON value
 * that PostgreSQL cannot store, '' when `value` itself is such a string, or undefined when all of it
 * can be stored.
 */
export function findUnstorableText(value: unknown): string | undefined {
  return unstorableAt(value, 0);
}

/** The sentence every refusal uses, naming where the text is. */
export function unstorableTextMessage(field: string): string {
  return `${field} contains text that cannot be stored (NUL or an unpaired surrogate)`;
}
