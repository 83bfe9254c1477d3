/** One `federation <name>` subcommand. `run` returns the exit code. */
export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}
