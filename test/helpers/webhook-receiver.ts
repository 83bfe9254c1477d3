import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
  json: Record<string, unknown>;
  receivedAtMs: number;
  /** The status this receiver answered with. */
  answered: number;
}

/**
 * A real HTTP receiver on a random port of 127.0.0.1: records every POST, answers what `respond`
 * says (200 by default), and can go down and come back on the same port.
 */
export async function startWebhookReceiver(port = 0) {
  const received: ReceivedWebhook[] = [];
  let respond: (body: Record<string, unknown>, attempt: number) => number = () => 200;
  const attempts = new Map<string, number>();
  let server: Server | undefined;
  let boundPort = port;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> = {};
          try {
            json = JSON.parse(body);
          } catch {}
          const id = String(req.headers['x-federation-delivery']);
          const n = (attempts.get(id) ?? 0) + 1;
          attempts.set(id, n);
          const code = respond(json, n);
          received.push({ headers: req.headers, body, json, receivedAtMs: Date.now(), answered: code });
          res.writeHead(code, { 'content-type': 'text/plain' }).end(code < 300 ? 'ok' : 'no');
        });
      });
      s.once('error', reject);
      s.listen(boundPort, '127.0.0.1', () => {
        boundPort = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });
  await listen();
  const close = () =>
    new Promise<void>((resolve) => {
      const s = server;
      server = undefined;
      if (!s) return resolve();
      s.close(() => resolve());
      s.closeAllConnections();
    });
  return {
    get url() {
      return `http://127.0.0.1:${boundPort}/hook`;
    },
    get port() {
      return boundPort;
    },
    received,
    /** Requests answered 2xx, i.e. deliveries this receiver has. */
    accepted: () => received.filter((r) => r.answered < 300),
    respondWith(fn: (body: Record<string, unknown>, attempt: number) => number) {
      respond = fn;
    },
    /** Stops listening (connections refused) until `up()`. */
    down: close,
    up: listen,
    close,
  };
}
export type WebhookReceiver = Awaited<ReturnType<typeof startWebhookReceiver>>;
