import type { Command } from './types.ts';

// Placeholder until its feature lands.
export const simulateCommand: Command = {
  summary: '(not built yet)',
  usage: 'federation simulate',
  async run() {
    console.error('federation simulate: not built yet');
    return 1;
  },
};
