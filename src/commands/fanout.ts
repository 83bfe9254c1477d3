import type { Command } from './types.ts';

// Placeholder until its feature lands.
export const fanoutCommand: Command = {
  summary: '(not built yet)',
  usage: 'federation fanout',
  async run() {
    console.error('federation fanout: not built yet');
    return 1;
  },
};
