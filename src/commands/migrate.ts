import { loadConfig } from '../config.ts';
import { openDatabase } from '../db/connection.ts';
import type { Command } from './types.ts';

export const migrateCommand: Command = {
  summary: 'apply database migrations and exit',
  usage: `federation migrate

Applies the SQL migrations under drizzle/ to DATABASE_URL (or the PGlite database in FED_DATA_DIR).
Running it again changes nothing.`,
  async run() {
    const config = loadConfig();
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
