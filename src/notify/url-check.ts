import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/**
 * Addresses a webhook may not reach unless FED_WEBHOOK_ALLOW_PRIVATE=true: loopback, private, link-local
 * (cloud metadata at 169.254.169.254), carrier-grade NAT, unspecified, multicast and reserved ranges.
 * A notifier URL is an outbound request anyone with the admin token can aim; without this it is a
 * way into the service's own network (SSRF).
 */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  PRIVATE.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b::', 96],
] as const)
  PRIVATE.addSubnet(net, prefix, 'ipv6');

/** True for an address a webhook may not reach by default (IPv4-mapped IPv6 is judged as its IPv4). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return PRIVATE.check(mapped[1], 'ipv4');
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family === 6) return PRIVATE.check(address, 'ipv6');
  return true;
}

const isLocalName = (host: string) => host === 'localhost' || host.endsWith('.localhost');

export class WebhookUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookUrlError';
  }
}

/** The host of a URL without IPv6 brackets. */
export const bareHost = (u: URL): string => u.hostname.replace(/^\[|\]$/g, '');

/**
 * Checks a notifier URL as it is entered (API or projects.yaml), without the network: http or https,
 * a host, no loopback or private literal address unless allowed. Names are checked again, resolved,
 * at every delivery (see `guardedLookup`), since DNS can change after the check.
 */
export function checkWebhookUrl(raw: string, allowPrivate: boolean): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new WebhookUrlError('is not a valid absolute URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new WebhookUrlError(`must be http:// or https://, not ${u.protocol}//`);
  }
  const host = bareHost(u);
  if (host === '') throw new WebhookUrlError('has no host');
  if (!allowPrivate && (isLocalName(host) || (isIP(host) !== 0 && isPrivateAddress(host)))) {
    throw new WebhookUrlError(
      `points at a loopback or private address (${host}); set FED_WEBHOOK_ALLOW_PRIVATE=true to allow it`,
    );
  }
  return u;
}

/** Resolves a name the way a delivery would and refuses it when any of its addresses is private. */
export async function checkResolvedHost(u: URL, allowPrivate: boolean): Promise<void> {
  const host = bareHost(u);
  if (allowPrivate || isIP(host) !== 0) return;
  const addresses = await new Promise<LookupAddress[] | undefined>((resolve) =>
    dnsLookup(host, { all: true }, (err, list) => resolve(err ? undefined : list)),
  );
  // A name that does not resolve now is left to the delivery, which resolves (and checks) again.
  const bad = addresses?.find((a) => isPrivateAddress(a.address));
  if (bad) {
    throw new WebhookUrlError(
      `resolves to a loopback or private address (${bad.address}); set FED_WEBHOOK_ALLOW_PRIVATE=true to allow it`,
    );
  }
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for http.request that refuses private addresses at connect time, so the address checked
 * is the address connected to (no DNS rebinding between a check and the request).
 */
export function guardedLookup(allowPrivate: boolean) {
  return (hostname: string, options: object, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const list = addresses as LookupAddress[];
      if (!allowPrivate) {
        const bad = list.find((a) => isPrivateAddress(a.address));
        if (bad) {
          const e = new Error(
            `${hostname} resolves to a private address (${bad.address}); refused`,
          ) as NodeJS.ErrnoException;
          e.code = 'EPRIVATEADDRESS';
          return callback(e, []);
        }
      }
      if ((options as { all?: boolean }).all) return callback(null, list);
      const first = list[0];
      if (!first) return callback(new Error(`${hostname} has no address`), []);
      callback(null, first.address, first.family);
    });
  };
}

/**
 * A URL as it may be shown (API responses): credentials and the query masked, and the path after its
 * first segment, since chat webhooks carry their token there (Slack's /services/T…/B…/…, Discord's
 * /api/webhooks/<id>/<token>, Mattermost's /hooks/<key>). `name` is how an operator tells them apart.
 */
export function maskWebhookUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return '***';
  }
  const userinfo = u.username || u.password ? '***@' : '';
  const segments = u.pathname.split('/').filter(Boolean);
  const path = segments.length > 1 ? `/${segments[0]}/***` : segments.length === 1 ? '/***' : '';
  const query = u.search ? '?***' : '';
  return `${u.protocol}//${userinfo}${u.host}${path}${query}`;
}

/** Only scheme, host and port: what a log line says about where a delivery went. */
export function urlOrigin(raw: string): string {
  try {
    return new URL(raw).origin;
  } catch {
    return '***';
  }
}
