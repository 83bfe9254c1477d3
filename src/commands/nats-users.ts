import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadProjectsFile } from '../catalog/projects-file.ts';
import {
  natsUsers,
  parseCredentialsEnv,
  renderCredentialsEnv,
  renderUsersConf,
} from '../platform/nats-permissions.ts';
import type { Command } from './types.ts';

/** Passwords issued by an earlier run, from <out>/credentials/*.env. */
function existingPasswords(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.env')) continue;
    const { user, password } = parseCredentialsEnv(readFileSync(join(dir, f), 'utf8'));
    if (user && password) out.set(user, password);
  }
  return out;
}

function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export const natsUsersCommand: Command = {
  summary: 'generate per-project NATS users and permissions from projects.yaml',
  usage: `federation nats-users [--projects config/projects.yaml] [--out deploy/nats] [--rotate]

Writes <out>/users.conf (included by deploy/nats/nats.conf): a "federation" user for the service and
one user per project, named by its slug, that may publish only hub.presence.<slug>,
audit.summary.<slug> and graph.summary.<slug>, and subscribe and reply only on
<mesh_namespace>.actions.> (plus its own inboxes, _INBOX_<slug>.>). Each user's NATS_USER / NATS_PASS
go to <out>/credentials/<user>.env (mode 0600). Passwords already there are kept unless --rotate.`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        projects: { type: 'string', default: 'config/projects.yaml' },
        out: { type: 'string', default: 'deploy/nats' },
        rotate: { type: 'boolean', default: false },
      },
    });
    const file = loadProjectsFile(values.projects);
    const out = values.out;
    const credentials = join(out, 'credentials');
    mkdirSync(credentials, { recursive: true, mode: 0o700 });
    const users = natsUsers(file.projects, values.rotate ? new Map() : existingPasswords(credentials));
    writePrivate(join(out, 'users.conf'), renderUsersConf(users, values.projects));
    for (const u of users) writePrivate(join(credentials, `${u.user}.env`), renderCredentialsEnv(u));
    console.log(
      `wrote ${join(out, 'users.conf')} with ${users.length} users (federation + ${users.length - 1} projects) and their credentials in ${credentials}/`,
    );
    return 0;
  },
};
