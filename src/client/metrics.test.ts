import { describe, expect, it } from 'vitest';
import { parseMetricAssignments } from '../commands/metrics.ts';
import { buildMetricsPayload, MetricsPayloadError } from './metrics.ts';

describe('buildMetricsPayload', () => {
  it('builds the wire payload with observed_at in ISO UTC', () => {
    const at = new Date('2025-06-01T12:00:00Z');
    expect(buildMetricsPayload('my-app', { 'audit.ok_count': 12, state: 'green' }, at)).toEqual({
      project_slug: 'my-app',
      observed_at: '2025-06-01T12:00:00.000Z',
      metrics: { 'audit.ok_count': 12, state: 'green' },
    });
  });

  it('names the field at fault', () => {
    const fieldOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(MetricsPayloadError);
        return (err as MetricsPayloadError).field;
      }
      return 'no error';
    };
    expect(fieldOf(() => buildMetricsPayload('Bad Slug', { a: 1 }))).toBe('slug');
    expect(fieldOf(() => buildMetricsPayload('x'.repeat(51), { a: 1 }))).toBe('slug');
    expect(fieldOf(() => buildMetricsPayload('ok', {}))).toBe('metrics');
    expect(fieldOf(() => buildMetricsPayload('ok', { 'bad name': 1 }))).toBe('metrics.bad name');
    expect(fieldOf(() => buildMetricsPayload('ok', { a: Number.NaN }))).toBe('metrics.a');
    expect(fieldOf(() => buildMetricsPayload('ok', { a: 'x'.repeat(501) }))).toBe('metrics.a');
    expect(fieldOf(() => buildMetricsPayload('ok', { a: 1 }, new Date('nope')))).toBe('observedAt');
  });
});

describe('parseMetricAssignments (the CLI --set values)', () => {
  it('sends what reads as a number as a number, anything else as text', () => {
    expect(
      parseMetricAssignments([
        'audit.ok_count=12',
        'coverage.percent=81.5',
        'state=green',
        'v=1.2.3',
        'e=-1e3',
        'eq=a=b',
      ]),
    ).toEqual({
      'audit.ok_count': 12,
      'coverage.percent': 81.5,
      state: 'green',
      v: '1.2.3',
      e: -1000,
      eq: 'a=b',
    });
  });

  it('refuses a pair without a name', () => {
    expect(() => parseMetricAssignments(['=3'])).toThrow(MetricsPayloadError);
    expect(() => parseMetricAssignments(['novalue'])).toThrow(MetricsPayloadError);
  });
});
