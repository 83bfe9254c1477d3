import { describe, expect, it } from 'vitest';
import { MAX_METRICS_BYTES } from '../protocol/index.ts';
import { decodeMetricsMessage, parseIsoTime } from './decode.ts';

const now = new Date('2025-06-01T12:00:00Z');
const oldest = new Date('2025-05-01T12:00:00Z');
const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const payload = (over: Record<string, unknown> = {}) => ({
  project_slug: 'alpha',
  observed_at: '2025-06-01T11:59:00Z',
  metrics: { 'audit.ok_count': 12, 'coverage.percent': 81.5, 'build.state': 'green' },
  ...over,
});
const decode = (subject: string, data: Uint8Array) => decodeMetricsMessage(subject, data, { now, oldest });
const reason = (subject: string, data: Uint8Array) => {
  const r = decode(subject, data);
  return r.ok ? 'ok' : r.reason;
};

describe('decodeMetricsMessage', () => {
  it('accepts a valid payload and reads the kind from the subject', () => {
    const r = decode('audit.summary.alpha', enc(payload()));
    expect(r).toEqual({
      ok: true,
      value: {
        kind: 'audit',
        slug: 'alpha',
        observedAt: new Date('2025-06-01T11:59:00Z'),
        metrics: { 'audit.ok_count': 12, 'coverage.percent': 81.5, 'build.state': 'green' },
      },
    });
  });

  it('names the reason of every kind of bad message', () => {
    expect(reason('graph.summary.alpha', enc('{not json'))).toBe('invalid_json');
    expect(reason('graph.summary.alpha', new Uint8Array([0xff, 0xfe, 0x7b]))).toBe('invalid_json');
    expect(reason('graph.summary.alpha', enc({ project_slug: 'alpha' }))).toBe('invalid_payload');
    expect(reason('graph.summary.alpha', enc(payload({ metrics: { a: true } })))).toBe('invalid_payload');
    expect(reason('graph.summary.alpha', enc(payload({ metrics: { 'bad key': 1 } })))).toBe(
      'invalid_payload',
    );
    expect(reason('graph.summary.alpha', enc(payload({ metrics: { a: 'x'.repeat(501) } })))).toBe(
      'invalid_payload',
    );
    expect(reason('graph.summary.alpha', enc(payload({ project_slug: 'Alpha!' })))).toBe('invalid_payload');
    expect(reason('graph.summary.beta', enc(payload()))).toBe('slug_mismatch');
    expect(reason('other.summary.alpha', enc(payload()))).toBe('invalid_subject');
    expect(reason('graph.summary.alpha.extra', enc(payload()))).toBe('invalid_subject');
    expect(reason('graph.summary.alpha', enc(payload({ metrics: {} })))).toBe('empty');
    expect(reason('graph.summary.alpha', enc(payload({ observed_at: 'yesterday' })))).toBe('invalid_time');
    expect(reason('graph.summary.alpha', enc(payload({ observed_at: '1' })))).toBe('invalid_time');
    expect(reason('graph.summary.alpha', enc(payload({ observed_at: '2025-06-01T14:00:00Z' })))).toBe(
      'future_time',
    );
    expect(reason('graph.summary.alpha', enc(payload({ observed_at: '2025-04-01T00:00:00Z' })))).toBe(
      'expired',
    );
  });

  it('refuses an oversize message before parsing it', () => {
    const big = enc(payload({ metrics: { a: 'x'.repeat(100) }, pad: 'y'.repeat(MAX_METRICS_BYTES) }));
    expect(reason('graph.summary.alpha', big)).toBe('oversize');
  });

  it('ignores unknown extra fields', () => {
    expect(reason('graph.summary.alpha', enc(payload({ extra: { nested: true } })))).toBe('ok');
  });
});

describe('parseIsoTime', () => {
  it('reads a time without an offset as UTC, like Python utcnow().isoformat()', () => {
    expect(parseIsoTime('2025-06-01T11:59:00.123456')?.toISOString()).toBe('2025-06-01T11:59:00.123Z');
    expect(parseIsoTime('2025-06-01T11:59:00+02:00')?.toISOString()).toBe('2025-06-01T09:59:00.000Z');
    expect(parseIsoTime('2025-06-01')?.toISOString()).toBe('2025-06-01T00:00:00.000Z');
  });

  it('refuses what is not ISO 8601', () => {
    for (const bad of ['', '1', 'June 1 2025', '2025-13-45T00:00:00Z', '2025-06-01T25:00:00Z']) {
      expect(parseIsoTime(bad), bad).toBeUndefined();
    }
  });
});
