import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type HeartbeatRow,
  heartbeatRowJson,
  packHeartbeatFields,
  unpackHeartbeatRow,
} from './heartbeat-write.ts';

// Any text, including the separator itself, quotes, backslashes, control characters and astral ones.
const text = fc.string({ unit: 'binary', maxLength: 40 });
const nullable = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: null });
const row: fc.Arbitrary<HeartbeatRow> = fc.record({
  slug: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,30}$/),
  received_at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  health: fc.constantFrom('ok', 'degraded', 'leaving'),
  version: nullable(text),
  interval_s: nullable(fc.double({ min: 0.1, max: 86_400, noNaN: true })),
  name: nullable(text),
  hub_url: nullable(text),
  mesh_namespace: nullable(text),
  tags: nullable(fc.array(text, { maxLength: 5 })),
});

describe('packed heartbeat rows (what the writer buffers per project)', () => {
  it('unpack to the same row as the whole row JSON, whatever the text holds', () => {
    fc.assert(
      fc.property(row, fc.option(fc.date({ noInvalidDate: true }), { nil: undefined }), (r, heard) => {
        const heardAt = heard?.toISOString();
        const { slug, received_at, ...fields } = r;
        const json = unpackHeartbeatRow(packHeartbeatFields(fields), slug, received_at, heardAt);
        expect(JSON.parse(json)).toEqual(
          JSON.parse(heartbeatRowJson({ ...r, ...(heardAt ? { heard_at: heardAt } : {}) })),
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('take far less room than the row JSON', () => {
    const r: HeartbeatRow = {
      slug: 'fleet-project-123456',
      received_at: new Date().toISOString(),
      health: 'ok',
      version: '1.0.0',
      interval_s: null,
      name: null,
      hub_url: 'http://fleet-project-123456.local:8000',
      mesh_namespace: 'hub.fleet-project-123456',
      tags: null,
    };
    const { slug, received_at, ...fields } = r;
    expect(packHeartbeatFields(fields).length).toBeLessThan(heartbeatRowJson(r).length / 2);
  });
});
