import type { Command } from './types.ts';

// Placeholder until its feature lands.
export const heartbeatCommand: Command = {
  summary: '(not built yet)',
  usage: 'federation heartbeat',
  async run() {
    console.error('federation heartbeat: not built yet');
    return 1;
  },
};
