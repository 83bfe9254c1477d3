import type { Command } from './types.ts';

// Placeholder until its feature lands.
export const metricsCommand: Command = {
  summary: '(not built yet)',
  usage: 'federation metrics',
  async run() {
    console.error('federation metrics: not built yet');
    return 1;
  },
};
