import { migrateCommand } from './commands/migrate.ts';
import { projectsCommand } from './commands/projects.ts';
import { serveCommand } from './commands/serve.ts';
import type { Command } from './commands/types.ts';
import { ConfigError } from './errors.ts';

/** Subcommands load lazily so `federation heartbeat` does not pull in the server. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => serveCommand,
  migrate: async () => migrateCommand,
  projects: async () => projectsCommand,
  heartbeat: async () => (await import('./commands/heartbeat.ts')).heartbeatCommand,
  metrics: async () => (await import('./commands/metrics.ts')).metricsCommand,
  fanout: async () => (await import('./commands/fanout.ts')).fanoutCommand,
  simulate: async () => (await import('./commands/simulate.ts')).simulateCommand,
  bench: async () => (await import('./commands/bench.ts')).benchCommand,
  'nats-users': async () => (await import('./commands/nats-users.ts')).natsUsersCommand,
};

async function usage(): Promise<string> {
  const lines = ['usage: federation <command> [options]', '', 'commands:'];
  for (const [name, load] of Object.entries(COMMANDS)) {
    lines.push(`  ${name.padEnd(10)} ${(await load()).summary}`);
  }
  lines.push('', 'federation <command> --help shows the options of one command.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(await usage());
    return name ? 0 : 1;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`federation: unknown command "${name}"\n\n${await usage()}`);
    return 2;
  }
  const command = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.usage);
    return 0;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      console.error(`federation: ${(err as Error).message}`);
      process.exitCode = 2;
    } else {
      console.error(err);
      process.exitCode = 1;
    }
  },
);
