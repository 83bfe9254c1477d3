#!/usr/bin/env node
// The package ships TypeScript sources; tsx compiles them on load so `npm ci && npm start` needs no build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
