import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

export const SHARED_NATS_URL = process.env.TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.connect(port, '127.0.0.1');
  });
}

export interface TestNatsServer {
  url: string;
  port: number;
  /** Stops the server, keeping its JetStream store. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store. */
  start(): Promise<void>;
  /** Stops it and removes the store. */
  destroy(): Promise<void>;
}

/**
 * A nats-server of the test's own, on a random port with a throwaway JetStream store; `configFile`
 * adds a configuration (users, permissions …), the flags here winning over its port and store.
 */
export async function startNatsServer(
  bin = NATS_SERVER_BIN,
  opts: { configFile?: string } = {},
): Promise<TestNatsServer> {
  const port = await freePort();
  const store = mkdtempSync(join(tmpdir(), 'fed-nats-'));
  let proc: ChildProcess | undefined;
  const start = async () => {
    const config = opts.configFile ? ['-c', opts.configFile] : [];
    proc = spawn(bin, [...config, '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', store], {
      stdio: 'ignore',
    });
    const deadline = Date.now() + 10_000;
    while (!(await portOpen(port))) {
      if (Date.now() > deadline) throw new Error(`nats-server did not open port ${port}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const stop = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
    proc = undefined;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    start,
    stop,
    async destroy() {
      await stop();
      rmSync(store, { recursive: true, force: true });
    },
  };
}
