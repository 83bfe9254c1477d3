import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  type Authenticator,
  connect,
  credsAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
} from '@nats-io/transport-node';
import { MetricsPayloadError, type MetricsValues, publishMetrics } from '../client/metrics.ts';
import { METRICS_KINDS, type MetricsKind } from '../protocol/index.ts';
import type { Command } from './types.ts';

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** `key=value` pairs: a value that reads as a number is sent as a number, anything else as text. */
export function parseMetricAssignments(pairs: string[]): MetricsValues {
  const metrics: MetricsValues = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new MetricsPayloadError('--set', `expected type=value, got ${JSON.stringify(pair)}`);
    const value = pair.slice(eq + 1);
    metrics[pair.slice(0, eq)] = NUMBER.test(value.trim()) ? Number(value) : value;
  }
  return metrics;
}

function authenticators(env: NodeJS.ProcessEnv): Authenticator[] {
  const out: Authenticator[] = [];
  if (env.NATS_CREDS) out.push(credsAuthenticator(readFileSync(env.NATS_CREDS)));
  if (env.NATS_USER) out.push(usernamePasswordAuthenticator(env.NATS_USER, env.NATS_PASS));
  if (env.NATS_TOKEN) out.push(tokenAuthenticator(env.NATS_TOKEN));
  return out;
}

export const metricsCommand: Command = {
  summary: 'publish a metrics summary for a project through JetStream',
  usage: `federation metrics --slug SLUG --set TYPE=VALUE [--set TYPE=VALUE …] [--kind graph|audit] [--nats-url URL]

  --slug        the project (default PROJECT_SLUG)
  --set         one metric; a value that reads as a number is stored as a number, else as text
  --kind        graph (default) or audit: publishes on <kind>.summary.<slug>
  --observed-at ISO 8601 time of the observation (default now)
  --nats-url    default NATS_URL, else nats://127.0.0.1:4222 (auth: NATS_CREDS, NATS_USER/NATS_PASS, NATS_TOKEN)

  example: federation metrics --slug my-app --kind audit --set audit.ok_count=12 --set coverage.percent=81.5`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      options: {
        slug: { type: 'string' },
        set: { type: 'string', multiple: true },
        kind: { type: 'string' },
        'observed-at': { type: 'string' },
        'nats-url': { type: 'string' },
      },
    });
    const env = process.env;
    const slug = values.slug ?? env.PROJECT_SLUG;
    const kind = (values.kind ?? 'graph') as MetricsKind;
    if (!slug) {
      console.error('federation metrics: --slug (or PROJECT_SLUG) is required');
      return 2;
    }
    if (!METRICS_KINDS.includes(kind)) {
      console.error(`federation metrics: --kind must be one of ${METRICS_KINDS.join(', ')}`);
      return 2;
    }
    let metrics: MetricsValues;
    let observedAt: Date | undefined;
    try {
      metrics = parseMetricAssignments(values.set ?? []);
      if (values['observed-at'] !== undefined) {
        observedAt = new Date(values['observed-at']);
        if (Number.isNaN(observedAt.getTime()))
          throw new MetricsPayloadError('--observed-at', 'is not an ISO 8601 time');
      }
    } catch (err) {
      console.error(`federation metrics: ${(err as Error).message}`);
      return 2;
    }
    const servers = (values['nats-url'] ?? env.NATS_URL ?? 'nats://127.0.0.1:4222')
      .split(',')
      .map((s) => s.trim());
    const auth = authenticators(env);
    let nc: Awaited<ReturnType<typeof connect>>;
    try {
      nc = await connect({
        servers,
        name: `federation-metrics-cli`,
        ...(auth.length ? { authenticator: auth } : {}),
      });
    } catch (err) {
      console.error(
        `federation metrics: cannot connect to NATS at ${servers.join(',')}: ${(err as Error).message}`,
      );
      return 1;
    }
    try {
      const ack = await publishMetrics(nc, slug, metrics, kind, observedAt ? { observedAt } : {});
      console.log(
        `published ${Object.keys(metrics).length} metric(s) for ${slug} on ${kind}.summary.${slug}: stored in ${ack.stream} as #${ack.seq}${ack.duplicate ? ' (duplicate)' : ''}`,
      );
      return 0;
    } catch (err) {
      if (err instanceof MetricsPayloadError) {
        console.error(`federation metrics: ${err.message}`);
        return 2;
      }
      console.error(
        `federation metrics: JetStream did not store the message (is the Federation Service's stream set up on this NATS?): ${(err as Error).message}`,
      );
      return 1;
    } finally {
      await nc.close();
    }
  },
};
