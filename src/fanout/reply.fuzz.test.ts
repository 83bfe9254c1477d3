import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { almostValid } from '../../test/helpers/fuzz.ts';
import { interpretReply } from './fanout-runner.ts';

const reply = fc.oneof(
  fc.record({ ok: fc.constant(true), result: fc.jsonValue({ maxDepth: 2 }) }, { requiredKeys: ['ok'] }),
  fc.record({ ok: fc.constant(false), error: fc.string({ maxLength: 30 }) }),
);

describe('interpretReply under fuzzing (fast-check)', () => {
  it('never throws; "ok" only for {"ok":true}; every other answer an error with a message', () => {
    let ok = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          { weight: 8, arbitrary: almostValid(reply).map((c) => c.value) },
          { weight: 2, arbitrary: fc.anything() },
        ),
        (value) => {
          const r = interpretReply(value);
          if (r.outcome === 'ok') {
            ok++;
            expect((value as { ok?: unknown }).ok).toBe(true);
          } else {
            expect(r.outcome).toBe('error');
            expect(typeof r.error).toBe('string');
          }
        },
      ),
      { numRuns: 2000 },
    );
    expect(ok).toBeGreaterThan(20);
  });
});
