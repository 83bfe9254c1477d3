import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
} from '@nats-io/jwt';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../src/app.ts';
import { FederationHeartbeat } from '../src/client/heartbeat.ts';
import { buildTestApp, uniqueSlug } from './helpers/app.ts';
import { startNatsServer, type TestNatsServer } from './helpers/nats-server.ts';
import { findProject } from './helpers/presence.ts';
import { waitFor } from './helpers/wait.ts';

const quiet = { warn: () => {}, info: () => {} };

interface Mode {
  name: string;
  /** The server's configuration, and the environment of the service and of a project. */
  setup(
    dir: string,
  ): Promise<{ conf: string; service: Record<string, string>; project: Record<string, string> }>;
  /** Credentials the server refuses. */
  wrong: Record<string, string>;
}

/** An operator, an account with JetStream, and users signed by it: what NATS_CREDS files hold. */
async function operatorSetup(dir: string) {
  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const operatorJwt = await encodeOperator('fed-test', operator, {
    system_account: system.getPublicKey(),
  });
  const systemJwt = await encodeAccount('SYS', system, {}, { signer: operator });
  const accountJwt = await encodeAccount(
    'FED',
    account,
    {
      limits: {
        mem_storage: -1,
        disk_storage: -1,
        streams: -1,
        consumer: -1,
        subs: -1,
        data: -1,
        payload: -1,
        imports: -1,
        exports: -1,
        wildcards: true,
        conn: -1,
        leaf: -1,
      },
    },
    { signer: operator },
  );
  const credsFile = async (name: string) => {
    const user = createUser();
    const jwt = await encodeUser(name, user, account);
    const path = join(dir, `${name}.creds`);
    writeFileSync(path, fmtCreds(jwt, user), { mode: 0o600 });
    return path;
  };
  const conf = [
    `operator: ${operatorJwt}`,
    `system_account: ${system.getPublicKey()}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${system.getPublicKey()}: ${systemJwt}`,
    `  ${account.getPublicKey()}: ${accountJwt}`,
    '}',
    '',
  ].join('\n');
  return {
    conf,
    service: { NATS_CREDS: await credsFile('federation') },
    project: { NATS_CREDS: await credsFile('project') },
  };
}

const MODES: Mode[] = [
  {
    name: 'NATS_USER / NATS_PASS',
    setup: async () => ({
      conf: 'authorization { users = [ { user: "svc", password: "svc-pw" }, { user: "proj", password: "proj-pw" } ] }\n',
      service: { NATS_USER: 'svc', NATS_PASS: 'svc-pw' },
      project: { NATS_USER: 'proj', NATS_PASS: 'proj-pw' },
    }),
    wrong: { NATS_USER: 'svc', NATS_PASS: 'not-it' },
  },
  {
    name: 'NATS_TOKEN',
    setup: async () => ({
      conf: 'authorization { token: "s3cret-token" }\n',
      service: { NATS_TOKEN: 's3cret-token' },
      project: { NATS_TOKEN: 's3cret-token' },
    }),
    wrong: { NATS_TOKEN: 'not-it' },
  },
  { name: 'NATS_CREDS', setup: operatorSetup, wrong: {} },
];

describe.each(MODES)('NATS credentials from the environment: $name', (mode) => {
  let dir: string | undefined;
  let server: TestNatsServer | undefined;
  let app: App | undefined;
  let hb: FederationHeartbeat | undefined;

  afterEach(async () => {
    await hb?.stop();
    await app?.close();
    await server?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
    hb = undefined;
    app = undefined;
    server = undefined;
  });

  it('connects the service and the client, and refuses without the right ones', async () => {
    dir = mkdtempSync(join(tmpdir(), 'fed-nats-creds-'));
    const { conf, service, project } = await mode.setup(dir);
    const confFile = join(dir, 'nats.conf');
    writeFileSync(confFile, conf);
    server = await startNatsServer(undefined, { configFile: confFile });

    // Without credentials (or with wrong ones) the service stays up but is not connected.
    const refused = await buildTestApp({ NATS_URL: server.url, ...mode.wrong }, {});
    try {
      const health = (await refused.inject('/api/fed/health')).json() as {
        checks: { nats: { status: string; state: string } };
      };
      expect(refused.nats.connected).toBe(false);
      expect(health.checks.nats.status).toBe('degraded');
    } finally {
      await refused.close();
    }

    app = await buildTestApp({ NATS_URL: server.url, ...service });
    await waitFor(() => app?.nats.connected, { what: 'the service connected' });
    const slug = uniqueSlug('creds');
    hb = new FederationHeartbeat({ slug, natsUrl: server.url, env: project, logger: quiet });
    await hb.beat();
    await waitFor(async () => app && (await findProject(app, slug))?.last_heartbeat_at, {
      what: `${slug} heard through the authenticated connection`,
    });
  });
});
