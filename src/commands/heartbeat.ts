import { parseArgs } from 'node:util';
import { FederationHeartbeat, type HeartbeatConfigError } from '../client/heartbeat.ts';
import type { Command } from './types.ts';

/** Maps the client's option names to this command's flags, so an error names what the user typed. */
const FLAG_OF: Record<string, string> = {
  slug: '--slug',
  hubUrl: '--hub-url',
  intervalS: '--interval',
  natsUrl: '--nats-url',
  version: '--version',
  health: '--health',
  tags: '--tag',
  name: '--name',
};

export function describeConfigError(err: HeartbeatConfigError): string {
  const flag = FLAG_OF[err.field];
  return flag ? `${flag} ${JSON.stringify(err.value)} is invalid: expected ${err.expected}` : err.message;
}

export function isHeartbeatConfigError(err: unknown): err is HeartbeatConfigError {
  return err instanceof Error && err.name === 'HeartbeatConfigError';
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (signal: string) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(signal);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export const heartbeatCommand: Command = {
  summary: 'publish this project’s heartbeat on NATS (once, or every interval until stopped)',
  usage: `federation heartbeat --slug S [options]

Publishes {project_slug, hub_url, mesh_namespace, timestamp, version, …} on hub.presence.<slug>,
once at start and then every interval (±10 % jitter) until SIGINT/SIGTERM.

  --slug S          project slug (default PROJECT_SLUG, else commandcenter)
  --hub-url U       the project's URL (default HUB_URL, else http://localhost:8000)
  --interval N      seconds between heartbeats (default HEARTBEAT_INTERVAL, else 30)
  --nats-url URL    NATS server (default NATS_URL, else nats://127.0.0.1:4222)
  --version V       version reported in the heartbeat
  --name NAME       display name (registers the project with it)
  --tag T           a tag; repeat for several
  --health H        ok or degraded
  --once            publish one heartbeat, wait until the server has it, exit 0`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        slug: { type: 'string' },
        'hub-url': { type: 'string' },
        interval: { type: 'string' },
        'nats-url': { type: 'string' },
        version: { type: 'string' },
        name: { type: 'string' },
        tag: { type: 'string', multiple: true },
        health: { type: 'string' },
        once: { type: 'boolean', default: false },
      },
    });
    if (values.interval !== undefined && !/^\d+(\.\d+)?$/.test(values.interval)) {
      console.error(
        `federation heartbeat: --interval ${JSON.stringify(values.interval)} is invalid: expected seconds`,
      );
      return 2;
    }
    let hb: FederationHeartbeat;
    try {
      hb = new FederationHeartbeat({
        slug: values.slug,
        hubUrl: values['hub-url'],
        intervalS: values.interval === undefined ? undefined : Number(values.interval),
        natsUrl: values['nats-url'],
        version: values.version,
        name: values.name,
        tags: values.tag,
        health: values.health as 'ok' | 'degraded' | undefined,
        logger: { warn: (m) => console.error(m), info: (m) => console.error(m) },
      });
    } catch (err) {
      if (!isHeartbeatConfigError(err)) throw err;
      console.error(`federation heartbeat: ${describeConfigError(err)}`);
      return 2;
    }

    try {
      if (values.once) {
        const sent = await hb.beat();
        console.log(`published ${hb.subject} ${JSON.stringify(sent)}`);
        return 0;
      }
      await hb.start();
      console.error(
        `publishing ${hb.subject} every ${hb.intervalS} s (±10 %) to ${hb.natsUrl}; Ctrl-C stops`,
      );
      const signal = await untilSignal();
      console.error(`${signal}: stopping after ${hb.stats.published} heartbeats (${hb.stats.failed} failed)`);
      return 0;
    } catch (err) {
      console.error(`federation heartbeat: ${(err as Error).message}`);
      return 1;
    } finally {
      await hb.stop();
    }
  },
};
