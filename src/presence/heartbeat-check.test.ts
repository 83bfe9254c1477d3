import { describe, expect, it } from 'vitest';
import { MAX_HEARTBEAT_BYTES } from '../protocol/index.ts';
import { checkHeartbeatMessage, checkHeartbeatValue } from './heartbeat-check.ts';

const good = {
  project_slug: 'alpha',
  hub_url: 'http://alpha:8000',
  mesh_namespace: 'hub.alpha',
  timestamp: '2025-01-01T00:00:00Z',
};
const bytes = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));

describe('checkHeartbeatMessage', () => {
  it('refuses an interval_s below 0.05 s, which the REAL column would underflow (found by fuzzing)', () => {
    for (const interval_s of [1e-300, 1e-39, 0.01]) {
      const r = checkHeartbeatMessage('alpha', bytes({ ...good, interval_s }));
      expect(r).toMatchObject({ ok: false, reason: 'invalid', message: expect.stringMatching(/interval_s/) });
    }
    expect(checkHeartbeatMessage('alpha', bytes({ ...good, interval_s: 0.05 })).ok).toBe(true);
  });

  it('accepts a valid heartbeat on its own subject, ignoring unknown fields', () => {
    const r = checkHeartbeatMessage('alpha', bytes({ ...good, extra: 1, health: 'degraded', interval_s: 5 }));
    expect(r.ok).toBe(true);
  });

  it('accepts harmless \\u escapes, and refuses an escaped NUL in any field', () => {
    const escaped =
      '{"project_slug":"alpha","hub_url":"http://a","mesh_namespace":"hub.a","timestamp":"t","name":"Zo\\u00eb \\ud83d\\ude00"}';
    const r = checkHeartbeatMessage('alpha', bytes(escaped));
    expect(r.ok && r.heartbeat.name).toBe('Zoë 😀');
    const nul = checkHeartbeatMessage('alpha', bytes(escaped.replace('\\u00eb', '\\u0000')));
    expect(nul).toMatchObject({
      ok: false,
      reason: 'invalid',
      message: expect.stringMatching(/^invalid heartbeat: name /),
    });
  });

  it.each([
    ['oversize', bytes({ ...good, pad: 'x'.repeat(MAX_HEARTBEAT_BYTES) })],
    ['not_json', bytes('{nope')],
    ['not_json', new Uint8Array([0xff, 0xfe, 0x7b])],
    ['invalid', bytes({ ...good, project_slug: undefined })],
    ['invalid', bytes({ ...good, project_slug: 'Alpha!' })],
    ['invalid', bytes({ ...good, project_slug: 'a'.repeat(51) })],
    ['invalid', bytes({ ...good, health: 'sick' })],
    ['invalid', bytes({ ...good, interval_s: 0 })],
    ['invalid', bytes({ ...good, integrations: [{ to: 'b', kind: 'telepathy' }] })],
    ['invalid', bytes('null')],
    ['invalid', bytes({ ...good, version: '1.0\u0000' })],
    [
      'invalid',
      bytes(
        '{"project_slug":"alpha","hub_url":"http://a","mesh_namespace":"hub.a","timestamp":"t","name":"\\ud800"}',
      ),
    ],
    ['subject_mismatch', bytes({ ...good, project_slug: 'beta' })],
  ])('rejects %s', (reason, data) => {
    const r = checkHeartbeatMessage('alpha', data);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBe(reason);
  });
});

describe('checkHeartbeatValue', () => {
  it('names the failing field', () => {
    const r = checkHeartbeatValue({ ...good, hub_url: 'ftp://x' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/hub_url/);
  });

  it.each([
    [{ version: 'a\u0000b' }, 'version'],
    [{ name: 'Zo\ud800' }, 'name'],
    [{ tags: ['ok', 'x\u0000'] }, 'tags.1'],
    [{ hub_url: 'http://a\u0000' }, 'hub_url'],
    [{ timestamp: '\udc00' }, 'timestamp'],
  ])('refuses text the database cannot store (%o) and names %s', (extra, field) => {
    const r = checkHeartbeatValue({ ...good, ...extra });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toBe('invalid');
    expect(r.message).toBe(
      `invalid heartbeat: ${field} contains text that cannot be stored (NUL or an unpaired surrogate)`,
    );
    expect(r.details).toEqual([{ field, message: expect.stringContaining(field) }]);
  });
});
