import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { almostValid, brokenJson } from '../../test/helpers/fuzz.ts';
import { decodeMetricsMessage, REJECT_REASONS } from './decode.ts';

const NOW = new Date('2025-06-01T12:00:00Z');
const OLDEST = new Date('2025-05-01T12:00:00Z');
const enc = new TextEncoder();

const payload = fc.record({
  project_slug: fc.stringMatching(/^[a-z0-9-]{1,20}$/),
  observed_at: fc.date({ min: OLDEST, max: NOW, noInvalidDate: true }).map((d) => d.toISOString()),
  metrics: fc.dictionary(
    fc.stringMatching(/^[a-z_]{1,12}$/),
    fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string({ maxLength: 20 })),
    { minKeys: 1, maxKeys: 4 },
  ),
});

const message = fc.oneof(
  {
    weight: 8,
    arbitrary: almostValid(payload).map((c) => ({
      text: JSON.stringify(c.value),
      value: c.value as Record<string, unknown>,
    })),
  },
  { weight: 1, arbitrary: brokenJson(payload).map((text) => ({ text, value: undefined })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map((text) => ({ text, value: undefined })) },
);

describe('decodeMetricsMessage under fuzzing (fast-check)', () => {
  it('never throws; accepts only payloads for the subject’s slug inside the window; gives a known reason otherwise', () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        message,
        fc.constantFrom('graph', 'audit', 'bogus'),
        fc.boolean(),
        ({ text, value }, kind, sameSlug) => {
          const slug = sameSlug && typeof value?.project_slug === 'string' ? value.project_slug : 'x';
          const r = decodeMetricsMessage(`${kind}.summary.${slug}`, enc.encode(text), {
            now: NOW,
            oldest: OLDEST,
          });
          if (r.ok) {
            accepted++;
            expect(kind).not.toBe('bogus');
            expect(r.value.slug).toBe(slug);
            expect(Object.keys(r.value.metrics).length).toBeGreaterThan(0);
            expect(r.value.observedAt.getTime()).toBeGreaterThanOrEqual(OLDEST.getTime());
          } else {
            expect(REJECT_REASONS).toContain(r.reason);
          }
        },
      ),
      { numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(50);
  });
});
