import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EventFeed } from '../events.ts';
import { EventStreams } from './event-stream.ts';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
});

async function serve(streams: EventStreams): Promise<string> {
  const srv = createServer((_req, res) => streams.attach(res));
  server = srv;
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

async function readUntil(reader: ReadableStreamDefaultReader<string>, pattern: RegExp): Promise<string> {
  let text = '';
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  return text;
}

describe('EventStreams', () => {
  it('sends keepalive comments and events, and removes its listeners when the client leaves', async () => {
    const feed = new EventFeed();
    const streams = new EventStreams(feed, { keepaliveMs: 20 });
    const url = await serve(streams);
    const abort = new AbortController();
    const res = await fetch(url, { signal: abort.signal });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
    expect(await readUntil(reader, /: keepalive\n\n/)).toMatch(/^retry: \d+\n/);
    feed.emit('status', {
      slug: 'a',
      from: 'offline',
      to: 'online',
      at: '2025-01-01T00:00:00.000Z',
      reason: 'r',
    });
    const text = await readUntil(reader, /event: status\n/);
    expect(text).toContain('event: status\ndata: {"slug":"a","from":"offline","to":"online"');
    expect(streams.size).toBe(1);
    abort.abort();
    for (let i = 0; i < 100 && streams.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(streams.size).toBe(0);
    expect(feed.listenerCount('status')).toBe(0);
  });

  it('ends every stream on closeAll so that the server can close', async () => {
    const feed = new EventFeed();
    const streams = new EventStreams(feed);
    const url = await serve(streams);
    const res = await fetch(url);
    const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
    await readUntil(reader, /connected/);
    streams.closeAll();
    await readUntil(reader, /$^/);
    expect((await reader.read()).done).toBe(true);
  });
});
