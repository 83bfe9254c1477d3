import { randomBytes } from 'node:crypto';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHARED_NATS_URL } from '../../test/helpers/nats-server.ts';
import { actionSubject } from '../protocol/index.ts';
import { ActionResponder, TARGET_SLUG_HEADER } from './action-responder.ts';

const unique = (p: string) => `${p}-${randomBytes(4).toString('hex')}`;

describe('ActionResponder (real NATS)', () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: SHARED_NATS_URL });
  });
  afterAll(async () => {
    await nc?.close();
  });

  async function ask(ns: string, action: string, params: unknown = {}, target?: string): Promise<unknown> {
    const h = headers();
    if (target) h.set(TARGET_SLUG_HEADER, target);
    const msg = await nc.request(
      actionSubject(ns, action),
      JSON.stringify({ run_id: 'r1', action, params }),
      { timeout: 2000, headers: h },
    );
    return msg.json();
  }

  it('answers an allowed action with the handler result and passes params and run id', async () => {
    const ns = unique('ns');
    const seen: unknown[] = [];
    const r = new ActionResponder({ nc, slug: unique('p'), meshNamespace: ns, allowed: ['audit'] });
    r.onAction('audit', async (params, req) => {
      seen.push(req.runId);
      return { echoed: params };
    });
    r.start();
    try {
      expect(await ask(ns, 'audit', { depth: 3 })).toEqual({ ok: true, result: { echoed: { depth: 3 } } });
      expect(seen).toEqual(['r1']);
      expect(() => r.start()).toThrow(/already started/);
    } finally {
      await r.stop();
    }
  });

  it('turns a throwing handler into {ok:false,error}', async () => {
    const ns = unique('ns');
    const r = new ActionResponder({ nc, slug: unique('p'), meshNamespace: ns, allowed: ['audit'] });
    r.onAction('audit', () => {
      throw new Error('disk full');
    });
    r.start();
    try {
      expect(await ask(ns, 'audit')).toEqual({ ok: false, error: 'disk full' });
    } finally {
      await r.stop();
    }
  });

  it('refuses an action it has not allowed, even with a handler, and one it has no handler for', async () => {
    const ns = unique('ns');
    let ran = false;
    const r = new ActionResponder({ nc, slug: unique('p'), meshNamespace: ns, allowed: ['audit'] });
    r.onAction('deploy', () => {
      ran = true;
      return 'deployed';
    });
    r.start();
    try {
      expect(await ask(ns, 'deploy')).toEqual({ ok: false, error: 'action deploy not allowed' });
      expect(ran).toBe(false);
      expect(await ask(ns, 'audit')).toEqual({
        ok: false,
        error: 'action audit not allowed (no handler registered)',
      });
    } finally {
      await r.stop();
    }
  });

  it('answers once per project across replicas, and only for its own slug on a shared namespace', async () => {
    const ns = unique('ns');
    const slugA = unique('a');
    const calls: string[] = [];
    const make = (slug: string, label: string) => {
      const r = new ActionResponder({ nc, slug, meshNamespace: ns, allowed: ['audit'] });
      r.onAction('audit', () => {
        calls.push(label);
        return label;
      });
      r.start();
      return r;
    };
    const responders = [make(slugA, 'a1'), make(slugA, 'a2'), make(unique('b'), 'b')];
    try {
      const reply = (await ask(ns, 'audit', {}, slugA)) as { ok: boolean; result: string };
      expect(reply.ok).toBe(true);
      expect(['a1', 'a2']).toContain(reply.result);
      // The replica of A and B both got the message; only one of A's replicas ran it, B stayed silent.
      await nc.flush();
      expect(calls).toHaveLength(1);
    } finally {
      await Promise.all(responders.map((r) => r.stop()));
    }
  });

  it('answers a request that is not JSON with an error instead of crashing', async () => {
    const ns = unique('ns');
    const r = new ActionResponder({ nc, slug: unique('p'), meshNamespace: ns, allowed: ['audit'] });
    r.onAction('audit', () => 'ok');
    r.start();
    try {
      const msg = await nc.request(actionSubject(ns, 'audit'), 'not json', { timeout: 2000 });
      expect(msg.json()).toMatchObject({ ok: false, error: expect.stringMatching(/invalid request/) });
      expect(await ask(ns, 'audit')).toEqual({ ok: true, result: 'ok' });
    } finally {
      await r.stop();
    }
  });

  it('rejects invalid action names up front', () => {
    expect(() => new ActionResponder({ nc, meshNamespace: 'ns', allowed: ['Bad Name'] })).toThrow(
      /not a valid/,
    );
  });
});
