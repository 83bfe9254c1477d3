import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { retryDelayMs } from './delivery-worker.ts';
import { signBody, uuidv7 } from './signing.ts';

describe('signing and ids', () => {
  it('signs the raw body with HMAC-SHA256 as sha256=<hex>', () => {
    const body = '{"event":"transition","slug":"a"}';
    expect(signBody('k', body)).toBe(`sha256=${createHmac('sha256', 'k').update(body).digest('hex')}`);
    expect(signBody('k', `${body} `)).not.toBe(signBody('k', body));
  });

  it('makes UUIDv7 ids that sort by time', () => {
    const a = uuidv7(1_700_000_000_000);
    const b = uuidv7(1_700_000_000_001);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a < b).toBe(true);
    expect(new Set(Array.from({ length: 1000 }, () => uuidv7())).size).toBe(1000);
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(retryDelayMs(1, 300, () => 0)).toBe(500);
    expect(retryDelayMs(1, 300, () => 1)).toBe(1000);
    expect(retryDelayMs(4, 300, () => 1)).toBe(8000);
    expect(retryDelayMs(30, 300, () => 1)).toBe(300_000);
    expect(retryDelayMs(30, 300, () => 0)).toBe(150_000);
  });
});
