import { ConfigError } from '../errors.ts';
import type { Command } from './types.ts';

/**
 * Every subcommand loads lazily, and its one-line summary lives here, so `federation --help` and
 * `federation heartbeat` never pull in the server (Fastify, Drizzle, PGlite).
 */
export const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  serve: {
    summary: 'run the Federation Service (HTTP API, NATS workers, sweeper)',
    load: async () => (await import('./serve.ts')).serveCommand,
  },
  migrate: {
    summary: 'apply database migrations and exit',
    load: async () => (await import('./migrate.ts')).migrateCommand,
  },
  projects: {
    summary: 'list projects from a running service as a table',
    load: async () => (await import('./projects.ts')).projectsCommand,
  },
  heartbeat: {
    summary: 'publish this project’s heartbeat on NATS (once, or every interval until stopped)',
    load: async () => (await import('./heartbeat.ts')).heartbeatCommand,
  },
  metrics: {
    summary: 'publish a metrics summary for a project through JetStream',
    load: async () => (await import('./metrics.ts')).metricsCommand,
  },
  fanout: {
    summary: 'send an action to many projects and print their answers',
    load: async () => (await import('./fanout.ts')).fanoutCommand,
  },
  simulate: {
    summary:
      'run N fake projects that beat, die and come back, publish metrics and answer audits; Ctrl-C stops',
    load: async () => (await import('./simulate.ts')).simulateCommand,
  },
  'nats-users': {
    summary: 'generate per-project NATS users and permissions from projects.yaml',
    load: async () => (await import('./nats-users.ts')).natsUsersCommand,
  },
  bench: {
    summary: 'run the benchmarks of a source checkout (the same as npm run bench)',
    load: async () => (await import('./bench.ts')).benchCommand,
  },
};

export function usage(): string {
  const lines = ['usage: federation <command> [options]', '', 'commands:'];
  for (const [name, { summary }] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)} ${summary}`);
  lines.push(
    '',
    'federation <command> --help shows the options of one command.',
    'Output is plain text (no colour, so NO_COLOR holds); `projects` and `fanout` take --json.',
  );
  return lines.join('\n');
}

/** Errors of the command line itself (unknown or malformed options): one line, exit 2. */
function isUsageError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return (
    code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
    code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
    code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
  );
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? console.log : console.error)(usage());
    return name ? 0 : 2;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    console.error(`federation: unknown command "${name}" (federation --help lists them)`);
    return 2;
  }
  const command = await entry.load();
  // `federation bench` passes every option on, --help included, to bench/index.ts.
  if (name !== 'bench' && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    // A bad environment variable names itself; a bad option points at the command's --help.
    if (err instanceof ConfigError) {
      console.error(`federation: ${err.message.split('\n')[0]}`);
      return 2;
    }
    if (!isUsageError(err)) throw err;
    console.error(
      `federation ${name}: ${(err as Error).message.split('\n')[0]} (see federation ${name} --help)`,
    );
    return 2;
  }
}
