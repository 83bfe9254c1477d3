import { describe, expect, it } from 'vitest';
import { checkWebhookUrl, isPrivateAddress, maskWebhookUrl, WebhookUrlError } from './url-check.ts';

describe('webhook URL checks', () => {
  it.each([
    '127.0.0.1',
    '10.0.0.1',
    '172.16.5.4',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '::1',
    '::',
    'fd00::1',
    'fe80::1',
    '::ffff:10.0.0.1',
    '224.0.0.1',
  ])('%s is private', (ip) => expect(isPrivateAddress(ip)).toBe(true));

  it.each(['93.184.215.14', '8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8', '172.32.0.1'])(
    '%s is public',
    (ip) => expect(isPrivateAddress(ip)).toBe(false),
  );

  it('accepts http and https, refuses other schemes and private literals unless allowed', () => {
    expect(checkWebhookUrl('https://ops.example.com/hook', false).host).toBe('ops.example.com');
    expect(() => checkWebhookUrl('ftp://ops.example.com/', false)).toThrow(WebhookUrlError);
    expect(() => checkWebhookUrl('javascript:alert(1)', false)).toThrow(/http/);
    expect(() => checkWebhookUrl('http://localhost:9000/', false)).toThrow(/FED_WEBHOOK_ALLOW_PRIVATE/);
    expect(() => checkWebhookUrl('http://[::1]:9000/', false)).toThrow(/private/);
    expect(checkWebhookUrl('http://127.0.0.1:9000/', true).port).toBe('9000');
  });

  it('masks what may be a secret in a URL', () => {
    expect(maskWebhookUrl('https://hooks.slack.com/services/T0/B0/XYZ')).toBe(
      'https://hooks.slack.com/services/***',
    );
    expect(maskWebhookUrl('https://user:pw@ops.example.com/hook?token=abc')).toBe(
      'https://***@ops.example.com/***?***',
    );
    expect(maskWebhookUrl('https://ops.example.com/federation/hook')).toBe(
      'https://ops.example.com/federation/***',
    );
    expect(maskWebhookUrl('https://ops.example.com')).toBe('https://ops.example.com');
  });
});
