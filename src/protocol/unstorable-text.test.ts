import { describe, expect, it } from 'vitest';
import { findUnstorableText, MAX_CHECKED_DEPTH, unstorableTextMessage } from './index.ts';

describe('findUnstorableText', () => {
  it('accepts what PostgreSQL can store, including paired surrogates and other control characters', () => {
    expect(
      findUnstorableText({
        name: 'Zoë 😀 \t\n\u0001\uffff',
        tags: ['a', '', '\ud83d\ude00'],
        n: 1,
        b: true,
        nothing: null,
        nested: [{ deep: [[{ x: 'ok' }]] }],
      }),
    ).toBeUndefined();
    expect(findUnstorableText(undefined)).toBeUndefined();
    expect(findUnstorableText(42)).toBeUndefined();
    expect(findUnstorableText('plain')).toBeUndefined();
    expect(findUnstorableText([])).toBeUndefined();
    expect(findUnstorableText(Object.create(null))).toBeUndefined();
  });

  it.each([
    ['NUL', { version: 'a\u0000b' }, 'version'],
    ['a lone high surrogate', { version: 'a\ud800' }, 'version'],
    ['a lone low surrogate', { version: '\udc00z' }, 'version'],
    ['surrogates in the wrong order', { name: '\ude00\ud83d' }, 'name'],
    ['an array element', { tags: ['ok', 'fine', '\u0000'] }, 'tags.2'],
    ['a nested field', { integrations: [{ to: 'b' }, { to: 'c', note: 'x\ud800' }] }, 'integrations.1.note'],
    ['an array at the root', ['ok', ['\u0000']], '1.0'],
  ])('names the path of %s', (_what, value, path) => {
    expect(findUnstorableText(value)).toBe(path);
  });

  it('answers "" for a bad string at the root', () => {
    expect(findUnstorableText('\u0000')).toBe('');
    expect(findUnstorableText('\ud800')).toBe('');
  });

  it('names a bad object key by its JSON escape, so the answer itself can be stored', () => {
    const path = findUnstorableText({ metrics: { ok: 1, 'bad\u0000key': 2 } });
    expect(path).toBe('metrics.bad\\u0000key');
    expect(findUnstorableText(path)).toBeUndefined();
    expect(findUnstorableText({ '\ud800': 1 })).toBe('\\ud800');
  });

  it('reports the first offender in document order', () => {
    expect(findUnstorableText({ a: 'ok', b: '\u0000', c: '\ud800' })).toBe('b');
  });

  it('does not walk into binary buffers', () => {
    expect(findUnstorableText({ raw: Buffer.from([0, 0, 0]) })).toBeUndefined();
  });

  it('refuses values nested deeper than it checks, without overflowing the stack', () => {
    let deep: unknown = 'ok';
    for (let i = 0; i < 100_000; i++) deep = [deep];
    const path = findUnstorableText({ deep });
    expect(path?.split('.')).toHaveLength(MAX_CHECKED_DEPTH);
    let limit: unknown = 'ok';
    for (let i = 0; i < MAX_CHECKED_DEPTH; i++) limit = [limit];
    expect(findUnstorableText(limit)).toBeUndefined();
    expect(findUnstorableText([limit])).toBeDefined();
  });

  it('words the refusal with the field', () => {
    expect(unstorableTextMessage('tags.2')).toBe(
      'tags.2 contains text that cannot be stored (NUL or an unpaired surrogate)',
    );
  });
});
