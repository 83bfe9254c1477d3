// Bundles the `federation` command (src/cli.ts and everything the server imports) into dist/bundle/,
// which bin/federation.js runs. Loading ~1,100 module files one by one cost more start-up time than
// anything the service does before it is ready (TypeBox alone is ~680 files); one bundle with a chunk
// per lazily loaded command loads in well under half that. tsc still builds dist/ beside it: the
// package's exports (client, protocol, app) and their .d.ts are the compiled files, not the bundle.
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

const ROOT = new URL('..', import.meta.url);
// Chunk names carry a content hash: clear the old ones rather than ship them beside the new.
rmSync(new URL('dist/bundle/', ROOT), { recursive: true, force: true });

await build({
  absWorkingDir: ROOT.pathname,
  entryPoints: ['src/cli.ts'],
  outdir: 'dist/bundle',
  bundle: true,
  // One chunk per dynamic import, so `federation --help` still loads no server module.
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  // Bundled CommonJS packages call require() for Node's built-in modules.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module';\nconst require = __createRequire(import.meta.url);",
  },
  // Packages that find files beside their own code at run time stay in node_modules: PGlite (its
  // WebAssembly build and data), swagger-ui (its static assets), pino (transport workers started by
  // path); pg-native is optional and not installed. (@fastify/swagger reads its own package.json only
  // for a default `info`, inside a try; the service always passes `info`.)
  external: ['@electric-sql/pglite', '@fastify/swagger-ui', 'pino', 'pg-native'],
  logLevel: 'warning',
});
