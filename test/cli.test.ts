import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../src/commands/index.ts';

const BIN = resolve(import.meta.dirname, '../bin/federation.js');
const federation = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.trim() };
};
// bench hands its options to bench/index.ts, which has its own tests of them.
const NAMES = Object.keys(COMMANDS).filter((n) => n !== 'bench');

describe('the federation command line (compiled, as installed)', () => {
  it('--help lists every command with the summary its module declares', async () => {
    const r = federation('--help');
    expect(r.code).toBe(0);
    for (const [name, { summary, load }] of Object.entries(COMMANDS)) {
      expect((await load()).summary).toBe(summary);
      expect(r.stdout).toContain(`  ${name.padEnd(10)} ${summary}`);
    }
  });

  it.each(NAMES)('%s --help prints its usage, plain text, exit 0', (name) => {
    const r = federation(name, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^federation ${name}`));
    expect(r.stdout).not.toContain('\u001b[');
  });

  it.each(NAMES)('%s with an unknown option → one line on stderr, exit 2', (name) => {
    const r = federation(name, '--no-such-option');
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`federation ${name}:`);
    expect(r.stderr).toContain('--no-such-option');
  });

  it('an unknown command, or none, → one line or the usage on stderr, exit 2', () => {
    const unknown = federation('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('federation: unknown command "frobnicate" (federation --help lists them)');
    const none = federation();
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('usage: federation <command>');
  });

  it('projects: a bad --status and an unreachable service are one line each, non-zero', () => {
    const bad = federation('projects', '--status', 'sleeping');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      'federation projects: --status "sleeping" is invalid: expected online, offline, degraded',
    );
    // Port 9 (discard) on loopback: nothing listens there.
    const down = federation('projects', '--json', '--url', 'http://127.0.0.1:9');
    expect(down.code).toBe(1);
    expect(down.stderr.split('\n')).toHaveLength(1);
    expect(down.stderr).toMatch(/^federation projects: cannot reach http:\/\/127\.0\.0\.1:9/);
  });
});
