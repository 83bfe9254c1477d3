import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers/build.ts';
import { SHARED_NATS_URL } from './helpers/nats-server.ts';
import { waitFor } from './helpers/wait.ts';

const run = promisify(execFile);
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

/**
 * A project of its own outside this repository, with the package in its node_modules the way
 * `npm install` links a local package: what any Node project embedding the client sees.
 */
let consumerDir: string;
beforeAll(() => {
  consumerDir = mkdtempSync(join(tmpdir(), 'fed-consumer-'));
  mkdirSync(join(consumerDir, 'node_modules/@commandcenter'), { recursive: true });
  mkdirSync(join(consumerDir, 'node_modules/@types'), { recursive: true });
  symlinkSync(ROOT, join(consumerDir, 'node_modules/@commandcenter/federation'), 'dir');
  symlinkSync(join(ROOT, 'node_modules/@types/node'), join(consumerDir, 'node_modules/@types/node'), 'dir');
  writeFileSync(join(consumerDir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module' }));
});
afterAll(() => rmSync(consumerDir, { recursive: true, force: true }));

describe('the client as a package', () => {
  let nc: NatsConnection;
  beforeAll(async () => {
    nc = await connect({ servers: SHARED_NATS_URL });
  });
  afterAll(async () => {
    await nc.close();
  });

  it('a plain .mjs run by node (no tsx) imports /client and /protocol and publishes a heartbeat', async () => {
    const slug = `pkg-${randomBytes(4).toString('hex')}`;
    writeFileSync(
      join(consumerDir, 'beat.mjs'),
      `import { FederationHeartbeat } from '@commandcenter/federation/client';
import { presenceSubject } from '@commandcenter/federation/protocol';
const [slug, natsUrl] = process.argv.slice(2);
const hb = new FederationHeartbeat({ slug, natsUrl, hubUrl: 'http://' + slug + '.example:8000', version: '9.9.9', env: {} });
if (hb.subject !== presenceSubject(slug)) throw new Error('subject ' + hb.subject);
await hb.beat();
await hb.stop();
console.log(JSON.stringify(Object.keys(await import('@commandcenter/federation/client')).sort()));
`,
    );
    const received: unknown[] = [];
    const sub = nc.subscribe(`hub.presence.${slug}`, {
      callback: (_err, msg) => {
        received.push(msg.json());
      },
    });
    await nc.flush();
    const child = spawn(process.execPath, ['beat.mjs', slug, SHARED_NATS_URL], { cwd: consumerDir });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    await waitFor(() => received.length > 0, { what: 'the heartbeat on NATS' });
    sub.unsubscribe();
    expect(received[0]).toMatchObject({
      project_slug: slug,
      hub_url: `http://${slug}.example:8000`,
      version: '9.9.9',
    });
    expect(JSON.parse(stdout)).toEqual(
      expect.arrayContaining(['FederationHeartbeat', 'ActionResponder', 'publishMetrics']),
    );
  });

  it('the compiled /client and /protocol load nothing but nats.js and node builtins', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const bare = new Set<string>();
    const files = new Set<string>();
    const walk = (file: string) => {
      if (files.has(file)) return;
      files.add(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/gm)) {
        const spec = m[1] as string;
        if (spec.startsWith('.')) walk(resolve(dirname(file), spec));
        else bare.add(spec);
      }
      for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) bare.add(m[1] as string);
    };
    walk(join(ROOT, pkg.exports['./client'].default));
    walk(join(ROOT, pkg.exports['./protocol'].default));
    for (const spec of bare) expect(spec).toMatch(/^(node:|@nats-io\/(transport-node|jetstream)$)/);
    expect(bare).toContain('@nats-io/transport-node');
    for (const file of files) expect(relative(ROOT, file)).toMatch(/^dist\/(client|protocol)\//);
  });

  it('a TypeScript consumer typechecks against the declarations, and a wrong call does not', {
    timeout: 120_000,
  }, async () => {
    writeFileSync(
      join(consumerDir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          // Our declarations are checked by the build; here, what a consumer's own code sees through them.
          skipLibCheck: true,
          types: ['node'],
        },
        include: ['consumer.ts'],
      }),
    );
    const consumer = (
      slugValue: string,
      slugType = 'string',
    ) => `import { FederationHeartbeat, ActionResponder, publishMetrics } from '@commandcenter/federation/client';
import { type Heartbeat, presenceSubject, METRICS_KINDS } from '@commandcenter/federation/protocol';
const hb = new FederationHeartbeat({ slug: ${slugValue}, hubUrl: 'http://a:1' });
const sent: Heartbeat = await hb.beat();
const slug: ${slugType} = sent.project_slug;
const subject: string = presenceSubject(slug);
const kinds: readonly string[] = METRICS_KINDS;
export { ActionResponder, publishMetrics, subject, kinds };
`;
    writeFileSync(join(consumerDir, 'consumer.ts'), consumer("'my-app'"));
    await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: consumerDir });

    // The declarations carry real types (no silent any): a wrong option and a wrong field type both fail.
    writeFileSync(join(consumerDir, 'consumer.ts'), consumer('42', 'number'));
    const failed = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: consumerDir }).then(
      () => '',
      (err: { stdout: string }) => err.stdout,
    );
    expect(failed).toMatch(
      /consumer\.ts\(3,\d+\): error TS2322: Type 'number' is not assignable to type 'string/,
    );
    expect(failed).toMatch(
      /consumer\.ts\(5,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/,
    );
  });
});

describe('npm pack', () => {
  it('ships the compiled code, migrations and the built view; no tests, benchmarks or sources', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    const [{ files }] = JSON.parse(stdout) as [{ files: Array<{ path: string }> }];
    const paths = files.map((f) => f.path);
    for (const expected of [
      'bin/federation.js',
      'dist/cli.js',
      'dist/app.js',
      'dist/client/index.js',
      'dist/client/index.d.ts',
      'dist/protocol/wire.d.ts',
      'web/dist/index.html',
      'config/projects.yaml',
      'package.json',
      'README.md',
    ]) {
      expect(paths).toContain(expected);
    }
    expect(paths.some((p) => p.startsWith('drizzle/') && p.endsWith('.sql'))).toBe(true);
    const unwanted = paths.filter((p) =>
      /^(src|test|bench|web\/src|dagger|deploy|\.ci)\/|\.test\.|tsbuildinfo|(^|\/)tsconfig/.test(p),
    );
    expect(unwanted).toEqual([]);
  });
});
