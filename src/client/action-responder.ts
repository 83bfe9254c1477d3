import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import {
  ACTION_NAME_PATTERN,
  type ActionReply,
  type ActionRequest,
  actionSubject,
} from '../protocol/wire.ts';

/** Header the Federation Service sets to the slug a request is meant for (see fan-out). */
export const TARGET_SLUG_HEADER = 'Fed-Target-Slug';

/** What a handler learns about the request besides its params. */
export interface ActionContext {
  runId: string;
  action: string;
  subject: string;
}

export type ActionHandler = (params: unknown, request: ActionContext) => Promise<unknown> | unknown;

export interface ActionResponderOptions {
  nc: NatsConnection;
  /** This project's slug: the queue group, so that replicas of one project answer once. */
  slug?: string;
  meshNamespace: string;
  /** Actions this project accepts; anything else is refused even if a handler exists. */
  allowed: string[];
}

const ACTION_NAME = new RegExp(ACTION_NAME_PATTERN);

/**
 * Answers fan-out actions for one project: subscribes to `<mesh_namespace>.actions.>` and replies
 * `{"ok":true,"result"}` with what the handler returned, `{"ok":false,"error"}` when it throws, and
 * refuses actions the project has not allowed or has no handler for.
 */
export class ActionResponder {
  readonly #nc: NatsConnection;
  readonly #slug: string | undefined;
  readonly #meshNamespace: string;
  readonly #allowed: Set<string>;
  readonly #handlers = new Map<string, ActionHandler>();
  readonly #inFlight = new Set<Promise<void>>();
  #sub: Subscription | undefined;
  #started = false;

  constructor(opts: ActionResponderOptions) {
    if (!opts.meshNamespace) throw new Error('ActionResponder: meshNamespace is required');
    for (const a of opts.allowed) {
      if (!ACTION_NAME.test(a))
        throw new Error(`ActionResponder: allowed action ${JSON.stringify(a)} is not a valid name`);
    }
    this.#nc = opts.nc;
    this.#slug = opts.slug;
    this.#meshNamespace = opts.meshNamespace;
    this.#allowed = new Set(opts.allowed);
  }

  /** Registers the handler of one action (replacing any earlier one). */
  onAction(name: string, handler: ActionHandler): this {
    if (!ACTION_NAME.test(name))
      throw new Error(`ActionResponder: action ${JSON.stringify(name)} is not a valid name`);
    this.#handlers.set(name, handler);
    return this;
  }

  /** The subject prefix this responder listens on. */
  get subject(): string {
    return actionSubject(this.#meshNamespace, '>');
  }

  start(): void {
    if (this.#started) throw new Error('ActionResponder already started');
    this.#started = true;
    this.#sub = this.#nc.subscribe(this.subject, {
      queue: this.#slug ?? this.#meshNamespace,
      callback: (err, msg) => {
        if (err) return;
        const p = this.#handle(msg).catch(() => {});
        this.#inFlight.add(p);
        void p.finally(() => this.#inFlight.delete(p));
      },
    });
  }

  /** Stops taking requests and waits for the handlers already running to reply. */
  async stop(): Promise<void> {
    const sub = this.#sub;
    this.#sub = undefined;
    if (sub && !sub.isClosed()) {
      await sub.drain().catch(() => sub.unsubscribe());
    }
    await Promise.allSettled([...this.#inFlight]);
  }

  async #handle(msg: Msg): Promise<void> {
    if (!msg.reply) return;
    const target = msg.headers?.get(TARGET_SLUG_HEADER);
    // Another project on the same mesh namespace is the addressee: stay silent so it answers.
    if (target && this.#slug && target !== this.#slug) return;
    const action = msg.subject.slice(`${this.#meshNamespace}.actions.`.length);
    let request: Partial<ActionRequest>;
    try {
      const parsed: unknown = msg.json();
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not an object');
      request = parsed as Partial<ActionRequest>;
    } catch {
      this.#reply(msg, {
        ok: false,
        error: 'invalid request: expected a JSON object {"run_id","action","params"}',
      });
      return;
    }
    const handler = this.#handlers.get(action);
    if (!this.#allowed.has(action) || !handler) {
      this.#reply(msg, {
        ok: false,
        error: this.#allowed.has(action)
          ? `action ${action} not allowed (no handler registered)`
          : `action ${action} not allowed`,
      });
      return;
    }
    let reply: ActionReply;
    try {
      const result = await handler(request.params, {
        runId: typeof request.run_id === 'string' ? request.run_id : '',
        action,
        subject: msg.subject,
      });
      reply = result === undefined ? { ok: true } : { ok: true, result };
    } catch (err) {
      reply = { ok: false, error: err instanceof Error ? err.message || err.name : String(err) };
    }
    this.#reply(msg, reply);
  }

  #reply(msg: Msg, reply: ActionReply): void {
    let body: string;
    try {
      body = JSON.stringify(reply);
    } catch {
      body = JSON.stringify({ ok: false, error: 'the handler returned a result that is not JSON' });
    }
    try {
      msg.respond(body);
    } catch {
      // The connection is closing: the requester records a timeout.
    }
  }
}
