// The `federation` command. bin/federation.js runs the compiled dist/cli.js; `npm run dev` runs this under tsx.
import { main } from './commands/index.ts';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
