import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER } from '../protocol/index.ts';
import { signBody } from './signing.ts';
import { bareHost, guardedLookup, isPrivateAddress } from './url-check.ts';

/** A receiver's answer is read up to this many bytes (then dropped): its body is never stored. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface SendRequest {
  url: string;
  secret: string | null;
  deliveryId: string;
  event: string;
  body: string;
  timeoutMs: number;
  allowPrivate: boolean;
  userAgent: string;
}

export type SendResult = { ok: true; statusCode: number } | { ok: false; statusCode?: number; error: string };

/**
 * One POST of a delivery. Redirects are not followed (a redirect could point anywhere, the private
 * network included): a 3xx is a failure, as is any answer but 2xx. Names are resolved through a lookup
 * that refuses private addresses, so what was checked is what is connected to.
 */
export function sendWebhook(req: SendRequest): Promise<SendResult> {
  let u: URL;
  try {
    u = new URL(req.url);
  } catch {
    return Promise.resolve({ ok: false, error: 'invalid URL' });
  }
  const host = bareHost(u);
  if (!req.allowPrivate && isIP(host) !== 0 && isPrivateAddress(host)) {
    return Promise.resolve({ ok: false, error: 'private address refused' });
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(req.body)),
    'user-agent': req.userAgent,
    [DELIVERY_HEADER]: req.deliveryId,
    [EVENT_HEADER]: req.event,
  };
  if (req.secret) headers[SIGNATURE_HEADER] = signBody(req.secret, req.body);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: SendResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const r = request(
      u,
      { method: 'POST', headers, lookup: guardedLookup(req.allowPrivate) as never, agent: false },
      (res) => {
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > MAX_RESPONSE_BYTES) res.destroy();
        });
        const finish = () => {
          const code = res.statusCode ?? 0;
          if (code >= 200 && code < 300) done({ ok: true, statusCode: code });
          else
            done({
              ok: false,
              statusCode: code,
              error: code >= 300 && code < 400 ? `HTTP ${code} (redirects are not followed)` : `HTTP ${code}`,
            });
        };
        res.on('end', finish);
        res.on('close', finish);
        res.on('error', finish);
      },
    );
    const timer = setTimeout(() => {
      r.destroy(new Error(`no answer within ${req.timeoutMs} ms`));
    }, req.timeoutMs);
    r.on('error', (err: NodeJS.ErrnoException) =>
      done({ ok: false, error: err.code ? `${err.code}: ${err.message}` : err.message }),
    );
    r.end(req.body);
  });
}
