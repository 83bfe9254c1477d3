import type { Command } from './types.ts';

// Placeholder until its feature lands.
export const benchCommand: Command = {
  summary: '(not built yet)',
  usage: 'federation bench',
  async run() {
    console.error('federation bench: not built yet');
    return 1;
  },
};
