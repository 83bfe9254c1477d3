import { parseArgs } from 'node:util';
import { loadConfig } from '../config.ts';
import type { Command } from './types.ts';

export const migrateCommand: Command = {
  summary: 'apply database migrations and exit',
  usage: `federation migrate

Applies the SQL migrations under drizzle/ to DATABASE_URL (or the PGlite database in FED_DATA_DIR).
Running it again changes nothing.`,
  async run(argv) {
    parseArgs({ args: argv, options: {} }); // no options: anything else is a usage error
    const config = loadConfig();
    const { openDatabase } = await import('../db/connection.ts');
    const handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    try {
      await handle.migrate();
      console.log(`migrations applied to ${handle.location}`);
    } finally {
      await handle.close();
    }
    return 0;
  },
};
