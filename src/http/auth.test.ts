import { describe, expect, it } from 'vitest';
import { safeEqual } from './auth.ts';

describe('safeEqual', () => {
  it('tells equal tokens from different ones of any length', () => {
    expect(safeEqual('token-a', 'token-a')).toBe(true);
    expect(safeEqual('token-a', 'token-b')).toBe(false);
    expect(safeEqual('token-a', 'token-a-longer')).toBe(false);
    expect(safeEqual('', 'x')).toBe(false);
    expect(safeEqual('é', 'e\u0301')).toBe(false);
  });
});
