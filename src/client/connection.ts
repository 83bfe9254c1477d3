import { readFileSync } from 'node:fs';
import {
  type Authenticator,
  type ConnectionOptions,
  credsAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from '@nats-io/transport-node';
import { projectInboxPrefix } from '../protocol/wire.ts';

function envValue(env: Record<string, string | undefined>, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/**
 * NATS credentials from the same variables the service reads: NATS_CREDS (a .creds file: user JWT
 * and seed), NATS_USER with NATS_PASS, or NATS_TOKEN.
 */
export function natsAuthFromEnv(env: Record<string, string | undefined> = process.env): Authenticator[] {
  const out: Authenticator[] = [];
  const creds = envValue(env, 'NATS_CREDS');
  const user = envValue(env, 'NATS_USER');
  const token = envValue(env, 'NATS_TOKEN');
  if (creds) out.push(credsAuthenticator(readFileSync(creds)));
  if (user) out.push(usernamePasswordAuthenticator(user, envValue(env, 'NATS_PASS')));
  if (token) out.push(tokenAuthenticator(token));
  return out;
}

/**
 * Options for a project's own connection (for ActionResponder and publishMetrics): credentials from
 * the environment and the project's own inbox prefix, the only inboxes the generated NATS
 * permissions (deploy/nats/) let it subscribe to, which JetStream acknowledgements need.
 */
export function projectConnectionOptions(
  slug: string,
  env: Record<string, string | undefined> = process.env,
): Partial<ConnectionOptions> {
  const authenticator = natsAuthFromEnv(env);
  return {
    inboxPrefix: projectInboxPrefix(slug),
    ...(authenticator.length ? { authenticator } : {}),
  };
}
