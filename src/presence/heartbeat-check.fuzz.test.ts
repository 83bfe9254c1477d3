import fc from 'fast-check';
import { Compile } from 'typebox/compile';
import { describe, expect, it } from 'vitest';
import { almostValid, brokenJson } from '../../test/helpers/fuzz.ts';
import { EDGE_KINDS, findUnstorableText, HeartbeatSchema, MAX_HEARTBEAT_BYTES } from '../protocol/index.ts';
import { checkHeartbeatMessage } from './heartbeat-check.ts';

const schema = Compile(HeartbeatSchema);
const enc = new TextEncoder();

const heartbeat = fc.record(
  {
    project_slug: fc.stringMatching(/^[a-z0-9-]{1,20}$/),
    hub_url: fc.constantFrom('http://a:8000', 'https://b.example'),
    mesh_namespace: fc.constantFrom('hub.a', 'ns.x.y'),
    timestamp: fc.constant('2025-01-01T00:00:00Z'),
    version: fc.constantFrom('1.0', 'dev'),
    name: fc.string({ minLength: 1, maxLength: 20 }),
    tags: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
    health: fc.constantFrom('ok', 'degraded'),
    interval_s: fc.double({ min: 0.05, max: 86400, noNaN: true }),
    integrations: fc.array(
      fc.record({ to: fc.constantFrom('x', 'y-2'), kind: fc.constantFrom(...EDGE_KINDS) }),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: ['project_slug', 'hub_url', 'mesh_namespace', 'timestamp'] },
);

/** Bytes as they might arrive on hub.presence.<slug>: mostly a valid heartbeat with one field changed. */
const message = fc.oneof(
  {
    weight: 7,
    arbitrary: almostValid(heartbeat).map((c) => ({
      bytes: enc.encode(JSON.stringify(c.value)),
      value: c.value as Record<string, unknown>,
    })),
  },
  { weight: 1, arbitrary: brokenJson(heartbeat).map((t) => ({ bytes: enc.encode(t), value: undefined })) },
  {
    weight: 1,
    // One byte flipped: invalid UTF-8, a broken quote, a stray control character.
    arbitrary: fc.tuple(heartbeat, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([hb, at, byte]) => {
      const b = enc.encode(JSON.stringify(hb));
      b[at % b.length] = byte;
      return { bytes: b, value: undefined };
    }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => ({ bytes: b, value: undefined })) },
);

describe('checkHeartbeatMessage under fuzzing (fast-check)', () => {
  it('never throws; accepts only schema-valid, storable heartbeats of the subject’s slug; names what it refuses', () => {
    let accepted = 0;
    fc.assert(
      fc.property(message, fc.boolean(), ({ bytes, value }, sameSubject) => {
        const slug =
          sameSubject && typeof value?.project_slug === 'string' ? value.project_slug : 'other-slug';
        const r = checkHeartbeatMessage(slug, bytes);
        if (r.ok) {
          accepted++;
          expect(schema.Check(r.heartbeat)).toBe(true);
          expect(r.heartbeat.project_slug).toBe(slug);
          expect(findUnstorableText(r.heartbeat)).toBeUndefined();
          expect(bytes.byteLength).toBeLessThanOrEqual(MAX_HEARTBEAT_BYTES);
        } else {
          expect(['oversize', 'not_json', 'invalid', 'subject_mismatch']).toContain(r.reason);
          expect(r.message.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(50);
  });
});
